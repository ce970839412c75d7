//! The Commercial answer to unknown paths and wrong methods: hold the scanner's connection
//! for 30 s, dripping one byte per second, so sweeping this POP is slow and cheap for us.
//!
//! Cheap: a held connection is one timer-driven stream (no task spinning), and at most `cap`
//! are held; past that a plain 404 goes out at once. Interruptible: every tick also watches
//! the shutdown token, so SIGTERM ends all of them within a second.

use crate::transport::ConnectionSlot;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const DEFAULT_CAP: usize = 1000;
const HOLD_TICKS: u32 = 30;
const TICK: Duration = Duration::from_secs(1);

pub struct Tarpit {
    cap: usize,
    held: AtomicUsize,
    /// Set when the cap is first hit and cleared once load falls below it: one alert a burst.
    saturated: AtomicBool,
    shutdown: CancellationToken,
    on_saturated: Box<dyn Fn(usize) + Send + Sync>,
}

/// Releases a tarpit slot when the held connection ends, however it ends.
struct Slot(Arc<Tarpit>);

impl Drop for Slot {
    fn drop(&mut self) {
        let before = self.0.held.fetch_sub(1, Ordering::AcqRel);
        if before <= self.0.cap / 2 + 1 {
            self.0.saturated.store(false, Ordering::Release);
        }
    }
}

impl Tarpit {
    pub fn new(
        cap: usize,
        shutdown: CancellationToken,
        on_saturated: impl Fn(usize) + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            cap,
            held: AtomicUsize::new(0),
            saturated: AtomicBool::new(false),
            shutdown,
            on_saturated: Box::new(on_saturated),
        })
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Whether the cap was hit and load has not yet fallen back to half of it.
    pub fn saturated(&self) -> bool {
        self.saturated.load(Ordering::Acquire)
    }

    fn try_hold(self: &Arc<Self>) -> Option<Slot> {
        let mut n = self.held.load(Ordering::Acquire);
        loop {
            if n >= self.cap {
                return None;
            }
            match self
                .held
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Slot(self.clone())),
                Err(actual) => n = actual,
            }
        }
    }

    /// `connection`: the held connection's place under `--max-connections`, given back while
    /// the tarpit holds it (the tarpit's own cap bounds those).
    pub fn respond(self: &Arc<Self>, connection: Option<&ConnectionSlot>) -> Response {
        let Some(slot) = self.try_hold() else {
            if !self.saturated.swap(true, Ordering::AcqRel) {
                (self.on_saturated)(self.cap);
            }
            return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
        };
        if let Some(c) = connection {
            c.release();
        }
        let stop = self.shutdown.clone();
        let drip = futures_util::stream::unfold((0u32, slot), move |(ticks, slot)| {
            let stop = stop.clone();
            async move {
                if ticks >= HOLD_TICKS {
                    return None;
                }
                tokio::select! {
                    () = tokio::time::sleep(TICK) => Some((Ok::<_, Infallible>(Bytes::from_static(b" ")), (ticks + 1, slot))),
                    () = stop.cancelled() => None,
                }
            }
        });
        (
            StatusCode::NOT_FOUND,
            [
                (header::CONTENT_TYPE, "text/plain"),
                (header::CONNECTION, "close"),
            ],
            Body::from_stream(drip),
        )
            .into_response()
    }
}
