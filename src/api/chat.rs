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

use super::{ApiError, AppState, library};
use crate::agent::{MAX_MESSAGE_CHARS, TurnEvent, TurnRequest};
use crate::content::ComponentId;
use crate::passport::LearnerId;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChatBody {
    learner_id: String,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    component_id: Option<String>,
    message: String,
}

pub(super) async fn chat(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ChatBody>, JsonRejection>,
) -> Response {
    match chat_inner(s, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(
    s: AppState,
    headers: HeaderMap,
    body: Result<Json<ChatBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let learner = LearnerId::parse(&body.learner_id).map_err(ApiError::invalid("invalid_learner"))?;
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
    if let Some(c) = &component
        && !lib.components.contains_key(c)
    {
        return Err(ApiError::not_found("unknown_component", format!("no component '{c}'")));
    }
    let req = TurnRequest { learner, session_id: body.session_id, component, message };
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/event-stream"));
    if wants_json {
        // on its own task, so a client that goes away does not stop the turn (it is stored)
        let agent = s.agent.clone();
        let r = tokio::spawn(async move { agent.turn(lib, req, None).await })
            .await
            .map_err(|e| ApiError::TurnFailed(e.to_string()))??;
        return Ok(Json(r).into_response());
    }
    // stream: the turn runs on its own task, so it completes (and is stored) even if the
    // client goes away
    let (tx, mut rx) = tokio::sync::mpsc::channel::<TurnEvent>(64);
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<ApiError>();
    let agent = s.agent.clone();
    tokio::spawn(async move {
        if let Err(e) = agent.turn(lib, req, Some(tx)).await {
            let _ = failed_tx.send(ApiError::from(e));
        }
    });
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
