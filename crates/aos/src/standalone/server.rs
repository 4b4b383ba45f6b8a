//! The HTTP server of `aos run`: hyper's HTTP/1 connections with a header read timeout, so a
//! client that never finishes its headers cannot hold a connection (and its buffers) forever.
//! `axum::serve` sets no timer, and with it hyper times out nothing; this is the same accept
//! loop with one.
//!
//! The header timeout also ends idle keep-alive connections: it runs from the moment hyper
//! waits for a request's first byte.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting and waits for
/// the connections in flight (each bounded by the header and body timeouts).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: pause instead of spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "webhook connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
