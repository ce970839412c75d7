//! The numbers that bound slow, idle and many clients, and the open-files limit behind the
//! connection cap.

use std::time::Duration;

/// A connection with no request in flight for this long is closed: 30 s to send a complete
/// request head (after connecting, or after the previous response), as the contract says.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `--max-connections`. A vault serves a team and its agents, not the public: 4,096
/// concurrent connections are far more than that needs, cost little memory when idle (see
/// BENCHMARKS.md), and fit the open-files limit a service gets once its soft limit is raised
/// to the hard one (systemd's default hard limit is 524,288). Lowered, with a warning, when
/// the limit is smaller.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Descriptors kept for everything but client connections: the SQLite files of the writer
/// and the reader pool, the listener, the runtime's epoll and wake-up descriptors, signal
/// handling, stdio, and files read on start or reload (keys, tokens, certificates).
pub const RESERVED_FILES: u64 = 64;

/// Never ask for more than this many descriptors, even when the hard limit is "unlimited"
/// (Linux refuses a soft limit above `fs.nr_open`, 1,048,576 by default).
const MAX_OPEN_FILES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a connection may have no request in flight before it is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; past that the listener stops accepting until one closes.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error(
        "--max-connections {requested} needs {needed} open files, but this process may open only {soft} (hard limit {hard}). Fix: raise the limit (systemd: LimitNOFILE={needed} in the unit; a shell: ulimit -n {needed}) or lower --max-connections"
    )]
    TooFewFiles {
        requested: usize,
        needed: u64,
        soft: u64,
        hard: u64,
    },
}

impl Limits {
    /// The limits for a listener: `requested` connections (or the default), checked against
    /// the open-files limit, which is first raised to the hard limit. A requested cap that
    /// does not fit is refused; the default is lowered to fit.
    pub fn resolve(requested: Option<usize>, idle_timeout: Duration) -> Result<Self, LimitError> {
        let files = raise_open_files_limit();
        let room = usize::try_from(files.soft.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
        let max_connections = match requested {
            Some(n) => {
                let needed = (n as u64).saturating_add(RESERVED_FILES);
                if needed > files.soft {
                    return Err(LimitError::TooFewFiles {
                        requested: n,
                        needed,
                        soft: files.soft,
                        hard: files.hard,
                    });
                }
                n
            }
            None if DEFAULT_MAX_CONNECTIONS <= room => DEFAULT_MAX_CONNECTIONS,
            None => {
                let fit = room.max(1);
                tracing::warn!(
                    open_files = files.soft,
                    max_connections = fit,
                    "the open-files limit is low; serving at most {fit} connections at once instead of {DEFAULT_MAX_CONNECTIONS} (raise LimitNOFILE / ulimit -n, or set --max-connections)"
                );
                fit
            }
        };
        Ok(Self {
            idle_timeout,
            max_connections,
        })
    }
}

struct OpenFiles {
    soft: u64,
    hard: u64,
}

/// Raises this process's soft open-files limit to its hard limit (as Go's runtime and most
/// servers do: the soft limit of 1,024 many systems default to is a guard for `select(2)`
/// users, which this server is not) and returns the limits in force.
fn raise_open_files_limit() -> OpenFiles {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        // Unknown: assume the common soft limit rather than refuse to start.
        return OpenFiles {
            soft: 1024,
            hard: 1024,
        };
    }
    let (soft, hard): (u64, u64) = (lim.rlim_cur, lim.rlim_max);
    let target = hard.min(MAX_OPEN_FILES);
    if soft < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return OpenFiles { soft: target, hard };
        }
    }
    OpenFiles { soft, hard }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_thirty_seconds_and_4096_connections() {
        let d = Limits::default();
        assert_eq!(d.idle_timeout, Duration::from_secs(30));
        assert_eq!(d.max_connections, 4096);
        let resolved = Limits::resolve(None, DEFAULT_IDLE_TIMEOUT).expect("the default fits");
        assert_eq!(resolved.idle_timeout, Duration::from_secs(30));
        assert!((1..=DEFAULT_MAX_CONNECTIONS).contains(&resolved.max_connections));
    }

    #[test]
    fn a_cap_beyond_the_open_files_limit_is_refused_with_the_fix() {
        let e = Limits::resolve(Some(usize::MAX / 2), DEFAULT_IDLE_TIMEOUT)
            .expect_err("no system allows that many files");
        let text = e.to_string();
        assert!(text.contains("--max-connections"), "{text}");
        assert!(text.contains("LimitNOFILE"), "{text}");
    }
}
