//! Educator routes: the struggle review queue (`/v1/flags…`), content analytics
//! (`/v1/analytics/…`), priority skills (`/v1/courses/{course}/priorities`) and a skill's learner
//! model (`/v1/skills/{skill}/model`). Educators reach
//! the courses of their token only; admins every course.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{self, Caller};
use super::passport::require_json;
use super::{ApiError, AppState, library};
use crate::analytics::{self, Analytics, View};
use crate::auth::Role;
use crate::content::Library;
use crate::flags::{self, ChangeRequest, Flag, FlagQuery, FlagStatus, MAX_NOTE_CHARS, Outcome, Severity, Transition};
use crate::ids::now_ms;

/// 403 unless the caller is an educator or an admin.
fn reviewer(caller: &Caller) -> Result<(), ApiError> {
    match caller.role {
        Role::Educator | Role::Admin => Ok(()),
        _ => Err(ApiError::forbidden("educators_only", "flags and analytics are for educators and admins")),
    }
}

/// The courses the caller reviews: an admin's are every course, an educator's those of the
/// token; `wanted` narrows them (403 when it is not one of them).
fn reviewed_courses(caller: &Caller, lib: &Library, wanted: Option<&str>) -> Result<Vec<String>, ApiError> {
    reviewer(caller)?;
    match wanted {
        Some(c) if !lib.courses.contains_key(c) => {
            Err(ApiError::not_found("unknown_course", format!("no course '{c}'")))
        }
        Some(c) if !caller.covers(c) => Err(access::out_of_scope(c)),
        Some(c) => Ok(vec![c.to_owned()]),
        None => Ok(lib.courses.keys().filter(|c| caller.covers(c)).cloned().collect()),
    }
}

/// A flag the caller may review: 404 when there is none, 403 when its course is not theirs.
async fn reviewable(s: &AppState, caller: &Caller, id: &str) -> Result<Flag, ApiError> {
    reviewer(caller)?;
    let flag =
        s.stores.flags.get(id).await?.ok_or_else(|| ApiError::not_found("unknown_flag", format!("no flag '{id}'")))?;
    if !caller.covers(&flag.course) {
        return Err(access::out_of_scope(&flag.course));
    }
    Ok(flag)
}

