//! What learners' pages read: components as HTML, a course as an adaptive lesson, hints on
//! request, a session's transcript, recommendations with reasons (and feedback on them), the
//! evidence behind a skill's estimate, and search. Nothing here carries an answer key; a hint
//! is given only when asked for, one at a time.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::access::{self, Caller};
use super::passport::{audit, require_json};
use super::{ApiError, AppState, library};
use crate::agent::cited_ids;
use crate::app::{Hit, SearchFilter, SearchRequest};
use crate::auth::Role;
use crate::content::{
    Component, ComponentId, Format, LearnerComponent, Library, SkillId, SkillRef, learner_component, skill_ref,
};
use crate::ids::now_ms;
use crate::passport::{self, Feedback, Given, LearnerId, Plan, Recommendations, Trail};

fn learner_id(raw: &str) -> Result<LearnerId, ApiError> {
    LearnerId::parse(raw).map_err(ApiError::invalid("invalid_learner"))
}

fn component<'a>(lib: &'a Library, raw: &str) -> Result<&'a Component, ApiError> {
    let id = ComponentId::parse(raw).map_err(ApiError::invalid("invalid_component"))?;
    lib.components.get(&id).ok_or_else(|| ApiError::not_found("unknown_component", format!("no component '{id}'")))
}

/// `GET /v1/components/{id}`: the component as a learner sees it (course text is not learner
/// data: any token may read it).
pub(super) async fn get_component(
    State(s): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<LearnerComponent>, ApiError> {
    let lib = library(&s)?;
    Ok(Json(learner_component(&lib, component(&lib, &id)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HintBody {
    /// 1 for the first hint.
    number: u32,
    /// The learner (an admin or a service names them; a learner token is its own).
    #[serde(default)]
    learner: Option<String>,
}

/// A hint, given on request.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Hint {
    component: ComponentId,
    item: String,
    number: u32,
    of: u32,
    hint: String,
}

/// `POST /v1/components/{id}/items/{item}/hint`: the item's hint number `n`, for a learner's
/// page (the page counts the hints it showed in the `answered` statement's `hints_used`).
pub(super) async fn hint(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, item)): Path<(String, String)>,
    body: Result<Json<HintBody>, JsonRejection>,
) -> Result<Json<Hint>, ApiError> {
    if caller.role == Role::Educator {
        return Err(ApiError::forbidden("forbidden", "hints are for learners' pages"));
    }
    require_json(&headers)?;
    let Json(body) = body?;
    let lib = library(&s)?;
    let c = component(&lib, &id)?;
    if caller.role == Role::Service && !caller.covers(&c.course) {
        return Err(access::out_of_scope(&c.course));
    }
    let key = lib
        .answer_key(&c.id, &item)
        .ok_or_else(|| ApiError::not_found("unknown_item", format!("no item '{item}' in '{}'", c.id)))?;
    let of = key.hints.len() as u32;
    let learner = access::acting_for(&caller, body.learner.as_deref(), || {
        ApiError::unprocessable("invalid_body", "name the learner: `learner` (a learner token names them itself)")
    })?;
    if body.number == 0 || body.number > of {
        return Err(ApiError::not_found("no_such_hint", format!("item '{item}' has {of} hint(s); ask for 1 to {of}")));
    }
    // one at a time: the next hint, or one given already
    let given = s.stores.passports.hints_given(&learner, &c.id, &item).await?;
    if body.number > given + 1 {
        return Err(ApiError::Conflict {
            code: "hint_out_of_order",
            message: format!("hints come one at a time: {given} given so far, ask for {}", given + 1),
            details: Some(serde_json::json!({"given": given})),
        });
    }
    if body.number > given {
        s.stores.passports.give_hint(&learner, &c.id, &item, body.number).await?;
    }
    let hint = key.hints[body.number as usize - 1].clone();
    Ok(Json(Hint { component: c.id.clone(), item, number: body.number, of, hint }))
}

#[derive(Deserialize)]
pub(super) struct LessonQuery {
    course: Option<String>,
}

/// One skill of a lesson: its material chosen by the plan, and its exercises.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Section {
    skill: SkillRef,
    prerequisites: Vec<SkillRef>,
    /// The plan for the skill's first material; `material` is its variant (both absent for a
    /// skill with exercises only).
    plan: Option<Plan>,
    material: Option<LearnerComponent>,
    exercises: Vec<LearnerComponent>,
}

/// `GET /v1/learners/{id}/lesson?course=C`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Lesson {
    learner: LearnerId,
    course: String,
    title: String,
    description: String,
    sections: Vec<Section>,
}

