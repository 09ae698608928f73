//! Every HTTP error: one enum, converted from the errors of the layers below, answered as
//! `{"error": {"code", "message"}}` (plus `details` where there is more to say) with its status.
//! Internal causes are logged here and never sent.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::agent::AgentError;
use crate::content::ParseError;
use crate::db::StoreError;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed; `code` names what.
    BadRequest { code: &'static str, message: String },
    /// 404: a thing the request names does not exist.
    NotFound { code: &'static str, message: String },
    /// 413: the request is larger than allowed.
    TooLarge { code: &'static str, message: String },
    /// 422: well-formed, but not acceptable; `details` lists what is wrong.
    Unprocessable { code: &'static str, message: String, details: Option<serde_json::Value> },
    /// 503 `content_not_loaded`: the content is not loaded yet.
    ContentNotLoaded,
    /// 503 `not_ready`: no index is served yet, and why.
    NotReady(String),
    /// 503 `store_unavailable`: the learner database failed.
    Store(StoreError),
    /// 500 `turn_failed`: a turn's task failed unexpectedly.
    TurnFailed(String),
}

impl ApiError {
    /// A 400 with this code.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }

    /// A 404 with this code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound { code, message: message.into() }
    }

    /// A 422 with this code.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable { code, message: message.into(), details: None }
    }

    /// A 400 naming the field whose value did not parse.
    pub fn invalid(code: &'static str) -> impl FnOnce(ParseError) -> Self {
        move |e| Self::bad(code, e.0)
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message.clone()),
            Self::NotFound { code, message } => (StatusCode::NOT_FOUND, code, message.clone()),
            Self::TooLarge { code, message } => (StatusCode::PAYLOAD_TOO_LARGE, code, message.clone()),
            Self::Unprocessable { code, message, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code, message.clone()),
            Self::ContentNotLoaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "content_not_loaded",
                "the content is not loaded yet (see /readyz)".into(),
            ),
            Self::NotReady(why) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", why.clone()),
            Self::Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the learner store is unavailable; retry later".into(),
            ),
            Self::TurnFailed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "turn_failed", "the turn failed; retry".into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::UnknownSession(s) => {
                Self::not_found("unknown_session", format!("no session '{s}' for this learner"))
            }
            AgentError::UnknownComponent(c) => Self::not_found("unknown_component", format!("no component '{c}'")),
            AgentError::Store(e) => Self::Store(e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rej: JsonRejection) -> Self {
        match rej {
            JsonRejection::MissingJsonContentType(_) => Self::bad("not_json", "send the body as application/json"),
            JsonRejection::JsonSyntaxError(e) => Self::bad("malformed_json", e.body_text()),
            other => Self::unprocessable("invalid_body", other.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Store(e) => tracing::error!(error = %e, "store failed"),
            Self::TurnFailed(e) => tracing::error!(error = %e, "a turn failed"),
            _ => {}
        }
        let (status, code, message) = self.parts();
        let mut error = json!({"code": code, "message": message});
        if let Self::Unprocessable { details: Some(d), .. } = self {
            error["details"] = d;
        }
        (status, Json(json!({ "error": error }))).into_response()
    }
}
