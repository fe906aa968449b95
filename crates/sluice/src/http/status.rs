//! `GET /v1/policy?domain=D[&from=IP][&mx=HOST,...]`: the limits in force
//! for mail from IP to D, each with the capacity row it comes from, and the
//! live state — connections open, messages and connections in the last
//! minute, flood effects and pauses with the time left. What `sluice policy show` prints.

use super::{ApiError, ApiState};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_shaping::capacity::{Resolved, Source};
use sluice_shaping::Destination;

#[derive(Deserialize)]
pub struct Ask {
    domain: String,
    from: Option<String>,
    /// MX host names, for `mx:` rows (comma-separated).
    mx: Option<String>,
}

fn shown<T: std::fmt::Display>(r: &Resolved<T>) -> Value {
    json!({
        "value": r.value.as_ref().map_or(Value::Null, |v| v.to_string().into()),
        "from": match r.from {
            Source::Row(id) => format!("capacity row {id}"),
            Source::Default => "default".to_string(),
        },
    })
}

pub async fn policy(axum::extract::State(api): ApiState, Query(ask): Query<Ask>) -> Result<Json<Value>, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let domain = ask.domain.trim().to_lowercase();
    if domain.is_empty() || domain.len() > 255 || domain.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("domain: expected a domain name".into()));
    }
    let from = match ask.from.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) => Some(
            f.parse()
                .map_err(|_| bad(format!("from: `{}` is not an IP address", sluice_smtp::wire::shown(f))))?,
        ),
        None => None,
    };
    let hosts: Vec<String> = ask
        .mx
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
        .take(32)
        .collect();
    let Some(db) = &api.settings else {
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "no settings database".into()));
    };
    let dest = Destination::new(from, &domain);
    let now = std::time::Instant::now();
    let mut shaper = sluice_queue::lock(&db.live.shaper);
    let l = shaper.limits(&dest, &hosts, now);
    let left = |t: Option<std::time::Instant>| t.map(|t| t.saturating_duration_since(now).as_secs());
    let effects: Vec<Value> = shaper
        .effects(now)
        .into_iter()
        .filter(|(d, _)| *d == dest)
        .map(|(_, e)| json!({"rule": e.rule, "paused_seconds_left": left(e.paused_until), "reduced_seconds_left": left(e.reduced_until)}))
        .collect();
    let pauses: Vec<Value> = shaper
        .pauses(now)
        .filter(|p| p.holds(from, &domain, &hosts, None, &[], now))
        .map(|p| json!({"id": p.id, "reason": p.reason, "seconds_left": left(p.until)}))
        .collect();
    Ok(Json(json!({
        "domain": domain,
        "from": from.map(|f: std::net::IpAddr| f.to_string()),
        "limits": {
            "message_rate": shown(&l.message_rate),
            "connection_rate": shown(&l.connection_rate),
            "connections": shown(&l.connections),
            "ip_message_rate": shown(&l.ip_message_rate),
            "ip_connection_rate": shown(&l.ip_connection_rate),
            "ip_connections": shown(&l.ip_connections),
            "messages_per_connection": shown(&l.messages_per_connection),
            "idle_seconds": shown(&Resolved { value: l.idle.value.map(|d| d.as_secs()), from: l.idle.from }),
            "queue_size": shown(&l.queue_size),
        },
        "open_connections": shaper.open(&dest),
        "messages_last_minute": shaper.rates(&dest, now).0,
        "connections_last_minute": shaper.rates(&dest, now).1,
        "flood_effects": effects,
        "pauses": pauses,
    })))
}

/// `GET /v1/plugins`: the loaded plugins in call order, each hook with its
/// calls and time so far (from the `plugin_hook_duration` metric).
pub async fn plugins(axum::extract::State(api): ApiState) -> Json<Value> {
    let m = crate::metrics::get();
    let list: Vec<Value> = api
        .plugins
        .iter()
        .map(|(name, hooks)| {
            let hooks: Vec<Value> = hooks
                .iter()
                .map(|&hook| {
                    let labels = crate::metrics::HookLabels {
                        plugin: name.clone(),
                        hook,
                    };
                    let calls = m.hook_calls.get(&labels).map_or(0, |c| c.get());
                    let seconds = m.hook_seconds.get(&labels).map_or(0.0, |c| c.get());
                    json!({"hook": hook, "calls": calls, "seconds": seconds})
                })
                .collect();
            json!({"name": name, "hooks": hooks})
        })
        .collect();
    Json(Value::Array(list))
}

/// `GET /v1/instances`: the Sluice instances sharing this one's RabbitMQ
/// broker, this one included (`self`); without a broker, this one.
pub async fn instances(axum::extract::State(api): ApiState) -> Json<Value> {
    let mut all = match &api.cluster {
        Some((cluster, me)) => crate::cluster::instances(&cluster.peers, me),
        None => Vec::new(),
    };
    // Without a broker, or before this instance's first card came back through it.
    if !all.iter().any(|i| i["self"] == true) {
        let me = json!({"hostname": api.hostname, "console": "/console", "version": env!("CARGO_PKG_VERSION"), "seen_seconds_ago": 0, "self": true});
        all.insert(0, me);
    }
    Json(Value::Array(all))
}