/// `GET /v1/learners/{id}/lesson?course=C`: the course in the order of its skill graph, each
/// skill with the material its plan chooses for this learner (level, format) and its
/// exercises.
pub(super) async fn get_lesson(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<LessonQuery>,
) -> Result<Json<Lesson>, ApiError> {
    let learner = learner_id(&id)?;
    let lib = library(&s)?;
    let course_id = q.course.ok_or_else(|| ApiError::bad("missing_course", "add ?course=ID"))?;
    let course = lib
        .courses
        .get(&course_id)
        .ok_or_else(|| ApiError::not_found("unknown_course", format!("no course '{course_id}'")))?;
    access::own_or_service_in(&caller, &learner, &course.id)?;
    audit(&s, &caller, &learner, &format!("lesson {}", course.id)).await?;
    let state = s.stores.passports.learner(&learner).await?;
    let priorities = crate::analytics::learner_priorities(&s.stores.db, learner.as_str(), &course.id).await?;
    let mut sections = Vec::new();
    for skill in &course.skills {
        let own: Vec<&Component> = course
            .components
            .iter()
            .filter_map(|c| lib.components.get(c))
            .filter(|c| c.skills.first() == Some(skill))
            .collect();
        let exercises: Vec<LearnerComponent> =
            own.iter().filter(|c| c.format == Format::Exercise).map(|c| learner_component(&lib, c)).collect();
        // the plan starts from the skill's most basic material
        let anchor = own.iter().filter(|c| c.format != Format::Exercise).min_by_key(|c| (c.level, c.id.clone()));
        if anchor.is_none() && exercises.is_empty() {
            continue;
        }
        let plan = anchor.map(|a| passport::plan(&lib, &s.config.passport, &learner, &state, a, &priorities));
        let material = anchor.map(|a| {
            let shown = plan.as_ref().and_then(|p| lib.components.get(&p.variant.component_id)).unwrap_or(a);
            learner_component(&lib, shown)
        });
        let prerequisites = lib.skills.get(skill).map(|k| k.prerequisites.clone()).unwrap_or_default();
        sections.push(Section {
            skill: skill_ref(&lib, skill),
            prerequisites: prerequisites.iter().map(|p| skill_ref(&lib, p)).collect(),
            plan,
            material,
            exercises,
        });
    }
    Ok(Json(Lesson {
        learner,
        course: course.id.clone(),
        title: course.title.clone(),
        description: course.description.clone(),
        sections,
    }))
}

#[derive(Deserialize)]
pub(super) struct SessionQuery {
    learner: Option<String>,
}

/// A message of a session as its learner sees it.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Message {
    /// `learner` or `tutor`.
    role: String,
    content: String,
    /// The components a tutor message cites.
    citations: Vec<ComponentId>,
    /// Milliseconds since the Unix epoch.
    at: i64,
}

/// `GET /v1/sessions/{id}`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct SessionView {
    session_id: String,
    learner: LearnerId,
    component: Option<String>,
    /// The newest 200 messages, oldest first.
    messages: Vec<Message>,
}

/// `GET /v1/sessions/{id}`: the learner's own transcript (a learner token's; an admin names
/// the learner with `?learner=`). Another learner's session is 404, as in chat.
pub(super) async fn get_session(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<SessionQuery>,
) -> Result<Json<SessionView>, ApiError> {
    // a learner's own, or an admin's naming the learner; no one else reads transcripts here
    if caller.learner().is_none() && caller.role != Role::Admin {
        return Err(access::not_yours(&caller));
    }
    let learner = access::acting_for(&caller, q.learner.as_deref(), || {
        ApiError::bad("missing_learner", "an admin names the learner: ?learner=ID")
    })?;
    let unknown = || ApiError::not_found("unknown_session", format!("no session '{id}' for this learner"));
    if id.is_empty() || id.len() > 128 {
        return Err(unknown());
    }
    let session = s.stores.sessions.open_session(&learner, Some(&id), None).await?.ok_or_else(unknown)?;
    audit(&s, &caller, &learner, &format!("session {id}")).await?;
    let lib = library(&s)?;
    let messages = s
        .stores
        .sessions
        .turns(&session.id, 200)
        .await?
        .into_iter()
        .map(|t| Message {
            role: t.role.as_str().to_owned(),
            citations: if t.role == crate::agent::Role::Tutor { cited_ids(&lib, &t.content) } else { Vec::new() },
            content: t.content,
            at: t.at,
        })
        .collect();
    Ok(Json(SessionView { session_id: session.id, learner, component: session.component, messages }))
}

