//! The signals that stop the server.

use std::future::Future;

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
