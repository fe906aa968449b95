//! HTTPS for the console and the API (`www-secure-port`, `www-certificate`,
//! `www-private-key`, MailerQ's keys): the same router as the plain port,
//! served on TLS connections by `http::serve`; and, on the plain port, the
//! console's pages sent on to the secure one.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
