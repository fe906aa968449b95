//! `/v1/pauses` and `/v1/suppressions`, with MailerQ 5.x's names and fields
//! (JSON or urlencoded bodies): rows of the settings database, in effect on
//! this instance as soon as the answer is sent.

use super::{ApiError, ApiState};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value as Json_};
use sluice_policy::schema::{Table, PAUSED, SUPPRESSIONS};
use sluice_policy::store::Value;
use sluice_policy::Store;
use std::net::IpAddr;
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

/// A text field: at most 255 characters, no control characters.
fn text(f: &Map<String, Json_>, name: &str) -> Result<String, ApiError> {
    let v = match f.get(name) {
        None | Some(Json_::Null) => return Ok(String::new()),
        Some(Json_::String(s)) => s.trim().to_string(),
        Some(Json_::Number(n)) => n.to_string(),
        Some(_) => return Err(bad(format!("{name}: expected a string"))),
    };
    if v.chars().count() > 255 || v.chars().any(char::is_control) {
        return Err(bad(format!("{name}: at most 255 characters, no control characters")));
    }
    Ok(v)
}

fn ip(f: &Map<String, Json_>, name: &str) -> Result<String, ApiError> {
    let v = text(f, name)?;
    if !v.is_empty() && v.parse::<IpAddr>().is_err() {
        return Err(bad(format!(
            "{name}: `{}` is not an IP address",
            sluice_smtp::wire::shown(&v)
        )));
    }
    Ok(v)
}

/// Runs `op` on the store off the runtime, then puts the new policy in force.
async fn write<T: Send + 'static>(
    api: &Arc<super::Api>,
    op: impl FnOnce(&mut dyn Store) -> Result<T, sluice_policy::DbError> + Send + 'static,
) -> Result<T, ApiError> {
    with_store(api, op, true).await
}

