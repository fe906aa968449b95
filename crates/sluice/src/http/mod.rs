//! The management HTTP API (`docs/http-api.md`): inject into the outbox,
//! submit received mail to the inbox, queue statistics, peek and pop.

use crate::queues::QueueNames;
use crate::receive::message::{Reception, Recipient};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sluice_queue::{NewMessage, Queue, StoredMessage};
use std::sync::Arc;
use std::time::Duration;

/// What the handlers share.
pub struct Api {
    pub sink: crate::receive::Sink,
    pub names: QueueNames,
    pub hostname: String,
    pub extract: bool,
    /// Expected `Authorization` header when `www-username` is set.
    pub basic_auth: Option<String>,
}

impl Api {
    pub fn basic_auth(user: Option<&str>, password: &str) -> Option<String> {
        user.map(|u| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{password}"))
            )
        })
    }
}

/// An error answer: status and a JSON `{"error": …}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<sluice_queue::QueueError> for ApiError {
    fn from(e: sluice_queue::QueueError) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

type Shared = State<Arc<Api>>;

/// Largest request body: a batch of messages is held in memory while it is stored.
pub const MAX_BODY: usize = 256 << 20;

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/queues", get(stats))
        .route("/queues/{name}", get(peek).post(push))
        .route("/queues/{name}/pop", post(pop))
        .route("/inject", post(inject))
        .route("/submit", post(submit))
        .layer(middleware::from_fn_with_state(api.clone(), require_auth))
        // Bulk injects are the point of the API; axum's default (2 MB) is a few hundred messages.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

async fn require_auth(State(api): Shared, req: Request, next: Next) -> Response {
    if let Some(expected) = &api.basic_auth {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"sluice\"")],
                Json(json!({"error": "authentication required"})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

async fn health(State(api): Shared) -> Result<Json<Value>, ApiError> {
    let stats = api.sink.queue.stats().await?;
    let messages: u64 = stats.iter().map(|q| q.ready + q.delayed + q.leased).sum();
    let duplicates = api.sink.queue.duplicates();
    Ok(Json(
        json!({ "status": "ok", "messages": messages, "duplicates": duplicates }),
    ))
}

async fn stats(State(api): Shared) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        serde_json::to_value(api.sink.queue.stats().await?).unwrap_or_default(),
    ))
}

#[derive(Deserialize)]
struct Count {
    n: Option<usize>,
    /// Seconds to wait for a message when the queue is empty (pop only).
    wait: Option<u64>,
}

/// A stored message as JSON: the parsed object, or the raw text when it is not JSON.
fn render(messages: Vec<StoredMessage>) -> Value {
    Value::Array(
        messages
            .into_iter()
            .map(|m| {
                serde_json::from_slice(&m.body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&m.body).into_owned()))
            })
            .collect(),
    )
}

async fn peek(State(api): Shared, Path(name): Path<String>, Query(q): Query<Count>) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(api.sink.queue.peek(&name, q.n.unwrap_or(10)).await?)))
}

/// Leased messages that go back to their queue unless acknowledged, also
/// when the request is dropped because the client went away.
struct Lease {
    queue: Arc<dyn Queue>,
    ids: Vec<u64>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            let (queue, ids) = (self.queue.clone(), std::mem::take(&mut self.ids));
            tokio::spawn(async move { queue.release(ids).await });
        }
    }
}

async fn pop(State(api): Shared, Path(name): Path<String>, Query(q): Query<Count>) -> Result<Json<Value>, ApiError> {
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(60));
    let taken = api.sink.queue.take(&name, q.n.unwrap_or(1), wait).await?;
    let mut lease = Lease {
        queue: api.sink.queue.clone(),
        ids: taken.iter().map(|m| m.id).collect(),
    };
    api.sink.queue.settle(Vec::new(), lease.ids.clone()).await?;
    lease.ids.clear();
    Ok(Json(render(taken)))
}

/// Splits a body into JSON values: one object, an array, or one object per line.
fn parse_messages(body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let bad = |msg: String| ApiError(StatusCode::BAD_REQUEST, msg);
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(v)) => Ok(v),
        Ok(v) => Ok(vec![v]),
        Err(_) => body
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| serde_json::from_slice(l).map_err(|e| bad(format!("line {}: invalid JSON: {e}", i + 1))))
            .collect(),
    }
}

async fn publish(api: &Api, queue: &str, values: Vec<Value>) -> Result<Json<Value>, ApiError> {
    let n = values.len();
    let batch = values
        .into_iter()
        .map(|v| NewMessage::now(queue, v.to_string().into_bytes()))
        .collect();
    api.sink.queue.publish(batch).await?;
    Ok(Json(json!({ "queued": n, "queue": queue })))
}

/// Messages for the outbox; each must be an object with a recipient.
async fn inject(State(api): Shared, body: Bytes) -> Result<Json<Value>, ApiError> {
    let values = parse_messages(&body)?;
    for (i, v) in values.iter().enumerate() {
        let ok = v
            .get("recipient")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty());
        if !ok {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("message {}: not a JSON object with a recipient", i + 1),
            ));
        }
    }
    let outbox = api.names.outbox.clone();
    publish(&api, &outbox, values).await
}

/// Any JSON values to any queue, as they are.
async fn push(State(api): Shared, Path(name): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let values = parse_messages(&body)?;
    publish(&api, &name, values).await
}

#[derive(Deserialize)]
struct Submission {
    envelope: String,
    recipients: Vec<String>,
    mime: String,
    #[serde(default)]
    cli: Map<String, Value>,
}

/// A received message (from `sluice send`) for the inbox, one JSON per recipient.
async fn submit(State(api): Shared, Json(s): Json<Submission>) -> Result<Json<Value>, ApiError> {
    if s.recipients.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "no recipients".into()));
    }
    let mut properties = Map::new();
    properties.insert("received".into(), crate::stamp::now().into());
    properties.insert("hostname".into(), api.hostname.clone().into());
    properties.insert("cli".into(), Value::Object(s.cli));
    let reception = Reception {
        envelope: s.envelope,
        mime: s.mime.into_bytes(),
        properties,
        dsn: Map::new(),
        extract: api.extract,
    };
    let recipients: Vec<Recipient> = s
        .recipients
        .iter()
        .map(|r| Recipient {
            address: r.clone(),
            ..Default::default()
        })
        .collect();
    let ids = crate::receive::store(&api.sink, &api.names.inbox, &reception, &recipients).await?;
    Ok(Json(
        json!({ "queued": ids.len(), "queue": api.names.inbox, "ids": ids }),
    ))
}
