//! Learner routes: events in, passport and plan out, erase.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{self, Caller};
use super::{ApiError, AppState, library};
use crate::auth::Role;
use crate::content::{ComponentId, Library};
use crate::ids::now_ms;
use crate::passport::{self, Event, LearnerId, Verb, validate_batch};

/// The largest events body accepted.
pub const MAX_EVENTS_BODY: usize = 1024 * 1024;
/// The most statements in one batch.
pub const MAX_BATCH: usize = 1000;

fn learner_id(raw: &str) -> Result<LearnerId, ApiError> {
    LearnerId::parse(raw).map_err(ApiError::invalid("invalid_learner"))
}

/// Whether a request says its body is JSON (`application/json`, or a `+json` type): a body a
/// web page can send without a CORS preflight (`text/plain`, forms) is refused.
pub(super) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::NotJson)
    }
}

pub(super) async fn post_events(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EventsReply>, ApiError> {
    if caller.role == Role::Educator {
        return Err(ApiError::forbidden("forbidden", "educators do not post learner events"));
    }
    require_json(&headers)?;
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
    let mut events = validate_batch(&statements, &lib, now_ms()).map_err(|bad| {
        crate::metrics::add("tutor_events_total", &[("outcome", "refused")], statements.len() as u64);
        ApiError::Unprocessable {
            code: "invalid_statements",
            message: format!("{} of {} statement(s) are invalid; nothing was stored", bad.len(), statements.len()),
            details: Some(json!(bad)),
        }
    })?;
    may_post(&s, &caller, &lib, &events).inspect_err(|_| {
        crate::metrics::add("tutor_events_total", &[("outcome", "refused")], events.len() as u64);
    })?;
    // a learner token's group claim is the learner's group, unless a statement names one
    if caller.role == Role::Learner
        && let Some(g) = caller.group.as_deref().and_then(|g| passport::parse_group(g).ok())
    {
        for e in events.iter_mut().filter(|e| e.group.is_none()) {
            e.group = Some(g.clone());
        }
    }
    let (recorded, states) = s.stores.passports.record_states(&events, &lib).await?;
    tracing::info!(accepted = recorded.accepted, duplicates = recorded.duplicates, "events recorded");
    crate::metrics::add("tutor_events_total", &[("outcome", "accepted")], recorded.accepted as u64);
    crate::metrics::add("tutor_events_total", &[("outcome", "duplicate")], recorded.duplicates as u64);
    if recorded.accepted > 0 {
        watch_for_struggle(&s, &lib, &events, &states).await;
    }
    Ok(Json(EventsReply {
        accepted: recorded.accepted,
        duplicates: recorded.duplicates,
        graded: graded(&lib, &events),
    }))
}

/// `POST /v1/events`: what was stored, and how each answer was graded.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(super) struct EventsReply {
    accepted: usize,
    duplicates: usize,
    /// One per `answered` statement of the batch, in order.
    graded: Vec<Graded>,
}

/// How an answer was graded: right or wrong, and what a wrong answer that matches a known
/// misconception shows (said only after the answer, never before).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(super) struct Graded {
    id: String,
    component: ComponentId,
    item: String,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnosis: Option<String>,
}

fn graded(lib: &Library, events: &[Event]) -> Vec<Graded> {
    events
        .iter()
        .filter(|e| e.verb == Verb::Answered)
        .map(|e| {
            let item = e.item.clone().unwrap_or_default();
            let success = e.success.unwrap_or(false);
            let diagnosis = (!success)
                .then_some(e.response.as_deref())
                .flatten()
                .and_then(|r| passport::misconception_of(lib, &e.component, &item, r))
                .map(str::to_owned);
            Graded { id: e.id.clone(), component: e.component.clone(), item, success, diagnosis }
        })
        .collect()
}

