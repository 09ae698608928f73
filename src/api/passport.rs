//! Learner routes: events in, passport and plan out, erase.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, library};
use crate::content::ComponentId;
use crate::ids::now_ms;
use crate::passport::{self, LearnerId, Recorded, validate_batch};

/// The largest events body accepted.
pub const MAX_EVENTS_BODY: usize = 1024 * 1024;
/// The most statements in one batch.
pub const MAX_BATCH: usize = 1000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(post_events).layer(DefaultBodyLimit::max(MAX_EVENTS_BODY)))
        .route("/v1/learners/{id}/passport", get(get_passport))
        .route("/v1/learners/{id}/plan", get(get_plan))
        .route("/v1/learners/{id}", delete(erase_learner))
}

fn learner_id(raw: &str) -> Result<LearnerId, ApiError> {
    LearnerId::parse(raw).map_err(ApiError::invalid("invalid_learner"))
}

async fn post_events(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Recorded>, ApiError> {
    let body = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                code: "body_too_large",
                message: format!(
                    "the body is over {MAX_EVENTS_BODY} bytes; send at most {MAX_BATCH} statements per batch"
                ),
            }
        } else {
            ApiError::bad("unreadable_body", rej.body_text())
        }
    })?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("malformed_json", format!("the body is not JSON: {e}")))?;
    let statements = match value {
        Value::Array(v) => v,
        obj @ Value::Object(_) => vec![obj],
        _ => return Err(ApiError::unprocessable("not_a_batch", "expected a JSON array of statements")),
    };
    if statements.is_empty() {
        return Err(ApiError::unprocessable("empty_batch", "the batch has no statements"));
    }
    if statements.len() > MAX_BATCH {
        return Err(ApiError::TooLarge {
            code: "batch_too_large",
            message: format!("{} statements; send at most {MAX_BATCH} per batch", statements.len()),
        });
    }
    let lib = library(&s)?;
    let events = validate_batch(&statements, &lib, now_ms()).map_err(|bad| ApiError::Unprocessable {
        code: "invalid_statements",
        message: format!("{} of {} statement(s) are invalid; nothing was stored", bad.len(), statements.len()),
        details: Some(json!(bad)),
    })?;
    let recorded = s.stores.passports.record(&events, &lib).await?;
    tracing::info!(accepted = recorded.accepted, duplicates = recorded.duplicates, "events recorded");
    if recorded.accepted > 0 {
        watch_for_struggle(&s, &lib, &events).await;
    }
    Ok(Json(recorded))
}

async fn get_passport(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<passport::Passport>, ApiError> {
    let learner = learner_id(&id)?;
    let lib = library(&s)?;
    let state = s.stores.passports.learner(&learner).await?;
    Ok(Json(passport::passport(&lib, &s.config.passport, &learner, &state)))
}

#[derive(Deserialize)]
struct PlanQuery {
    component: Option<String>,
}

async fn get_plan(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PlanQuery>,
) -> Result<Json<passport::Plan>, ApiError> {
    let learner = learner_id(&id)?;
    let raw = q
        .component
        .ok_or_else(|| ApiError::bad("missing_component", "add ?component=ID: the component the page shows"))?;
    let component_id = ComponentId::parse(&raw).map_err(ApiError::invalid("invalid_component"))?;
    let lib = library(&s)?;
    let component = lib
        .components
        .get(&component_id)
        .ok_or_else(|| ApiError::not_found("unknown_component", format!("no component '{component_id}'")))?;
    let state = s.stores.passports.learner(&learner).await?;
    Ok(Json(passport::plan(&lib, &s.config.passport, &learner, &state, component)))
}

async fn erase_learner(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let learner = learner_id(&id)?;
    let erased = s.stores.erase(&learner).await?;
    tracing::info!(events = erased.events, "learner erased");
    Ok(Json(json!({"learner": learner, "erased": erased})))
}

/// Runs the struggle rules on the skills a batch of answers touched, per learner, so an
/// educator hears of a learner stuck on exercises even if they never open the tutor. Best
/// effort: the batch is already stored, and a failure here is logged.
async fn watch_for_struggle(s: &AppState, lib: &crate::content::Library, events: &[passport::Event]) {
    crate::flags::watch_answers(lib, &s.config.flags, &*s.stores.passports, &*s.stores.flags, events).await;
}
