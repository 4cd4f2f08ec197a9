//! Serving an axum router on a bound listener, over TLS or plain HTTP, with
//! the limits every network-facing endpoint of the operator keeps (the
//! verifier's and the admission webhook's): a bounded request head read
//! within a deadline, a bounded TLS handshake, and a drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// Largest request head (request line and headers) accepted; larger ones get 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A client must send its request head within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake must complete within this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, open connections get this long to finish their requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the TLS configuration of the next connection comes from: files
/// reloaded when they change, or a certificate the operator renews itself.
pub trait TlsSource: Send + Sync {
    fn acceptor(&self) -> Arc<TlsAcceptor>;
}

/// Accepts connections on `listener` and serves `router` on each until
/// `shutdown` completes; then stops accepting and lets open requests finish
/// (up to [`DRAIN_TIMEOUT`]).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<dyn TlsSource>>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = signal::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(router.clone());
                    let stop = stop_rx.clone();
                    let tls = tls.as_ref().map(|tls| tls.acceptor());
                    connections.spawn(async move {
                        match tls {
                            None => serve_connection(stream, service, stop).await,
                            Some(acceptor) => {
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(stream)) => serve_connection(stream, service, stop).await,
                                    Ok(Err(err)) => debug!(error = %err, "TLS handshake failed"),
                                    Err(_) => debug!("TLS handshake timed out"),
                                }
                            }
                        }
                    });
                }
                Err(err) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = connections.len(),
            "closing connections still open after the drain timeout"
        );
        connections.abort_all();
    }
}

async fn serve_connection<I>(
    io: I,
    service: TowerToHyperService<axum::Router>,
    mut stop: signal::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                debug!(error = %err, "connection ended with an error");
            }
        }
        _ = stop_requested(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

async fn stop_requested(stop: &mut signal::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
