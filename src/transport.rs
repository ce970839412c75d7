//! Plain-HTTP serving. Editions with their own transport (Commercial's TLS) replace this
//! through [`crate::edition::Edition::serve`].

use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub type ServeFuture = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// Serves `app` until `shutdown` fires, then lets in-flight requests finish.
pub fn serve_plain(listener: TcpListener, app: Router, shutdown: CancellationToken) -> ServeFuture {
    Box::pin(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    })
}
