//! Reading a request body within its limits: larger than [`MAX_BODY`] by
//! its Content-Length is refused before a byte is read (413); the body is
//! charged to `reception-memory` as it arrives (503 when that is used up).

use super::ApiError;
use crate::reception::budget::{Budget, Charge};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;

/// Largest request body: a batch of messages is held in memory while it is stored.
pub const MAX_BODY: usize = 256 << 20;

fn too_large() -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {MAX_BODY} bytes; split the batch"),
    )
}

fn no_memory() -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "reception-memory is used up; try again later".into(),
    )
}

/// The whole body, and the share of the budget it holds until dropped.
pub async fn read(budget: &Arc<Budget>, headers: &HeaderMap, body: Body) -> Result<(Bytes, Charge), ApiError> {
    let mut charge = budget.charge();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared {
        if len > MAX_BODY as u64 {
            return Err(too_large());
        }
        if !charge.resize(len) {
            return Err(no_memory());
        }
    }
    let mut body = body;
    let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > MAX_BODY {
            return Err(too_large());
        }
        buf.extend_from_slice(&data);
        if buf.len() as u64 > charge.bytes() && !charge.resize(buf.len() as u64) {
            return Err(no_memory());
        }
    }
    Ok((Bytes::from(buf), charge))
}
