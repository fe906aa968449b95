//! The settings database over HTTP: `/v1/pauses` and `/v1/suppressions`
//! with MailerQ 5.x's names and fields (JSON or urlencoded bodies), and
//! `/v1/TABLE[/ID]` for every other table (GET, POST, PUT, DELETE). A change
//! is in effect on this instance as soon as the answer is sent, and on the
//! others sharing the database within 5 s.

use super::{ApiError, ApiState};
use crate::policy::edit::{self, EditError};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value as Json_};
use sluice_policy::schema::{Table, PAUSED, SUPPRESSIONS};
use sluice_policy::store::Value;
use sluice_policy::Store;
use std::sync::{Arc, Mutex};

/// The settings database as the API writes it.
pub struct SettingsDb {
    pub store: Arc<Mutex<Box<dyn Store>>>,
    pub live: crate::policy::Live,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// A request's fields: a JSON object, or `a=b&c=d`.
fn fields(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Json_>, ApiError> {
    let urlencoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    if urlencoded {
        let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
        let mut out = Map::new();
        for pair in text.trim().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.insert(decode(k)?, Json_::String(decode(v)?));
        }
        return Ok(out);
    }
    match serde_json::from_slice(body) {
        Ok(Json_::Object(m)) => Ok(m),
        Ok(_) => Err(bad("expected a JSON object")),
        Err(e) => Err(bad(format!("not JSON: {e}"))),
    }
}

/// Percent-decoding of one urlencoded name or value (`+` is a space).
fn decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad("a bad %-escape in the urlencoded body"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad("the urlencoded body is not UTF-8"))
}

/// Runs `op` on the store off the runtime, then puts the new policy in force.
async fn write<T: Send + 'static>(
    api: &Arc<super::Api>,
    op: impl FnOnce(&mut dyn Store) -> Result<T, EditError> + Send + 'static,
) -> Result<T, ApiError> {
    let out = with_store(api, op, true).await?;
    // MailerQ's word to the other instances on the broker: read the
    // settings now (they would also see the change marker within a second).
    if let Some((cluster, _)) = &api.cluster {
        cluster.tell(br#"{"reload":true}"#.to_vec());
    }
    Ok(out)
}

async fn with_store<T: Send + 'static>(
    api: &Arc<super::Api>,
    op: impl FnOnce(&mut dyn Store) -> Result<T, EditError> + Send + 'static,
    reload: bool,
) -> Result<T, ApiError> {
    let db = api
        .settings
        .as_ref()
        .ok_or_else(|| ApiError(StatusCode::SERVICE_UNAVAILABLE, "no settings database".into()))?;
    let (store, live) = (db.store.clone(), db.live.clone());
    tokio::task::spawn_blocking(move || {
        let mut store = sluice_queue::lock(&store);
        let out = op(store.as_mut())?;
        if reload {
            live.reload(store.as_mut()).map_err(EditError::Db)?;
        }
        Ok::<T, EditError>(out)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(ApiError::from)
}

impl From<EditError> for ApiError {
    fn from(e: EditError) -> ApiError {
        let status = match e {
            EditError::Bad(_) => StatusCode::BAD_REQUEST,
            EditError::NotFound(..) => StatusCode::NOT_FOUND,
            EditError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

/// Creates or updates as `edit::upsert`; answers `{"created", "id"}` as POST does.
async fn upsert(
    api: &Arc<super::Api>,
    table: &'static Table,
    key: Vec<(&'static str, Value)>,
    rest: Vec<(&'static str, Value)>,
) -> Result<Json<Json_>, ApiError> {
    let id = write(api, move |s| edit::upsert(s, table, &key, &rest)).await?;
    Ok(Json(json!({"created": id.is_some(), "id": id})))
}

async fn rows(api: &Arc<super::Api>, table: &'static Table) -> Result<Vec<sluice_policy::store::Row>, ApiError> {
    with_store(api, move |s| Ok(s.rows(table)?), false).await
}

pub async fn pauses_get(axum::extract::State(api): ApiState) -> Result<Json<Json_>, ApiError> {
    let now = sluice_queue::now_ms();
    let rows = rows(&api, &PAUSED).await?;
    Ok(Json(Json_::Array(
        rows.iter().filter_map(|r| edit::pause_shown(r, now)).collect(),
    )))
}

pub async fn pauses_post(
    axum::extract::State(api): ApiState,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let values = edit::pause_fields(&fields(&headers, &body)?)?;
    let (key, rest) = values.split_at(4);
    let (key, rest) = (key.to_vec(), rest.to_vec());
    // The same scope again updates its expiry and reason.
    upsert(&api, &PAUSED, key, rest).await
}

pub async fn pauses_delete(
    axum::extract::State(api): ApiState,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let values = edit::pause_fields(&fields(&headers, &body)?)?;
    let key = values[..4].to_vec();
    let removed = write(&api, move |s| Ok(s.delete(&PAUSED, &key)?)).await?;
    Ok(Json(json!({"removed": removed})))
}

pub async fn suppressions_get(axum::extract::State(api): ApiState) -> Result<Json<Json_>, ApiError> {
    let rows = rows(&api, &SUPPRESSIONS).await?;
    Ok(Json(Json_::Array(rows.iter().map(edit::suppression_shown).collect())))
}

pub async fn suppressions_post(
    axum::extract::State(api): ApiState,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let f = fields(&headers, &body)?;
    let (key, rest) = (edit::suppression_key(&f)?, edit::suppression_rest(&f)?);
    upsert(&api, &SUPPRESSIONS, key, rest).await
}

pub async fn suppressions_delete(
    axum::extract::State(api): ApiState,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let key = edit::suppression_key(&fields(&headers, &body)?)?;
    let removed = write(&api, move |s| Ok(s.delete(&SUPPRESSIONS, &key)?)).await?;
    Ok(Json(json!({"removed": removed})))
}

fn resource(name: &str) -> Result<&'static Table, ApiError> {
    edit::resource(name).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()))
}

pub async fn table_list(
    axum::extract::State(api): ApiState,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<Json_>, ApiError> {
    let table = resource(&name)?;
    let rows = with_store(&api, move |s| edit::list(s, table), false).await?;
    Ok(Json(Json_::Array(rows)))
}

pub async fn table_get(
    axum::extract::State(api): ApiState,
    axum::extract::Path((name, id)): axum::extract::Path<(String, i64)>,
) -> Result<Json<Json_>, ApiError> {
    let table = resource(&name)?;
    Ok(Json(with_store(&api, move |s| edit::get(s, table, id), false).await?))
}

pub async fn table_post(
    axum::extract::State(api): ApiState,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let table = resource(&name)?;
    let f = fields(&headers, &body)?;
    let id = write(&api, move |s| edit::create(s, table, &f)).await?;
    Ok(Json(json!({"id": id})))
}

pub async fn table_put(
    axum::extract::State(api): ApiState,
    axum::extract::Path((name, id)): axum::extract::Path<(String, i64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let table = resource(&name)?;
    let f = fields(&headers, &body)?;
    write(&api, move |s| edit::change(s, table, id, &f)).await?;
    Ok(Json(json!({"id": id})))
}

pub async fn table_delete(
    axum::extract::State(api): ApiState,
    axum::extract::Path((name, id)): axum::extract::Path<(String, i64)>,
) -> Result<Json<Json_>, ApiError> {
    let table = resource(&name)?;
    write(&api, move |s| edit::remove(s, table, id)).await?;
    Ok(Json(json!({"removed": 1})))
}