#[derive(Deserialize)]
pub(super) struct RecQuery {
    course: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/learners/{id}/recommendations?course=&limit=`: what to study next, with reasons.
pub(super) async fn get_recommendations(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<RecQuery>,
) -> Result<Json<Recommendations>, ApiError> {
    let learner = learner_id(&id)?;
    let lib = library(&s)?;
    let mut courses = access::readable_courses(&caller, &lib, &learner)?;
    if let Some(c) = &q.course {
        if !lib.courses.contains_key(c) {
            return Err(ApiError::not_found("unknown_course", format!("no course '{c}'")));
        }
        if !courses.contains(c) {
            return Err(access::out_of_scope(c));
        }
        courses = vec![c.clone()];
    }
    let limit = q.limit.unwrap_or(5);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::bad("invalid_limit", "limit is 1 to 50"));
    }
    audit(&s, &caller, &learner, "recommendations").await?;
    let state = s.stores.passports.learner(&learner).await?;
    let feedback = s.stores.passports.feedback(&learner).await?;
    let mut priorities = std::collections::BTreeSet::new();
    for c in &courses {
        priorities.extend(crate::analytics::learner_priorities(&s.stores.db, learner.as_str(), c).await?);
    }
    Ok(Json(passport::recommendations(
        &lib,
        &s.config.passport,
        &learner,
        &state,
        &courses,
        &priorities,
        &feedback,
        now_ms(),
        limit,
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedbackBody {
    feedback: Feedback,
}

/// `POST /v1/learners/{id}/recommendations/{rec}/feedback`: the learner's own say.
pub(super) async fn post_feedback(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, rec)): Path<(String, String)>,
    body: Result<Json<FeedbackBody>, JsonRejection>,
) -> Result<Json<Given>, ApiError> {
    let learner = learner_id(&id)?;
    access::own(&caller, &learner)?;
    require_json(&headers)?;
    let Json(body) = body?;
    let lib = library(&s)?;
    let skill = SkillId::parse(&rec)
        .ok()
        .filter(|k| lib.skills.contains_key(k))
        .ok_or_else(|| ApiError::not_found("unknown_recommendation", format!("no recommendation '{rec}'")))?;
    Ok(Json(s.stores.passports.give_feedback(&learner, skill.as_str(), body.feedback).await?))
}

/// `GET /v1/learners/{id}/skills/{skill}/evidence`: the answers behind a skill's estimate.
pub(super) async fn get_evidence(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, skill)): Path<(String, String)>,
) -> Result<Json<Trail>, ApiError> {
    let learner = learner_id(&id)?;
    let lib = library(&s)?;
    let skill = SkillId::parse(&skill).map_err(ApiError::invalid("invalid_skill"))?;
    let course = lib
        .skills
        .get(&skill)
        .map(|k| k.course.clone())
        .ok_or_else(|| ApiError::not_found("unknown_skill", format!("no skill '{skill}'")))?;
    if !access::readable_courses(&caller, &lib, &learner)?.contains(&course) {
        return Err(access::out_of_scope(&course));
    }
    audit(&s, &caller, &learner, &format!("evidence {skill}")).await?;
    let (base, events) = s.stores.passports.history(&learner).await?;
    Ok(Json(passport::evidence_trail(&lib, &s.config.passport, &learner, &base, &events, &skill)))
}

/// The most hits a search returns (as the retriever's own bound).
const MAX_K: usize = crate::app::MAX_K;

#[derive(Deserialize)]
pub(super) struct SearchQuery {
    q: Option<String>,
    course: Option<String>,
    skill: Option<String>,
    level: Option<String>,
    format: Option<String>,
    k: Option<usize>,
}

/// `GET /v1/search?q=…`: what `tutor search --json` prints (learner-visible text only: the
/// index never holds answer keys).
pub(super) async fn search(
    State(s): State<AppState>,
    _caller: Caller,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Vec<Hit>>, ApiError> {
    let text =
        q.q.map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::bad("missing_query", "add ?q=… (1 to 500 characters)"))?;
    if text.chars().count() > 500 {
        return Err(ApiError::bad("invalid_query", "q is at most 500 characters"));
    }
    let k = q.k.unwrap_or(5);
    if !(1..=MAX_K).contains(&k) {
        return Err(ApiError::bad("invalid_k", format!("k is 1 to {MAX_K}")));
    }
    // each filter: one value, or several separated by commas (any of them)
    fn list<T>(
        raw: Option<&str>,
        code: &'static str,
        parse: impl Fn(&str) -> Result<T, crate::content::ParseError>,
    ) -> Result<Vec<T>, ApiError> {
        raw.map_or(Ok(Vec::new()), |r| {
            r.split(',')
                .filter(|v| !v.trim().is_empty())
                .map(|v| parse(v.trim()).map_err(|e| ApiError::bad(code, e.0)))
                .collect()
        })
    }
    let filter = SearchFilter {
        course: q.course,
        skills: list(q.skill.as_deref(), "invalid_skill", SkillId::parse)?,
        levels: list(q.level.as_deref(), "invalid_level", str::parse)?,
        formats: list(q.format.as_deref(), "invalid_format", str::parse)?,
    };
    let hits = s
        .search(&SearchRequest { text, filter, k })
        .await
        .map_err(|e| ApiError::NotReady(format!("search is not available: {e}")))?;
    Ok(Json(hits))
}