/// A time filter: RFC 3339, or a date (`2026-11-20`, from its start, UTC).
pub(super) fn parse_since(raw: &str) -> Result<i64, ApiError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis())
        .map_err(|_| ApiError::bad("invalid_since", format!("since '{raw}' is not a date (2026-11-20) or RFC 3339")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlagsQuery {
    course: Option<String>,
    skill: Option<String>,
    component: Option<String>,
    status: Option<String>,
    severity: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/flags`: the review queue.
pub(super) async fn list_flags(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<FlagsQuery>,
) -> Result<Json<flags::FlagPage>, ApiError> {
    let lib = library(&s)?;
    let courses = reviewed_courses(&caller, &lib, q.course.as_deref())?;
    let query = FlagQuery {
        courses,
        skill: q.skill,
        component: q.component,
        status: q.status.map(|v| v.parse::<FlagStatus>()).transpose().map_err(ApiError::invalid("invalid_status"))?,
        severity: q
            .severity
            .map(|v| v.parse::<Severity>())
            .transpose()
            .map_err(ApiError::invalid("invalid_severity"))?,
        since: q.since.as_deref().map(parse_since).transpose()?,
        after: q.cursor,
        limit: q.limit.unwrap_or(50),
    };
    Ok(Json(s.stores.flags.list(&query).await?))
}

/// `GET /v1/flags/{id}`: the flag with its evidence; the read is noted in the learner's audit
/// log.
pub(super) async fn get_flag(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<flags::Detail>, ApiError> {
    let lib = library(&s)?;
    let flag = reviewable(&s, &caller, &id).await?;
    if !caller.dev {
        s.stores.passports.note_read(&flag.learner, &caller.key(), &format!("flag {id}")).await?;
    }
    let st = &s.stores;
    let (from, to) = flags::transcript_window(&flag);
    let transcript = st
        .sessions
        .turns_between(&flag.learner, from, to, flags::TRANSCRIPT_SHOWN)
        .await?
        .into_iter()
        .map(|(session, t)| flags::Excerpt { session, role: t.role.as_str().to_owned(), content: t.content, at: t.at })
        .collect();
    let proficient = s.config.passport.proficient;
    Ok(Json(flags::detail(&lib, flag, &*st.passports, &*st.flags, proficient, transcript).await?))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeBody {
    /// Up to 2,000 characters, kept in the flag's history.
    #[serde(default)]
    note: Option<String>,
    /// Required to resolve: `supported`, `content_changed`, `no_action` or `false_alarm`.
    #[serde(default)]
    outcome: Option<Outcome>,
}

/// The body of a status change: none, or JSON.
fn change_body(headers: &HeaderMap, body: &Bytes) -> Result<ChangeBody, ApiError> {
    if body.is_empty() {
        return Ok(ChangeBody::default());
    }
    require_json(headers)?;
    let b: ChangeBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::unprocessable("invalid_body", format!("expected {{note, outcome}}: {e}")))?;
    if let Some(n) = &b.note
        && n.chars().count() > MAX_NOTE_CHARS
    {
        return Err(ApiError::unprocessable("note_too_long", format!("a note is at most {MAX_NOTE_CHARS} characters")));
    }
    Ok(b)
}

async fn change(
    s: AppState,
    caller: Caller,
    id: String,
    headers: HeaderMap,
    body: Bytes,
    to: FlagStatus,
) -> Result<Json<Value>, ApiError> {
    let b = change_body(&headers, &body)?;
    reviewable(&s, &caller, &id).await?;
    if to == FlagStatus::Resolved && b.outcome.is_none() {
        return Err(ApiError::unprocessable(
            "outcome_required",
            "resolving needs an outcome: supported, content_changed, no_action or false_alarm",
        ));
    }
    let note = b.note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    let req = ChangeRequest { by: caller.key(), note, outcome: b.outcome };
    let (flag, changed) = match s.stores.flags.change(&id, to, &req).await? {
        Transition::NotFound => return Err(ApiError::not_found("unknown_flag", format!("no flag '{id}'"))),
        Transition::Done { flag, changed } => (flag, changed),
        Transition::Refused { flag } => {
            return Err(ApiError::Conflict {
                code: "flag_resolved",
                message: format!("flag {id} is {}; reopen it first", flag.status),
                details: Some(json!({"status": flag.status})),
            });
        }
        Transition::Active { other, .. } => {
            return Err(ApiError::Conflict {
                code: "another_flag_active",
                message: format!("flag {other} is already open for this learner and skill; review that one"),
                details: Some(json!({"flag": other})),
            });
        }
    };
    if changed {
        tracing::info!(flag = %id, status = %to, "flag changed");
        crate::metrics::add("tutor_flag_changes_total", &[("status", to.as_str())], 1);
    }
    let history = s.stores.flags.history(&id).await?;
    Ok(Json(json!({"flag": flag, "changed": changed, "history": history})))
}

/// `POST /v1/flags/{id}/acknowledge`.
pub(super) async fn acknowledge(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    change(s, caller, id, headers, body, FlagStatus::Acknowledged).await
}

/// `POST /v1/flags/{id}/resolve`.
pub(super) async fn resolve(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    change(s, caller, id, headers, body, FlagStatus::Resolved).await
}

/// `POST /v1/flags/{id}/reopen`.
pub(super) async fn reopen(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    change(s, caller, id, headers, body, FlagStatus::Open).await
}

/// A CSV reply, downloaded as `name`.
pub(super) fn csv(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnalyticsQuery {
    course: Option<String>,
    group: Option<String>,
    /// `json` (the default) or `csv`.
    format: Option<String>,
}

/// The course and view of an analytics request: an educator whose token names a group (a
/// manager of a team) sees that group only.
fn analytics_view(caller: &Caller, lib: &Library, q: &AnalyticsQuery) -> Result<(String, View, bool), ApiError> {
    let course = q.course.as_deref().ok_or_else(|| ApiError::bad("missing_course", "add ?course=ID"))?;
    reviewed_courses(caller, lib, Some(course))?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::bad("invalid_format", format!("format '{other}': use json or csv"))),
    };
    let wanted = q
        .group
        .as_deref()
        .map(crate::passport::parse_group)
        .transpose()
        .map_err(|e| ApiError::bad("invalid_group", e))?;
    let view = match (caller.role, caller.group.as_deref(), wanted) {
        (Role::Educator, Some(own), Some(w)) if w != own => {
            return Err(ApiError::forbidden("group_out_of_scope", format!("the token's group is '{own}'")));
        }
        (Role::Educator, Some(own), _) => View::Group(own.to_owned()),
        (_, _, Some(w)) => View::Group(w),
        (_, _, None) => View::Course,
    };
    Ok((course.to_owned(), view, csv))
}

async fn load_analytics(s: &AppState, lib: &Library, course: &str) -> Result<Analytics, ApiError> {
    let a = &s.config.analytics;
    Ok(Analytics::load(&s.stores.db, lib, course, &s.config.passport, a.min_group, a.dropoff_days, now_ms()).await?)
}

/// `GET /v1/analytics/skills`.
pub(super) async fn skills_analytics(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    let lib = library(&s)?;
    let (course, view, as_csv) = analytics_view(&caller, &lib, &q)?;
    let report = load_analytics(&s, &lib, &course).await?.skills(&lib, &view);
    Ok(if as_csv { csv(&format!("{course}-skills.csv"), report.csv()) } else { Json(report).into_response() })
}

/// `GET /v1/analytics/components`.
pub(super) async fn components_analytics(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AnalyticsQuery>,
) -> Result<Response, ApiError> {
    let lib = library(&s)?;
    let (course, view, as_csv) = analytics_view(&caller, &lib, &q)?;
    let report = load_analytics(&s, &lib, &course).await?.components(&lib, &view);
    Ok(if as_csv { csv(&format!("{course}-components.csv"), report.csv()) } else { Json(report).into_response() })
}

/// `GET /v1/courses/{course}/priorities`.
pub(super) async fn get_priorities(
    State(s): State<AppState>,
    caller: Caller,
    Path(course): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let lib = library(&s)?;
    reviewed_courses(&caller, &lib, Some(&course))?;
    let list = analytics::priorities(&s.stores.db, &course).await?;
    Ok(Json(json!({"course": course, "priorities": list})))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PrioritiesBody {
    /// The group the skills are a priority for; absent: the whole course.
    #[serde(default)]
    group: Option<String>,
    /// The skills of the course that are a priority (replacing those set before), at most 50.
    skills: Vec<String>,
}

/// `PUT /v1/courses/{course}/priorities`: replaces the priority skills of the course or of one
/// group.
pub(super) async fn put_priorities(
    State(s): State<AppState>,
    caller: Caller,
    Path(course): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let lib = library(&s)?;
    reviewed_courses(&caller, &lib, Some(&course))?;
    require_json(&headers)?;
    let b: PrioritiesBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::unprocessable("invalid_body", format!("expected {{group, skills}}: {e}")))?;
    let group = b
        .group
        .as_deref()
        .map(crate::passport::parse_group)
        .transpose()
        .map_err(|e| ApiError::unprocessable("invalid_group", e))?;
    if let (Role::Educator, Some(own)) = (caller.role, caller.group.as_deref())
        && group.as_deref() != Some(own)
    {
        return Err(ApiError::forbidden("group_out_of_scope", format!("the token's group is '{own}'")));
    }
    if b.skills.len() > 50 {
        return Err(ApiError::unprocessable("too_many_skills", "at most 50 priority skills"));
    }
    let course_skills = &lib.courses[&course].skills;
    let mut skills = Vec::new();
    for raw in &b.skills {
        let id = crate::content::SkillId::parse(raw).map_err(|e| ApiError::unprocessable("invalid_skill", e.0))?;
        if !course_skills.contains(&id) {
            return Err(ApiError::unprocessable("unknown_skill", format!("'{id}' is not a skill of '{course}'")));
        }
        if !skills.contains(&id) {
            skills.push(id);
        }
    }
    analytics::set_priorities(&s.stores.db, &course, group.as_deref(), &skills, &caller.key()).await?;
    tracing::info!(course = %course, skills = skills.len(), "priorities set");
    let list = analytics::priorities(&s.stores.db, &course).await?;
    Ok(Json(json!({"course": course, "priorities": list})))
}

/// `GET /v1/me`: who the token says the caller is, and the courses they reach (the pages ask
/// this first).
pub(super) async fn me(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let lib = library(&s)?;
    let courses: Vec<Value> = lib
        .courses
        .values()
        .filter(|c| caller.covers(&c.id) || caller.role == Role::Learner)
        .map(|c| {
            let skills: Vec<Value> = c
                .skills
                .iter()
                .filter_map(|id| lib.skills.get(id).map(|k| json!({"id": id, "name": k.name})))
                .collect();
            json!({"id": c.id, "title": c.title, "skills": skills})
        })
        .collect();
    Ok(Json(json!({
        "role": caller.role, "sub": caller.sub, "group": caller.group, "dev": caller.dev, "courses": courses,
        "min_group": s.config.analytics.min_group, "proficient": s.config.passport.proficient,
    })))
}

/// BKT parameters as the API shows them.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(super) struct BktView {
    prior: f64,
    learn: f64,
    guess: f64,
    slip: f64,
}

impl From<crate::content::BktParams> for BktView {
    fn from(b: crate::content::BktParams) -> Self {
        Self { prior: b.prior, learn: b.learn, guess: b.guess, slip: b.slip }
    }
}

/// Where a skill's fitted parameters come from.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(super) struct FitProvenance {
    /// The fit's version (each `tutor passport fit` makes a new one).
    version: i64,
    /// RFC 3339.
    fitted_at: String,
    /// This skill's data: learners and answers fitted from, and how much more likely the
    /// fitted parameters make them than the ones before (log-likelihood gain).
    learners: u64,
    answers: u64,
    log_likelihood_gain: f64,
    /// The whole fit's data: answers and learners read, the newest answer's arrival (RFC 3339)
    /// and the start of the window, if the fit had one.
    data_answers: u64,
    data_learners: u64,
    data_newest_answer: Option<String>,
    data_since: Option<String>,
}

/// A skill's learner model: the parameters every passport uses and where they come from.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(super) struct SkillModel {
    skill: String,
    course: String,
    name: String,
    /// `fitted`, `authored` or `default`.
    source: String,
    params: BktView,
    /// The authored parameters (or the defaults), which `tutor passport fit --reset` returns to.
    authored: BktView,
    /// Set when the parameters were fitted.
    fit: Option<FitProvenance>,
    /// The newest fit's version (0: none made), and whether it was a reset.
    model_version: i64,
    reset: bool,
    /// How far a learner's accuracy so far moves where they start on this skill (0: not at all),
    /// and the mean accuracy it is compared with.
    prior_weight: f64,
    mean_accuracy: f64,
}

/// `GET /v1/skills/{skill}/model`: the skill's BKT parameters and their provenance.
pub(super) async fn skill_model(
    State(s): State<AppState>,
    caller: Caller,
    Path(skill): Path<String>,
) -> Result<Json<SkillModel>, ApiError> {
    reviewer(&caller)?;
    let lib = library(&s)?;
    let id = crate::content::SkillId::parse(&skill)
        .map_err(|e| ApiError::not_found("unknown_skill", format!("no skill '{skill}': {}", e.0)))?;
    let Some(k) = lib.skills.get(&id) else {
        return Err(ApiError::not_found("unknown_skill", format!("no skill '{skill}'")));
    };
    if !caller.covers(&k.course) {
        return Err(access::out_of_scope(&k.course));
    }
    let model = s.stores.models.current_model().await?;
    let fitted = model.as_ref().and_then(|m| m.skills.get(&id).map(|f| (m, f)));
    let rfc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    let source = match (fitted.is_some(), k.bkt.is_some()) {
        (true, _) => "fitted",
        (false, true) => "authored",
        (false, false) => "default",
    };
    Ok(Json(SkillModel {
        skill: id.to_string(),
        course: k.course.clone(),
        name: k.name.clone(),
        source: source.to_owned(),
        params: fitted.map_or_else(|| lib.authored_bkt(&id), |(_, f)| f.params).into(),
        authored: lib.authored_bkt(&id).into(),
        fit: fitted.map(|(m, f)| FitProvenance {
            version: m.version,
            fitted_at: rfc(m.fitted_at).unwrap_or_default(),
            learners: f.learners,
            answers: f.answers,
            log_likelihood_gain: f.log_likelihood_gain,
            data_answers: m.answers,
            data_learners: m.learners,
            data_newest_answer: rfc(m.newest_answer),
            data_since: m.since.and_then(rfc),
        }),
        model_version: model.as_ref().map_or(0, |m| m.version),
        reset: model.as_ref().is_some_and(|m| m.reset),
        prior_weight: model.as_ref().map_or(0.0, |m| m.prior_weight),
        mean_accuracy: model.as_ref().map_or(0.0, |m| m.mean_accuracy),
    }))
}
