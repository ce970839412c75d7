//! What the connection-holding scenarios (idle connections, tarpit) ask of the kernel: the
//! open-files limit, a process's resident memory and CPU time from /proc, and a signal sent
//! without spawning `kill` (whose start-up would be counted in the time to exit).

use anyhow::{Context, Result, bail};

/// Raises this process's soft open-files limit to at least `want` (up to the hard limit);
/// children inherit it, so the server under test gets the same. Returns the soft limit now.
pub fn raise_nofile(want: libc::rlim_t) -> Result<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
    }
    let hard = lim.rlim_max;
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    lim.rlim_cur = want.min(hard);
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        bail!(
            "setrlimit(RLIMIT_NOFILE, {}): {}",
            lim.rlim_cur,
            std::io::Error::last_os_error()
        );
    }
    Ok(lim.rlim_cur)
}

/// `VmRSS` of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{path} has no VmRSS line"))?;
    Ok(kib * 1024)
}

/// User plus system CPU time `pid` has used, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path} is not in the expected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{path}: no field {i}"))
    };
    let total = ticks(14)? + ticks(15)?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok(total as f64 / hz)
}

pub fn sigterm(pid: u32) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) only sends a signal to the child we started.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        bail!("kill({pid}, SIGTERM): {}", std::io::Error::last_os_error());
    }
    Ok(())
}
