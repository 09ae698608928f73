//! `POST /v1/tutor/chat`: a turn of the tutor, streamed as Server-Sent Events (`tool`,
//! `delta`, `done`), or one JSON reply when the client asks for `application/json`.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::Instrument;

use super::access::{self, Caller};
use super::limits::too_many_turns;
use super::passport::require_json;
use super::{ApiError, AppState, library};
use crate::agent::{MAX_MESSAGE_CHARS, TurnEvent, TurnRequest, TurnResult};
use crate::auth::Role;
use crate::content::ComponentId;

/// The largest chat body accepted (a message is at most `MAX_MESSAGE_CHARS` characters).
pub const MAX_CHAT_BODY: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChatBody {
    /// With a learner token, the token's subject (and when given, it must be).
    #[serde(default)]
    learner_id: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    component_id: Option<String>,
    message: String,
}

pub(super) async fn chat(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<ChatBody>, JsonRejection>,
) -> Response {
    match chat_inner(s, caller, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(
    s: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<ChatBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    if caller.role == Role::Educator {
        return Err(ApiError::forbidden("forbidden", "educators do not chat as a learner"));
    }
    require_json(&headers)?;
    let Json(body) = body?;
    let learner = access::acting_for(&caller, body.learner_id.as_deref(), || {
        ApiError::unprocessable(
            "invalid_body",
            "missing field `learner_id`: name the learner (a learner token names them itself)",
        )
    })?;
    let message = body.message.trim().to_owned();
    if message.is_empty() || message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::bad("invalid_message", format!("message must be 1 to {MAX_MESSAGE_CHARS} characters")));
    }
    if message.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) {
        return Err(ApiError::bad("invalid_message", "message must not contain control characters"));
    }
    let component = body
        .component_id
        .as_deref()
        .map(|c| ComponentId::parse(c).map_err(ApiError::invalid("invalid_component")))
        .transpose()?;
    if let Some(sid) = &body.session_id
        && (sid.is_empty() || sid.len() > 128 || !sid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(ApiError::bad("invalid_session", "session_id must be 1 to 128 letters, digits or -"));
    }
    let lib = library(&s)?;
    let page = match &component {
        Some(c) => Some(
            lib.components
                .get(c)
                .ok_or_else(|| ApiError::not_found("unknown_component", format!("no component '{c}'")))?,
        ),
        None => None,
    };
    if caller.role == Role::Service {
        // a host platform speaks for its learners on its own courses' pages
        let page =
            page.ok_or_else(|| ApiError::bad("missing_component", "a service token names the page: component_id"))?;
        access::own_or_service(&caller, &learner, page)?;
    }
    let slot = s.limits.start_turn(&learner).map_err(too_many_turns)?;
    let budget = s.config.limits.llm_tokens_per_day;
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let llm = s.agent.llm.is_some();
    if llm && budget > 0 && s.stores.sessions.llm_tokens(&learner, &day).await? >= budget {
        return Err(ApiError::TooMany {
            code: "llm_budget_spent",
            message: format!("this learner's {budget} LLM tokens for today are spent; the budget renews at 00:00 UTC"),
            retry_after: seconds_to_midnight(),
        });
    }
    // after the turn, whatever its client does: count its tokens, free the learner's slot
    let stores = s.stores.clone();
    let charged = learner.clone();
    let settle = move |r: &TurnResult| {
        let _slot = slot;
        let used = (r.tokens.prompt + r.tokens.completion) as u64;
        async move {
            if used > 0
                && let Err(e) = stores.sessions.add_llm_tokens(&charged, &day, used).await
            {
                tracing::warn!(error = %e, "could not count a turn's LLM tokens");
            }
        }
    };
    let courses = (caller.role == Role::Service).then(|| caller.courses.iter().cloned().collect());
    let req = TurnRequest { learner, session_id: body.session_id, component, message, courses };
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/event-stream"));
    if wants_json {
        // on its own task, so a client that goes away does not stop the turn (it is stored)
        let agent = s.agent.clone();
        let r = tokio::spawn(
            async move {
                let r = agent.turn(lib, req, None).await;
                if let Ok(r) = &r {
                    settle(r).await;
                }
                r
            }
            // the turn's logs carry the request's span (and its request id)
            .instrument(tracing::Span::current()),
        )
        .await
        .map_err(|e| ApiError::TurnFailed(e.to_string()))??;
        return Ok(Json(r).into_response());
    }
    // stream: the turn runs on its own task, so it completes (and is stored) even if the
    // client goes away
    let (tx, mut rx) = tokio::sync::mpsc::channel::<TurnEvent>(64);
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<ApiError>();
    let agent = s.agent.clone();
    tokio::spawn(
        async move {
            match agent.turn(lib, req, Some(tx)).await {
                Ok(r) => settle(&r).await,
                Err(e) => {
                    let _ = failed_tx.send(ApiError::from(e));
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
    // a turn fails only before its first event: then the reply is a JSON error, not a stream
    let first_event = rx.recv().await;
    if first_event.is_none()
        && let Ok(err) = failed_rx.await
    {
        return Err(err);
    }
    let stream = futures::stream::unfold((first_event, rx), |(pending, mut rx)| async move {
        let ev = match pending {
            Some(e) => e,
            None => rx.recv().await?,
        };
        Some((Ok::<Event, Infallible>(sse_event(&ev)), (None, rx)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

fn sse_event(e: &TurnEvent) -> Event {
    let (name, data) = match e {
        TurnEvent::Tool(t) => ("tool", serde_json::to_string(t)),
        TurnEvent::Delta { text } => ("delta", serde_json::to_string(&serde_json::json!({"text": text}))),
        TurnEvent::Replace { reason, message } => {
            ("replace", serde_json::to_string(&serde_json::json!({"reason": reason, "message": message})))
        }
        TurnEvent::Done(r) => ("done", serde_json::to_string(r)),
    };
    Event::default().event(name).data(data.unwrap_or_else(|_| "{}".into()))
}

/// Seconds until the next 00:00 UTC, when the daily budgets renew.
fn seconds_to_midnight() -> u64 {
    let now = chrono::Utc::now();
    let secs = now.timestamp().rem_euclid(86_400);
    (86_400 - secs).max(1) as u64
}
