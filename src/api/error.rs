//! Every HTTP error: one enum, converted from the errors of the layers below, answered as
//! `{"error": {"code", "message"}}` (plus `details` where there is more to say) with its status.
//! Internal causes are logged here and never sent.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::agent::AgentError;
use crate::auth::AuthError;
use crate::content::ParseError;
use crate::db::StoreError;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed; `code` names what.
    BadRequest { code: &'static str, message: String },
    /// 401 (503 when the signing keys cannot be fetched): the credentials are missing or not
    /// accepted.
    Unauthorized(AuthError),
    /// 403: the caller may not do this.
    Forbidden { code: &'static str, message: String },
    /// 415: the body is not `application/json`.
    NotJson,
    /// 429: a limit is reached; try again after `retry_after` seconds.
    TooMany { code: &'static str, message: String, retry_after: u64 },
    /// 409: the resource is not in a state this request can change; `details` says more.
    Conflict { code: &'static str, message: String, details: Option<serde_json::Value> },
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

    /// A 403 with this code.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden { code, message: message.into() }
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
            Self::Unauthorized(AuthError::KeysUnavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "auth_unavailable",
                "the keys that verify tokens cannot be fetched; retry later".into(),
            ),
            Self::Unauthorized(e) => (StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
            Self::Forbidden { code, message } => (StatusCode::FORBIDDEN, code, message.clone()),
            Self::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not_json",
                "send the body as application/json (Content-Type: application/json)".into(),
            ),
            Self::TooMany { code, message, .. } => (StatusCode::TOO_MANY_REQUESTS, code, message.clone()),
            Self::NotFound { code, message } => (StatusCode::NOT_FOUND, code, message.clone()),
            Self::Conflict { code, message, .. } => (StatusCode::CONFLICT, code, message.clone()),
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
            JsonRejection::MissingJsonContentType(_) => Self::NotJson,
            JsonRejection::JsonSyntaxError(e) => Self::bad("malformed_json", e.body_text()),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::TooLarge { code: "body_too_large", message: e.body_text() }
            }
            other => Self::unprocessable("invalid_body", other.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Store(e) => tracing::error!(error = %e, "store failed"),
            Self::TurnFailed(e) => tracing::error!(error = %e, "a turn failed"),
            Self::Unauthorized(AuthError::KeysUnavailable(e)) => tracing::error!(error = %e, "JWKS unavailable"),
            Self::Unauthorized(e) => tracing::info!(reason = %e, "credentials refused"),
            _ => {}
        }
        let (status, code, message) = self.parts();
        let mut error = json!({"code": code, "message": message});
        let retry_after = match &self {
            Self::TooMany { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        if let Self::Unprocessable { details: Some(d), .. } | Self::Conflict { details: Some(d), .. } = self {
            error["details"] = d;
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tutor\""));
        }
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// The code of an error the framework answered without a body of ours.
pub fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "not_json",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::GATEWAY_TIMEOUT => "timeout",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}
