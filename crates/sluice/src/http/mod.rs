//! The management HTTP API (`docs/http-api.md`): inject into the outbox,
//! submit received mail to the inbox, queue statistics, peek and pop.

mod body;
mod console;
pub mod live;
pub mod policy;
pub mod secure;
pub mod serve;
mod status;

use crate::queues::QueueNames;
use crate::reception::message::{Reception, Recipient};
use crate::secret::same;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
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
    pub writer: crate::reception::Writer,
    pub names: QueueNames,
    pub hostname: String,
    pub extract: bool,
    /// The basic-authentication credentials expected, when `www-password` is set.
    pub basic_auth: Option<Credentials>,
    /// `www-tokens`: accepted as `Authorization: Bearer TOKEN`.
    pub tokens: Vec<String>,
    /// The settings database, for `/v1/pauses` and `/v1/suppressions`.
    pub settings: Option<policy::SettingsDb>,
    /// Where the message trace is (`DATA/trace`).
    pub trace_dir: std::path::PathBuf,
    /// The last hour of traffic, for `/v1/overview`.
    pub history: Arc<live::History>,
    /// With RabbitMQ: the instances sharing the broker, and this one's id there.
    pub cluster: Option<(Arc<sluice_queue::rabbitmq::cluster::Cluster>, String)>,
    /// The loaded plugins, in call order: name and the hooks it exports.
    pub plugins: Vec<(String, Vec<&'static str>)>,
    /// Set at shutdown (ends `/v1/live` streams).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// `www-username` and `www-password`; without a user name (MailerQ's
/// console asks for the password only) any user name is taken.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: String,
}

impl Credentials {
    /// Whether `given` (a decoded Basic `user:password`) matches.
    fn accept(&self, given: &[u8]) -> bool {
        match &self.user {
            Some(user) => same(given, format!("{user}:{}", self.password).as_bytes()),
            None => {
                let at = given.iter().position(|&b| b == b':');
                at.is_some_and(|i| same(&given[i + 1..], self.password.as_bytes()))
            }
        }
    }

    /// `user:password` to send (the CLI): `sluice` when any user name will do.
    pub fn pair(&self) -> String {
        format!("{}:{}", self.user.as_deref().unwrap_or("sluice"), self.password)
    }
}

impl Api {
    pub fn basic_auth(s: &crate::config::Settings) -> Option<Credentials> {
        s.www_password.as_ref().map(|password| Credentials {
            user: s.www_username.clone(),
            password: password.clone(),
        })
    }
}

/// Whether an `Authorization` header carries `basic` by the Basic scheme,
/// or one of `tokens` by the Bearer scheme; scheme names are
/// case-insensitive (RFC 7235 §2.1).
fn authorized(header: Option<&[u8]>, basic: Option<&Credentials>, tokens: &[&[String]]) -> bool {
    let Some(value) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        let given = token.trim().as_bytes();
        return tokens
            .iter()
            .flat_map(|list| list.iter())
            .any(|t| same(given, t.as_bytes()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let (Some(expected), Ok(given)) = (basic, base64::engine::general_purpose::STANDARD.decode(token.trim())) else {
        return false;
    };
    expected.accept(&given)
}

/// A queue name as AMQP allows it (1–255 bytes), without control characters
/// or `/`, so it is safe in logs, file names and broker calls.
fn check_queue_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty() && name.len() <= 255 && !name.chars().any(|c| c.is_control() || c == '/');
    if ok {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "`{}` is not a queue name (1-255 bytes, no control characters or `/`)",
                sluice_smtp::wire::shown(name)
            ),
        ))
    }
}

/// An error answer: status and a JSON `{"error": …}`.
pub(crate) struct ApiError(StatusCode, String);

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

type ApiState = State<Arc<Api>>;

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/trace/{key}", get(trace))
        .route("/v1/overview", get(live::overview))
        .route("/v1/live", get(live::live))
        .route("/queues", get(stats))
        .route("/queues/{name}", get(peek).post(push))
        .route("/queues/{name}/pop", post(pop))
        .route("/inject", post(inject))
        .route("/v1/inject", post(v1_inject))
        .route("/submit", post(submit))
        .route(
            "/v1/pauses",
            get(policy::pauses_get)
                .post(policy::pauses_post)
                .delete(policy::pauses_delete),
        )
        .route("/v1/policy", get(status::policy))
        .route(
            "/v1/suppressions",
            get(policy::suppressions_get)
                .post(policy::suppressions_post)
                .delete(policy::suppressions_delete),
        )
        .route("/v1/{table}", get(policy::table_list).post(policy::table_post))
        .route(
            "/v1/{table}/{id}",
            get(policy::table_get)
                .put(policy::table_put)
                .delete(policy::table_delete),
        )
        .route("/v1/destinations", get(live::destinations))
        .route("/v1/results/live", get(live::results))
        .route("/v1/plugins", get(status::plugins))
        .route("/v1/instances", get(status::instances))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(api.clone(), require_auth))
        // The console's page and scripts hold no data: they load without
        // credentials, and ask for them to reach the API.
        .merge(console::routes())
        .layer(middleware::from_fn(json_errors))
        .with_state(api)
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint".into())
}

