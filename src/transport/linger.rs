//! Lingering close (RFC 9112, 9.6): when hyper has written its last response and shuts a
//! connection down, the client may still be sending a request body the server never read (a
//! 413 answered from the declared length, before the body). Closing a socket with unread
//! input makes the kernel answer with a reset, and a client still writing that body then gets
//! "broken pipe" or "connection reset" instead of the response waiting in its receive buffer.
//! So after the shutdown has been sent (TLS close_notify, then FIN), what the client still
//! sends is read and thrown away until it closes its side, for a bounded time. (No bound on
//! the amount: a body just over it would lose its answer to the same race; the time bounds
//! the cost, as nginx's `lingering_time` does.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The longest a closing connection keeps reading.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// An IO whose shutdown lingers. Reads and writes pass through untouched; only
/// `poll_shutdown` does more. Server shutdown ends a linger at once.
pub(super) struct Linger<I> {
    io: I,
    phase: Phase,
    shutdown: CancellationToken,
}

enum Phase {
    Open,
    /// Our side is shut; discarding what the client still sends.
    Draining {
        deadline: Pin<Box<Sleep>>,
        stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    },
    Done,
}

impl<I> Linger<I> {
    pub(super) fn new(io: I, shutdown: CancellationToken) -> Self {
        Self {
            io,
            phase: Phase::Open,
            shutdown,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Linger<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.phase {
                Phase::Open => {
                    std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                    this.phase = Phase::Draining {
                        deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
                        stopping: Box::pin(this.shutdown.clone().cancelled_owned()),
                    };
                }
                Phase::Draining { deadline, stopping } => {
                    if deadline.as_mut().poll(cx).is_ready()
                        || stopping.as_mut().poll(cx).is_ready()
                    {
                        this.phase = Phase::Done;
                        continue;
                    }
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
                        // The client closed its side (or the connection broke): done.
                        Poll::Ready(_) => this.phase = Phase::Done,
                    }
                }
                Phase::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_shutdown_reads_what_the_client_still_sends_until_it_closes() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut server = Linger::new(server, CancellationToken::new());
        server.write_all(b"413").await.unwrap();
        let closing = tokio::spawn(async move { server.shutdown().await });
        // Far more than the pipe holds: only a lingering server lets all of it through.
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), async {
            client.write_all(&[b'x'; 4096]).await.unwrap();
            client.read_to_end(&mut answer).await.unwrap();
        })
        .await
        .expect("the client finishes sending and reads the answer");
        assert_eq!(answer, b"413");
        drop(client);
        closing.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn server_shutdown_ends_a_linger_at_once() {
        let (server, _client) = tokio::io::duplex(64);
        let stop = CancellationToken::new();
        let mut server = Linger::new(server, stop.clone());
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), server.shutdown())
            .await
            .expect("no linger on server shutdown")
            .unwrap();
    }
}
