//! The signals that stop the server, and SIGHUP, which makes it reload its config.

use std::future::Future;
use tokio_util::sync::CancellationToken;

/// Installs SIGTERM and SIGINT handlers now and returns a future that resolves on either.
/// Installing eagerly matters: a signal that arrives right after `listening on` is printed
/// must be a graceful stop (exit 0), not the default death by signal.
pub fn install() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Calls `reload` on every SIGHUP until `stop` fires. Without a SIGHUP handler (which the OS
/// may refuse) the process still runs, without reloads, and says so.
pub fn on_hangup(stop: CancellationToken, mut reload: impl FnMut() + Send + 'static) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; config reload is unavailable");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                () = stop.cancelled() => return,
            }
            reload();
        }
    });
}