/// Every error answer is JSON: axum's own (405, a query or path that does
/// not parse) come as plain text or empty, and are rewritten here.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut fixed = ApiError(status, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}

async fn require_auth(State(api): ApiState, req: Request, next: Next) -> Response {
    // The `tokens` table's tokens count as `www-tokens` do (and, like them, make authentication required).
    let table = api.settings.as_ref().map(|db| db.live.tokens()).unwrap_or_default();
    if api.basic_auth.is_some() || !api.tokens.is_empty() || !table.is_empty() {
        let given = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if !authorized(given, api.basic_auth.as_ref(), &[&api.tokens, &table]) {
            let mut refused = (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "authentication required"})),
            )
                .into_response();
            // The console asks for credentials in its own form, not the browser's dialog.
            if !req.headers().contains_key("x-sluice-console") {
                refused.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic realm=\"sluice\""),
                );
            }
            return refused;
        }
    }
    next.run(req).await
}

async fn health(State(api): ApiState) -> Result<Json<Value>, ApiError> {
    let stats = api.writer.queue.stats().await?;
    let messages: u64 = stats.iter().map(|q| q.ready + q.delayed + q.leased).sum();
    let duplicates = api.writer.queue.duplicates();
    let reception = api.writer.budget.used();
    Ok(Json(
        json!({ "status": "ok", "messages": messages, "duplicates": duplicates, "reception-memory": reception }),
    ))
}

async fn stats(State(api): ApiState) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        serde_json::to_value(api.writer.queue.stats().await?).unwrap_or_default(),
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

async fn peek(State(api): ApiState, Path(name): Path<String>, Query(q): Query<Count>) -> Result<Json<Value>, ApiError> {
    check_queue_name(&name)?;
    Ok(Json(render(api.writer.queue.peek(&name, q.n.unwrap_or(10)).await?)))
}

/// Leased messages that go back to their queue unless acknowledged, also
/// when the request is dropped because the client went away.
struct HeldMessages {
    queue: Arc<dyn Queue>,
    ids: Vec<u64>,
}

impl Drop for HeldMessages {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            let (queue, ids) = (self.queue.clone(), std::mem::take(&mut self.ids));
            tokio::spawn(async move { queue.release(ids).await });
        }
    }
}

async fn pop(State(api): ApiState, Path(name): Path<String>, Query(q): Query<Count>) -> Result<Json<Value>, ApiError> {
    check_queue_name(&name)?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(60));
    let taken = api.writer.queue.take(&name, q.n.unwrap_or(1), wait).await?;
    let mut lease = HeldMessages {
        queue: api.writer.queue.clone(),
        ids: taken.iter().map(|m| m.id).collect(),
    };
    api.writer.queue.settle(Vec::new(), lease.ids.clone()).await?;
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
    api.writer.queue.publish(batch).await?;
    Ok(Json(json!({ "queued": n, "queue": queue })))
}

/// Messages for the outbox; each must be an object with a recipient.
async fn inject(State(api): ApiState, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let outbox = api.names.outbox.clone();
    inject_to(&api, &headers, body, &outbox, None).await
}

/// `POST /v1/inject`, MailerQ 5.x's REST injection: messages as for
/// `/inject`, to the inbox (`rabbitmq-inbox`, else the outbox) like
/// everything received, each with an `http` property saying how it came.
async fn v1_inject(
    State(api): ApiState,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let mut http = json!({ "received": crate::stamp::now(), "hostname": api.hostname });
    if let Some(axum::Extension(axum::extract::ConnectInfo(peer))) = peer {
        http["ip"] = peer.ip().to_canonical().to_string().into();
    }
    let inbox = api.names.inbox.clone();
    inject_to(&api, &headers, body, &inbox, Some(http)).await
}

/// Checks, stamps and publishes injected messages to `queue`; `http` is set
/// on each (MailerQ's `/v1/inject`).
async fn inject_to(
    api: &Api,
    headers: &HeaderMap,
    body: Body,
    queue: &str,
    http: Option<Value>,
) -> Result<Json<Value>, ApiError> {
    let (body, _charge) = body::read(&api.writer.budget, headers, body).await?;
    let mut values = parse_messages(&body)?;
    drop(body);
    for (i, v) in values.iter().enumerate() {
        // The delivery engine would refuse these as invalid input; say so now.
        let checked = match v {
            Value::Object(m) => crate::deliver::outgoing::check(m).map_err(|e| e.to_string()),
            _ => Err("not a JSON object".to_string()),
        };
        if let Err(e) = checked {
            return Err(ApiError(StatusCode::BAD_REQUEST, format!("message {}: {e}", i + 1)));
        }
    }
    // Each message gets the id its trace goes by, unless it has one.
    for v in values.iter_mut() {
        if let Value::Object(m) = v {
            m.entry("message-id").or_insert_with(|| api.writer.ids.next().into());
            if let Some(http) = &http {
                m.insert("http".into(), http.clone());
            }
        }
    }
    let via = if http.is_some() { "v1/inject" } else { "inject" };
    let traced: Vec<serde_json::Map<String, Value>> = if crate::trace::get().enabled() {
        values
            .iter()
            .filter_map(|v| v.as_object())
            .map(|m| injected(m, queue, via))
            .collect()
    } else {
        Vec::new()
    };
    let n = values.len();
    let answer = publish(api, queue, values).await;
    let code = if answer.is_ok() { 250 } else { 451 };
    for _ in 0..n {
        crate::metrics::get().received("http", code);
    }
    if answer.is_ok() {
        for event in traced {
            crate::trace::get().record("received", event);
        }
    }
    answer
}

