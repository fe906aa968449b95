//! Changing the settings database through Sluice (REST API and CLI alike):
//! fields checked as JSON, the row checked as the loader will read it, then
//! written (which raises the change marker, so every instance sharing the
//! database picks it up). A row that would be skipped is refused instead.

use serde_json::{json, Map, Value as Json};
use sluice_policy::schema::{self, Table, Type};
use sluice_policy::store::{Row, Value};
use sluice_policy::{DbError, Store};
use std::collections::HashMap;
use std::net::IpAddr;

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The request is wrong (a 400; the CLI's exit 2).
    #[error("{0}")]
    Bad(String),
    #[error("no {0} row {1}")]
    NotFound(&'static str, i64),
    #[error("{0}")]
    Db(#[from] DbError),
}

fn bad(message: impl Into<String>) -> EditError {
    EditError::Bad(message.into())
}

/// The tables with a resource of their own, named after them
/// (`paused` and `suppressions` have MailerQ's `/v1/pauses` and `/v1/suppressions`).
pub const RESOURCES: &[&Table] = &[
    &schema::CAPACITY,
    &schema::FLOOD_RESPONSES,
    &schema::DELEGATES,
    &schema::MTANAMES,
    &schema::DNS,
    &schema::DKIM_KEYS,
    &schema::DKIM_PATTERNS,
    &schema::LOCALS,
    &schema::POOLS,
    &schema::POOLIPS,
];

/// The table a resource name names.
pub fn resource(name: &str) -> Option<&'static Table> {
    RESOURCES.iter().copied().find(|t| t.name == name)
}

/// Columns written but never answered: the private key stays in the store.
fn secret(table: &Table, column: &str) -> bool {
    table.name == schema::DKIM_KEYS.name && column == "privatekey"
}

/// The longest text a column takes: a PEM key is long and spans lines; a pattern may be long.
fn limit(table: &Table, column: &str) -> (usize, bool) {
    match column {
        _ if secret(table, column) => (16 * 1024, true),
        "pattern" => (sluice_shaping::pattern::MAX_LEN, false),
        _ => (255, false),
    }
}

/// A field's value as a column of `table` takes it.
fn value(table: &Table, column: &'static str, kind: Type, v: &Json) -> Result<Value, EditError> {
    match (kind, v) {
        (_, Json::Null) => Ok(Value::Null),
        (Type::Integer, Json::Number(n)) => n
            .as_i64()
            .map(Value::Int)
            .ok_or_else(|| bad(format!("{column}: expected a whole number"))),
        (Type::Integer, Json::String(s)) if s.trim().is_empty() => Ok(Value::Null),
        (Type::Integer, Json::String(s)) => s
            .trim()
            .parse()
            .map(Value::Int)
            .map_err(|_| bad(format!("{column}: expected a whole number"))),
        (Type::Text, Json::String(s)) => {
            let (max, lines) = limit(table, column);
            let s = if lines { s.as_str() } else { s.trim() };
            let control = s
                .chars()
                .any(|c| c.is_control() && !(lines && (c == '\n' || c == '\r')));
            if s.chars().count() > max || control {
                return Err(bad(format!(
                    "{column}: at most {max} characters, no control characters"
                )));
            }
            Ok(Value::Text(s.to_string()))
        }
        (Type::Text, Json::Number(n)) => Ok(Value::Text(n.to_string())),
        _ => Err(bad(format!("{column}: expected a {}", kind.sql().to_lowercase()))),
    }
}

/// `fields` as column values of `table`; a name that is not a column is refused.
fn values(table: &Table, fields: &Map<String, Json>) -> Result<Vec<(&'static str, Value)>, EditError> {
    let mut out = Vec::new();
    for (name, v) in fields {
        let Some((column, kind)) = table.columns.iter().find(|(c, _)| c == name) else {
            return Err(bad(format!(
                "{}: no column `{}` (columns: {})",
                table.name,
                sluice_smtp::wire::shown(name),
                table.columns.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
            )));
        };
        out.push((*column, value(table, column, *kind, v)?));
    }
    Ok(out)
}

/// Refuses a row the loader would skip, with the loader's reason.
fn checked(store: &mut dyn Store, table: &Table, row: &Row) -> Result<(), EditError> {
    sluice_policy::check_row(table, row).map_err(|why| bad(format!("{}: {why}", table.name)))?;
    if table.name == schema::DKIM_PATTERNS.name {
        let key = row.int("key").ok().flatten().unwrap_or(0);
        let keys = sluice_policy::dkim::dkim(store, &mut Vec::new())?;
        if !keys.keys().iter().any(|k| k.id == key) {
            return Err(bad(format!("key: no usable dkim_keys row {key}")));
        }
    }
    Ok(())
}

/// A row as answered: its columns (secrets left out), what a dkim key is,
/// and why the loader skips it when it does.
pub fn shown(table: &Table, row: &Row) -> Json {
    let mut out = Map::new();
    out.insert("id".into(), row.id.into());
    for (column, _) in table.columns {
        if secret(table, column) {
            continue;
        }
        let v = match row.values.get(column) {
            Some(Value::Int(n)) => json!(n),
            Some(Value::Text(t)) => json!(t),
            _ => Json::Null,
        };
        out.insert((*column).into(), v);
    }
    if table.name == schema::DKIM_KEYS.name {
        if let Ok(k) = sluice_policy::dkim::key_from_row(row) {
            out.insert("algorithm".into(), k.algorithm.into());
            out.insert("fingerprint".into(), k.fingerprint.into());
        }
    }
    if let Err(why) = sluice_policy::check_row(table, row) {
        out.insert("problem".into(), why.into());
    }
    Json::Object(out)
}

/// Every row of `table`, as answered.
pub fn list(store: &mut dyn Store, table: &Table) -> Result<Vec<Json>, EditError> {
    Ok(store.rows(table)?.iter().map(|r| shown(table, r)).collect())
}

fn find(store: &mut dyn Store, table: &'static Table, id: i64) -> Result<Row, EditError> {
    store
        .rows(table)?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or(EditError::NotFound(table.name, id))
}

/// One row, as answered.
pub fn get(store: &mut dyn Store, table: &'static Table, id: i64) -> Result<Json, EditError> {
    Ok(shown(table, &find(store, table, id)?))
}

/// Adds a row of `fields`; its id.
pub fn create(store: &mut dyn Store, table: &Table, fields: &Map<String, Json>) -> Result<i64, EditError> {
    let values = values(table, fields)?;
    let row = Row {
        id: 0,
        values: values.iter().cloned().collect(),
    };
    checked(store, table, &row)?;
    Ok(store.insert(table, &values)?)
}

/// Sets `fields` on row `id`, the others kept.
pub fn change(
    store: &mut dyn Store,
    table: &'static Table,
    id: i64,
    fields: &Map<String, Json>,
) -> Result<(), EditError> {
    let values = values(table, fields)?;
    let mut row = find(store, table, id)?;
    let merged: HashMap<&'static str, Value> = values.iter().cloned().collect();
    row.values.extend(merged);
    checked(store, table, &row)?;
    if !values.is_empty() {
        store.update(table, &[("id", Value::Int(id))], &values)?;
    }
    Ok(())
}

/// Removes row `id`.
pub fn remove(store: &mut dyn Store, table: &'static Table, id: i64) -> Result<(), EditError> {
    match store.delete(table, &[("id", Value::Int(id))])? {
        0 => Err(EditError::NotFound(table.name, id)),
        _ => Ok(()),
    }
}

/// A MailerQ text field: at most 255 characters, no control characters; '' when absent.
pub fn text(f: &Map<String, Json>, name: &str) -> Result<String, EditError> {
    let v = match f.get(name) {
        None | Some(Json::Null) => return Ok(String::new()),
        Some(Json::String(s)) => s.trim().to_string(),
        Some(Json::Number(n)) => n.to_string(),
        Some(_) => return Err(bad(format!("{name}: expected a string"))),
    };
    if v.chars().count() > 255 || v.chars().any(char::is_control) {
        return Err(bad(format!("{name}: at most 255 characters, no control characters")));
    }
    Ok(v)
}

fn ip(f: &Map<String, Json>, name: &str) -> Result<String, EditError> {
    let v = text(f, name)?;
    if !v.is_empty() && v.parse::<IpAddr>().is_err() {
        return Err(bad(format!(
            "{name}: `{}` is not an IP address",
            sluice_smtp::wire::shown(&v)
        )));
    }
    Ok(v)
}

/// A pause's MailerQ fields (`mta`, `domain`, `ip`, `tag`, `expire`,
/// `reason`) in the table's columns, checked as MailerQ does; the first
/// four are its scope.
pub fn pause_fields(f: &Map<String, Json>) -> Result<Vec<(&'static str, Value)>, EditError> {
    if !text(f, "pool")?.is_empty() {
        return Err(bad(
            "pool: pauses by pool are not supported; pause each of its IPs by mta (local IP)",
        ));
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

/// A suppression's scope (`type`, `value`) in the table's columns.
pub fn suppression_key(f: &Map<String, Json>) -> Result<Vec<(&'static str, Value)>, EditError> {
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

/// A suppression's other fields (`code`, `extended`, `description`).
pub fn suppression_rest(f: &Map<String, Json>) -> Result<Vec<(&'static str, Value)>, EditError> {
    let code = match f.get("code") {
        None | Some(Json::Null) => None,
        Some(v) => match v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())) {
            Some(c @ 400..=599) => Some(c),
            _ => return Err(bad("code: expected a 4xx or 5xx reply code")),
        },
    };
    let extended = text(f, "extended")?;
    if !extended.is_empty() && !sluice_policy::failure_status(&extended) {
        return Err(bad("extended: expected an enhanced status code such as 5.7.1"));
    }
    Ok(vec![
        ("code", code.map_or(Value::Null, Value::Int)),
        ("extended", Value::Text(extended)),
        ("description", Value::Text(text(f, "description")?)),
    ])
}

/// Sets `rest` on the rows whose `key` columns match, or adds a row when
/// none does; the new row's id, `None` when rows were updated.
pub fn upsert(
    store: &mut dyn Store,
    table: &Table,
    key: &[(&'static str, Value)],
    rest: &[(&'static str, Value)],
) -> Result<Option<i64>, EditError> {
    if store.update(table, key, rest)? > 0 {
        return Ok(None);
    }
    let all: Vec<_> = key.iter().chain(rest).cloned().collect();
    Ok(Some(store.insert(table, &all)?))
}

/// A `paused` row in MailerQ's fields; `None` once it has expired.
pub fn pause_shown(row: &Row, now_ms: u64) -> Option<Json> {
    let get = |c: &str| row.text(c).ok().flatten().unwrap_or_default();
    if sluice_policy::parse_time(&get("expire")).is_some_and(|e| e <= now_ms) {
        return None;
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
    Some(Json::Object(p))
}

/// A `suppressions` row in MailerQ's fields, the defaults filled in.
pub fn suppression_shown(row: &Row) -> Json {
    let get = |c: &str| row.text(c).ok().flatten().unwrap_or_default();
    json!({
        "id": row.id,
        "type": get("type"),
        "value": get("value"),
        "code": row.int("code").ok().flatten().unwrap_or(550),
        "extended": Some(get("extended")).filter(|e| !e.is_empty()).unwrap_or_else(|| "5.7.1".into()),
        "description": get("description"),
    })
}
