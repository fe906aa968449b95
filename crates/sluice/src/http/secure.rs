//! HTTPS for the console and the API (`www-secure-port`, `www-certificate`,
//! `www-private-key`, MailerQ's keys): the same router as the plain port,
//! served on TLS connections; and, on the plain port, the console's pages
//! sent on to the secure one.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// How long a client may take over its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Serves `app` on TLS connections accepted from `listener` until `stop` is set.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: TlsAcceptor,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = crate::shutdown::requested(&mut stop) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "www-secure-port: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tls, app, stop) = (tls.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE, tls.accept(tcp)).await;
            let tls_stream = match handshake {
                Ok(Ok(s)) => {
                    crate::metrics::handshake("www", true);
                    s
                }
                Ok(Err(e)) => {
                    crate::metrics::handshake("www", false);
                    tracing::debug!(%peer, error = %e, "www-secure-port: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    crate::metrics::handshake("www", false);
                    tracing::debug!(%peer, "www-secure-port: TLS handshake timed out");
                    return;
                }
            };
            // The peer for handlers that record it (as the plain port's connect info).
            let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HANDSHAKE)
                .serve_connection(hyper_util::rt::TokioIo::new(tls_stream), service);
            tokio::pin!(conn);
            let mut stop = stop;
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "www-secure-port: connection ended");
                    }
                }
                _ = crate::shutdown::requested(&mut stop) => {
                    // Let the request in progress finish, then close.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// On the plain port while a secure one is set: the console's pages answer
/// with a redirect to HTTPS (as MailerQ forwards its console); the API stays
/// served for the command line and scripts (`www-port` off is not supported yet).
pub async fn console_to_https(State(port): State<u16>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path != "/" && path != "/console" && !path.starts_with("/console/") {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_name)
        .unwrap_or("127.0.0.1");
    let location = format!("https://{host}:{port}{path}");
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response()
}

/// The host part of a `Host` header when it is a plain name or address: the
/// redirect repeats it, so nothing else may pass (no header injection).
fn host_name(value: &str) -> Option<&str> {
    let host = if value.starts_with('[') {
        &value[..=value.find(']')?]
    } else {
        value.split(':').next()?
    };
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn only_plain_host_names_are_repeated() {
        assert_eq!(host_name("mx.example.com:8485"), Some("mx.example.com"));
        assert_eq!(host_name("127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:8485"), Some("[::1]"));
        assert_eq!(host_name("evil.test/path"), None);
        assert_eq!(host_name("a b"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name("[::1"), None);
    }
}