/// Whether the caller may post these events: a learner only their own, a service only for
/// components of its courses; and no more answers per learner and item than the hourly limit
/// (admins, who import history, excepted). Nothing is stored when one is refused.
fn may_post(s: &AppState, caller: &Caller, lib: &Library, events: &[Event]) -> Result<(), ApiError> {
    for e in events {
        match caller.role {
            Role::Learner if caller.learner().as_ref() != Some(&e.learner) => {
                return Err(ApiError::forbidden(
                    "not_your_learner",
                    format!("statement {}: a learner token may post only its own statements", e.id),
                ));
            }
            Role::Service => {
                let course = lib.components.get(&e.component).map(|c| c.course.as_str()).unwrap_or_default();
                if !caller.covers(course) {
                    return Err(access::out_of_scope(course));
                }
            }
            _ => {}
        }
    }
    if caller.role == Role::Admin {
        return Ok(());
    }
    for e in events.iter().filter(|e| e.verb == Verb::Answered) {
        let key = format!("{}\n{}\n{}", e.learner, e.component, e.item.as_deref().unwrap_or_default());
        if let Err(wait) = s.limits.answers.take(&key) {
            return Err(ApiError::TooMany {
                code: "too_many_answers",
                message: format!(
                    "statement {}: at most {} answers per learner and item per hour",
                    e.id, s.config.limits.answers_per_item_per_hour
                ),
                retry_after: wait.as_secs().max(1),
            });
        }
    }
    Ok(())
}

pub(super) async fn get_passport(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<passport::Passport>, ApiError> {
    let learner = learner_id(&id)?;
    let lib = library(&s)?;
    let courses = access::readable_courses(&caller, &lib, &learner)?;
    audit(&s, &caller, &learner, "passport").await?;
    let state = s.stores.passports.learner(&learner).await?;
    let mut view = passport::passport(&lib, &s.config.passport, &learner, &state);
    if courses.len() < lib.courses.len() {
        // a service sees its own courses' skills only, and nothing drawn from the others
        let ours = |skill: &crate::content::SkillId| lib.skills.get(skill).is_some_and(|k| courses.contains(&k.course));
        view.skills.retain(|v| courses.contains(&v.course));
        view.prerequisite_gaps.retain(|g| ours(&g.skill));
        for g in &mut view.prerequisite_gaps {
            g.needed_by.retain(|s| ours(s));
        }
        // engagement by format is counted over every course
        view.format_preference = passport::FormatPreference::default();
    }
    Ok(Json(view))
}

#[derive(Deserialize)]
pub(super) struct PlanQuery {
    component: Option<String>,
}

pub(super) async fn get_plan(
    State(s): State<AppState>,
    caller: Caller,
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
    access::own_or_service(&caller, &learner, component)?;
    audit(&s, &caller, &learner, &format!("plan {component_id}")).await?;
    let state = s.stores.passports.learner(&learner).await?;
    let db = &s.stores.db;
    let priorities = crate::analytics::learner_priorities(db, learner.as_str(), &component.course).await?;
    Ok(Json(passport::plan(&lib, &s.config.passport, &learner, &state, component, &priorities)))
}

/// Notes a read of `learner`'s data by anyone but the learner (an admin, a service) in the
/// audit log; the read fails if the note cannot be written.
pub(super) async fn audit(s: &AppState, caller: &Caller, learner: &LearnerId, what: &str) -> Result<(), ApiError> {
    if caller.dev || caller.learner().as_ref() == Some(learner) {
        return Ok(());
    }
    Ok(s.stores.passports.note_read(learner, &caller.key(), what).await?)
}

/// `GET /v1/learners/{id}/audit`: who read the learner's data (the newest 200 reads).
pub(super) async fn get_audit(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let learner = learner_id(&id)?;
    access::own(&caller, &learner)?;
    let reads = s.stores.passports.reads(&learner, 200).await?;
    Ok(Json(json!({"learner": learner, "reads": reads})))
}

pub(super) async fn erase_learner(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let learner = learner_id(&id)?;
    access::own(&caller, &learner)?;
    let erased = s.stores.erase(&learner).await?;
    tracing::info!(events = erased.events, "learner erased");
    Ok(Json(json!({"learner": learner, "erased": erased})))
}

/// Runs the struggle rules on the skills a batch of answers touched, per learner, so an
/// educator hears of a learner stuck on exercises even if they never open the tutor. Best
/// effort: the batch is already stored, and a failure here is logged.
async fn watch_for_struggle(
    s: &AppState,
    lib: &crate::content::Library,
    events: &[passport::Event],
    states: &passport::States,
) {
    crate::flags::watch_answers(lib, &s.config.flags, &*s.stores.passports, &*s.stores.flags, events, Some(states))
        .await;
}
