//! Bounded waiting: every wait has a deadline, and a wait that times out says what it was
//! waiting for and what it saw last.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_until`] and [`wait_for`] look again.
const EVERY: Duration = Duration::from_millis(50);

/// Calls `probe` every `every` until it returns `Some`, for at most `timeout`; `None` after.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Calls `probe` until it returns `Ok`; after `timeout`, panics naming `what` and the last `Err`.
#[track_caller]
pub fn wait_until<T, E: Debug>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {e:?}")
            }
            Err(_) => std::thread::sleep(EVERY),
        }
    }
}

/// [`wait_until`] for an async `probe`, sleeping on the tokio timer.
pub async fn wait_for<T, E: Debug, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {e:?}")
            }
            Err(_) => tokio::time::sleep(EVERY).await,
        }
    }
}