/// The trace's `received` event of an injected message: its addresses and id, how it came.
fn injected(m: &serde_json::Map<String, Value>, queue: &str, via: &str) -> serde_json::Map<String, Value> {
    let mut event = serde_json::Map::new();
    for key in ["message-id", "envelope", "recipient"] {
        if let Some(v) = m.get(key) {
            event.insert(key.into(), v.clone());
        }
    }
    event.insert("received".into(), crate::stamp::now().into());
    event.insert("via".into(), via.into());
    event.insert("queue".into(), queue.into());
    event
}

/// `GET /v1/trace/{key}`: the trace of the messages with this message-id, or to this recipient.
async fn trace(State(api): ApiState, Path(key): Path<String>) -> Result<Json<Value>, ApiError> {
    let key = key.trim().to_string();
    if key.is_empty() || key.len() > 320 || key.chars().any(char::is_control) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "expected a message-id or a recipient address".into(),
        ));
    }
    let dir = api.trace_dir.clone();
    let events = tokio::task::spawn_blocking(move || crate::trace::find(&dir, &key))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("trace: {e}")))?;
    Ok(Json(Value::Array(events)))
}

/// `GET /metrics`: the Prometheus exposition, queue sizes read now.
async fn metrics(State(api): ApiState) -> Response {
    let m = crate::metrics::get();
    if let Ok(stats) = api.writer.queue.stats().await {
        m.set_queues(&stats);
    }
    m.read_in_flight();
    if let Some(db) = &api.settings {
        let now = std::time::Instant::now();
        let busiest = sluice_queue::lock(&db.live.shaper).busiest(crate::metrics::TOP_DESTINATIONS, now);
        m.set_destinations(&busiest);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

/// Any JSON values to any queue, as they are.
async fn push(
    State(api): ApiState,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    check_queue_name(&name)?;
    let (body, _charge) = body::read(&api.writer.budget, &headers, body).await?;
    let values = parse_messages(&body)?;
    drop(body);
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
async fn submit(State(api): ApiState, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let (body, _charge) = body::read(&api.writer.budget, &headers, body).await?;
    let s: Submission = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid submission: {e}")))?;
    drop(body);
    if s.recipients.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "no recipients".into()));
    }
    // The same grammar as SMTP's MAIL and RCPT.
    let bad = |what: &str, a: &str| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{what} `{}` is not a valid address", sluice_smtp::wire::shown(a)),
        )
    };
    if sluice_smtp::wire::Path::reverse(&s.envelope).is_err() {
        return Err(bad("envelope", &s.envelope));
    }
    if let Some(r) = s
        .recipients
        .iter()
        .find(|r| sluice_smtp::wire::Path::mailbox(r).is_err())
    {
        return Err(bad("recipient", r));
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
    let queues = crate::reception::Queues {
        main: &api.names.inbox,
        local: &api.names.local,
        reports: &api.names.reports,
    };
    let stored = crate::reception::store(&api.writer, queues, reception, &recipients).await;
    crate::metrics::get().received("http", if stored.is_ok() { 250 } else { 451 });
    let ids = stored?;
    Ok(Json(
        json!({ "queued": ids.len(), "queue": api.names.inbox, "ids": ids }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(pair: &str) -> Vec<u8> {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)).into_bytes()
    }

    #[test]
    fn a_password_alone_takes_any_user_name_and_a_user_name_is_checked() {
        let any = Credentials {
            user: None,
            password: "pw:x".into(),
        };
        let named = Credentials {
            user: Some("admin".into()),
            password: "pw:x".into(),
        };
        let ok = |c: &Credentials, pair: &str| authorized(Some(&basic(pair)), Some(c), &[]);
        assert!(ok(&any, "whoever:pw:x"));
        assert!(ok(&any, ":pw:x"));
        assert!(!ok(&any, "whoever:pw"));
        assert!(!ok(&any, "pw:x"), "the password is what follows the first colon");
        assert!(ok(&named, "admin:pw:x"));
        assert!(!ok(&named, "other:pw:x"));
        assert_eq!(any.pair(), "sluice:pw:x");
        assert!(!authorized(None, Some(&any), &[]));
    }
}