async fn with_store<T: Send + 'static>(
    api: &Arc<super::Api>,
    op: impl FnOnce(&mut dyn Store) -> Result<T, sluice_policy::DbError> + Send + 'static,
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
            live.reload(store.as_mut())?;
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e: sluice_policy::DbError| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// Sets `rest` on the rows whose `key` columns match, or adds a row when
/// none does; answers `{"created", "id"}` as POST does.
async fn upsert(
    api: &Arc<super::Api>,
    table: &'static Table,
    key: Vec<(&'static str, Value)>,
    rest: Vec<(&'static str, Value)>,
) -> Result<Json<Json_>, ApiError> {
    let id = write(api, move |s| {
        if s.update(table, &key, &rest)? > 0 {
            return Ok(None);
        }
        let all: Vec<_> = key.iter().chain(&rest).cloned().collect();
        s.insert(table, &all).map(Some)
    })
    .await?;
    Ok(Json(json!({"created": id.is_some(), "id": id})))
}

async fn rows(api: &Arc<super::Api>, table: &'static Table) -> Result<Vec<sluice_policy::store::Row>, ApiError> {
    with_store(api, move |s| s.rows(table), false).await
}

/// A pause's fields in the table's columns, checked as MailerQ does.
fn pause_fields(f: &Map<String, Json_>) -> Result<Vec<(&'static str, Value)>, ApiError> {
    if !text(f, "pool")?.is_empty() {
        return Err(bad("pool: pools are not supported; pause by mta (local IP) instead"));
    }
    let (mta, domain, target) = (ip(f, "mta")?, text(f, "domain")?.to_lowercase(), ip(f, "ip")?);
    if !domain.is_empty() && !target.is_empty() {
        return Err(bad("domain and ip may not be given together"));
    }
    let expire = text(f, "expire")?;
    if !expire.is_empty() && sluice_policy::parse_time(&expire).is_none() {
        return Err(bad("expire: expected YYYY-MM-DD HH:MM:SS (UTC)"));
    }
    Ok(vec![
        ("localip", Value::Text(mta)),
        ("domain", Value::Text(domain)),
        ("target", Value::Text(target)),
        ("tag", Value::Text(text(f, "tag")?)),
        ("expire", Value::Text(expire)),
        ("reason", Value::Text(text(f, "reason")?)),
    ])
}

pub async fn pauses_get(axum::extract::State(api): ApiState) -> Result<Json<Json_>, ApiError> {
    let now = sluice_queue::now_ms();
    let mut out = Vec::new();
    for row in rows(&api, &PAUSED).await? {
        let get = |c: &str| row.text(c).ok().flatten().unwrap_or_default();
        let expire = get("expire");
        if sluice_policy::parse_time(&expire).is_some_and(|e| e <= now) {
            continue;
        }
        let mut p = Map::new();
        for (field, column) in [
            ("mta", "localip"),
            ("domain", "domain"),
            ("ip", "target"),
            ("tag", "tag"),
            ("expire", "expire"),
            ("reason", "reason"),
        ] {
            let v = get(column);
            if !v.is_empty() {
                p.insert(field.into(), v.into());
            }
        }
        p.insert("id".into(), row.id.into());
        // Every instance that shares the database holds it.
        p.insert("cluster".into(), true.into());
        out.push(Json_::Object(p));
    }
    Ok(Json(Json_::Array(out)))
}

pub async fn pauses_post(
    axum::extract::State(api): ApiState,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let values = pause_fields(&fields(&headers, &body)?)?;
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
    let values = pause_fields(&fields(&headers, &body)?)?;
    let key = values[..4].to_vec();
    let removed = write(&api, move |s| s.delete(&PAUSED, &key)).await?;
    Ok(Json(json!({"removed": removed})))
}

fn suppression_key(f: &Map<String, Json_>) -> Result<Vec<(&'static str, Value)>, ApiError> {
    let kind = text(f, "type")?.to_lowercase();
    if kind != "address" && kind != "domain" {
        return Err(bad("type: expected address or domain"));
    }
    let value = text(f, "value")?.to_lowercase();
    if value.is_empty() || (kind == "address") != value.contains('@') {
        return Err(bad(format!("value: expected an {kind}")));
    }
    Ok(vec![("type", Value::Text(kind)), ("value", Value::Text(value))])
}

pub async fn suppressions_get(axum::extract::State(api): ApiState) -> Result<Json<Json_>, ApiError> {
    let mut out = Vec::new();
    for row in rows(&api, &SUPPRESSIONS).await? {
        let get = |c: &str| row.text(c).ok().flatten().unwrap_or_default();
        out.push(json!({
            "id": row.id,
            "type": get("type"),
            "value": get("value"),
            "code": row.int("code").ok().flatten().unwrap_or(550),
            "extended": Some(get("extended")).filter(|e| !e.is_empty()).unwrap_or_else(|| "5.7.1".into()),
            "description": get("description"),
        }));
    }
    Ok(Json(Json_::Array(out)))
}

pub async fn suppressions_post(
    axum::extract::State(api): ApiState,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let f = fields(&headers, &body)?;
    let key = suppression_key(&f)?;
    let code = match f.get("code") {
        None | Some(Json_::Null) => None,
        Some(v) => match v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())) {
            Some(c @ 400..=599) => Some(c),
            _ => return Err(bad("code: expected a 4xx or 5xx reply code")),
        },
    };
    let extended = text(&f, "extended")?;
    if !extended.is_empty() && !sluice_policy::failure_status(&extended) {
        return Err(bad("extended: expected an enhanced status code such as 5.7.1"));
    }
    let rest = vec![
        ("code", code.map_or(Value::Null, Value::Int)),
        ("extended", Value::Text(extended)),
        ("description", Value::Text(text(&f, "description")?)),
    ];
    upsert(&api, &SUPPRESSIONS, key, rest).await
}

pub async fn suppressions_delete(
    axum::extract::State(api): ApiState,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Json_>, ApiError> {
    let key = suppression_key(&fields(&headers, &body)?)?;
    let removed = write(&api, move |s| s.delete(&SUPPRESSIONS, &key)).await?;
    Ok(Json(json!({"removed": removed})))
}
