//! The accept loop: HTTP/1 and HTTP/2 by hyper, with a timeout on reading a request's headers
//! (a client that never finishes them loses its connection), the client address in each
//! request, and a shutdown that stops accepting, lets open requests and streams finish within
//! a grace period, then returns.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Connections open at once; more are refused until one closes.
pub const MAX_CONNECTIONS: usize = 4096;

/// Serves `router` on `listener` until `shutdown` resolves, then drains for at most `grace`.
pub async fn run(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(64);
    let graceful = GracefulShutdown::new();
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of file descriptors and the like: wait, do not spin
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // no Nagle: streamed deltas are small writes, and waiting for the peer's delayed ACK
        // would add up to 40 ms to a turn
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(max = MAX_CONNECTIONS, "too many open connections; refusing one");
            continue;
        };
        let service = router.clone().map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req.map(axum::body::Body::new)
        });
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _permit = permit;
            // a connection that sends nothing is closed: hyper's header timeout starts only once
            // a request (or the HTTP/2 preface) begins
            let mut first = [0u8; 1];
            if !matches!(tokio::time::timeout(header_timeout, tcp.peek(&mut first)).await, Ok(Ok(n)) if n > 0) {
                return;
            }
            let conn = builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new connections; letting open ones finish");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("every connection finished"),
        () = tokio::time::sleep(grace) => tracing::warn!("connections still open after the grace period; closing them"),
    }
    Ok(())
}
