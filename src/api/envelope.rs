//! What every response goes through: a request id (the client's `x-request-id` when it is
//! sane, else a fresh one) on the response, on the request's log span and in every error
//! body; and every error as `{"error": {"code", "message", "request_id"}}`, including the
//! framework's own rejections (an unknown route or method, a path or query that does not parse,
//! a timeout).

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};
use tracing::Instrument;

use super::error::code_for;

/// The header carrying a request's id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The outermost layer: the request id, the request's span and log line, errors as JSON.
pub async fn envelope(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| crate::ids::random_hex(8), str::to_owned);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        caller = tracing::field::Empty,
    );
    // the route template, not the path: learner ids stay out of the metrics
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    // a client may send any method name: only the standard ones become labels
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m.to_owned(),
        _ => "OTHER".to_owned(),
    };
    let started = Instant::now();
    let mut res = next.run(req).instrument(span.clone()).await;
    let status = res.status();
    let labels = [("method", method.as_str()), ("route", route.as_str())];
    crate::metrics::observe("tutor_http_request_duration_seconds", &labels, started.elapsed().as_secs_f64());
    crate::metrics::inc(
        "tutor_http_requests_total",
        &[("method", method.as_str()), ("route", route.as_str()), ("status", status.as_str())],
    );
    if status.is_client_error() || status.is_server_error() {
        res = as_json_error(res, &id).await;
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    span.in_scope(|| {
        tracing::info!(status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "request");
    });
    res
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"))
}

/// The error response as JSON of the service's shape, with the request id.
async fn as_json_error(res: Response, id: &str) -> Response {
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let ours = is_json(&parts.headers)
        .then(|| serde_json::from_slice::<Value>(&bytes).ok())
        .flatten()
        .filter(|v| v["error"]["code"].is_string());
    let mut v = ours.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&bytes);
        let message = match text.trim() {
            "" => reason(parts.status),
            t => t.chars().take(500).collect(),
        };
        json!({"error": {"code": code_for(parts.status), "message": message}})
    });
    v["error"]["request_id"] = json!(id);
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(serde_json::to_vec(&v).unwrap_or_default()))
}

fn reason(status: StatusCode) -> String {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take this method".into(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long to arrive".into(),
        StatusCode::GATEWAY_TIMEOUT => "the request took too long to answer; retry".into(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    }
}
