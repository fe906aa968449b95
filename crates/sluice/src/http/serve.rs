//! The console's and the API's connections, on the plain port and on
//! `www-secure-port` alike: at most `www-connections` open at once (more
//! wait in the listen backlog), a deadline for each request's headers and
//! for a TLS handshake, and at a stop the requests in progress finish
//! (within `shutdown-grace`) before the daemon closes its store.

use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// How long a client may take over its TLS handshake, and over one request's headers.
const HEADERS: Duration = Duration::from_secs(10);

/// What every HTTP port shares.
#[derive(Clone)]
pub struct Limits {
    /// `www-connections`, for the plain and the secure port together.
    pub connections: Arc<Semaphore>,
    /// `shutdown-grace`: how long a stop waits for requests in progress.
    pub grace: Duration,
}

/// Serves `app` on connections from `listener` (TLS first with `tls`) until `stop` is set,
/// then waits for the connections still open.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let port = if tls.is_some() { "www-secure-port" } else { "www-port" };
    let mut open = tokio::task::JoinSet::new();
    loop {
        // A free slot first: at the limit, clients wait in the backlog.
        let permit = tokio::select! {
            p = limits.connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = crate::shutdown::requested(&mut stop) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = crate::shutdown::requested(&mut stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "{port}: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tls, app, stop) = (tls.clone(), app.clone(), stop.clone());
        open.spawn(async move {
            let _slot = permit;
            match tls {
                None => connection(tcp, peer, app, stop, port).await,
                Some(tls) => match tokio::time::timeout(HEADERS, tls.accept(tcp)).await {
                    Ok(Ok(s)) => {
                        crate::metrics::handshake("www", true);
                        connection(s, peer, app, stop, port).await
                    }
                    Ok(Err(e)) => {
                        crate::metrics::handshake("www", false);
                        tracing::debug!(%peer, error = %e, "{port}: TLS handshake failed");
                    }
                    Err(_) => {
                        crate::metrics::handshake("www", false);
                        tracing::debug!(%peer, "{port}: TLS handshake timed out");
                    }
                },
            }
        });
        // Finished connections leave the set as they go.
        while open.try_join_next().is_some() {}
    }
    drop(listener);
    let all_ended = async { while open.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.grace, all_ended).await.is_err() {
        tracing::info!("{port}: connections still open after shutdown-grace are closed");
    }
}

/// One HTTP/1.1 connection to its end; at a stop, the request in progress finishes first.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    port: &str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The peer for handlers that record it (`/v1/inject`'s `http` property).
    let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADERS)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "{port}: connection ended");
            }
        }
        _ = crate::shutdown::requested(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
