//! `GET /openapi.json`: the API as OpenAPI 3.1, built from the code: the paths from
//! [`super::ROUTES`] (a route with no operation here fails the test that walks them), the
//! response and request bodies from the types the handlers return and read (`schemars`), and
//! the error body every route answers with.

use schemars::JsonSchema;
use schemars::r#gen::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::agent::TurnResult;
use crate::analytics::{ComponentsReport, Priority, SkillsReport};
use crate::app::Hit;
use crate::content::LearnerComponent;
use crate::db::Erased;
use crate::flags::{Change, Detail, Flag, FlagPage};
use crate::passport::{Given, Passport, Plan, Read, Recommendations, Trail, WireStatement};

use super::learners::{Hint, Lesson, SessionView};

/// What a request body or a reply is.
enum Body {
    None,
    Schema(fn(&mut SchemaGenerator) -> Value),
    Json(fn() -> Value),
    Text(&'static str),
    /// Server-Sent Events, or this JSON with `Accept: application/json`.
    StreamOr(fn(&mut SchemaGenerator) -> Value),
    /// This JSON, or CSV with `format=csv`.
    SchemaOrCsv(fn(&mut SchemaGenerator) -> Value),
    /// Text of one of these content types.
    Texts(&'static [&'static str]),
}

/// One operation: route, summary, who may call it, its body, its reply and its errors.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    access: &'static str,
    query: &'static [(&'static str, bool, &'static str)],
    request: Body,
    reply: Body,
    errors: &'static [u16],
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    serde_json::to_value(g.subschema_for::<T>()).unwrap_or_default()
}

/// The request body of `POST /v1/tutor/chat`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ChatRequest {
    /// The learner; with a learner token, the token's subject (and when given, it must be).
    learner_id: Option<String>,
    /// Continue this session of the learner.
    session_id: Option<String>,
    /// The page the learner is on.
    component_id: Option<String>,
    /// 1 to 4,000 characters.
    message: String,
}

fn events_body(g: &mut SchemaGenerator) -> Value {
    let statement = schema::<WireStatement>(g);
    json!({"oneOf": [
        {"type": "array", "items": statement, "minItems": 1, "maxItems": super::MAX_BATCH},
        statement
    ]})
}

fn ready() -> Value {
    json!({"type": "object", "required": ["status", "auth", "index"], "properties": {
        "status": {"const": "ready"}, "auth": {"type": "string"}, "warning": {"type": "string"},
        "index": {"type": "object", "properties": {
            "generation": {"type": "string"}, "components": {"type": "integer"}, "chunks": {"type": "integer"},
            "dense": {"type": "boolean"},
            "backend": {"enum": ["embedded", "qdrant"], "description": "qdrant-edge in the data dir, or a Qdrant server (TUTOR_QDRANT_URL)"}}}
    }})
}

fn hint_body() -> Value {
    json!({"type": "object", "required": ["number"], "additionalProperties": false,
           "properties": {"number": {"type": "integer", "minimum": 1},
                          "learner": {"type": "string", "description": "an admin or a service names the learner"}}})
}

fn feedback_body() -> Value {
    json!({"type": "object", "required": ["feedback"], "additionalProperties": false,
           "properties": {"feedback": {"enum": ["helpful", "not_now", "already_know", "dismiss"]}}})
}

fn health() -> Value {
    json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}})
}

fn erased(g: &mut SchemaGenerator) -> Value {
    json!({"type": "object", "required": ["learner", "erased"], "properties": {
        "learner": {"type": "string"}, "erased": schema::<Erased>(g)}})
}

fn audit(g: &mut SchemaGenerator) -> Value {
    json!({"type": "object", "required": ["learner", "reads"], "properties": {
        "learner": {"type": "string"}, "reads": {"type": "array", "items": schema::<Read>(g)}}})
}

fn me() -> Value {
    json!({"type": "object", "required": ["role", "sub", "dev", "courses", "min_group", "proficient"], "properties": {
        "role": {"type": "string"}, "sub": {"type": "string"}, "group": {"type": ["string", "null"]},
        "dev": {"type": "boolean"}, "min_group": {"type": "integer"}, "proficient": {"type": "number"},
        "courses": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"}, "title": {"type": "string"},
            "skills": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": "string"}}}}}}}}})
}

fn changed(g: &mut SchemaGenerator) -> Value {
    json!({"type": "object", "required": ["flag", "changed", "history"], "properties": {
        "flag": schema::<Flag>(g), "changed": {"type": "boolean",
            "description": "false when the flag was already in that status (perhaps moved there by another reviewer)"},
        "history": {"type": "array", "items": schema::<Change>(g)}}})
}

fn priorities(g: &mut SchemaGenerator) -> Value {
    json!({"type": "object", "required": ["course", "priorities"], "properties": {
        "course": {"type": "string"}, "priorities": {"type": "array", "items": schema::<Priority>(g)}}})
}

/// A report as JSON, or its table as CSV with `format=csv`.
fn report<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    schema::<T>(g)
}

const FLAG_FILTERS: &[(&str, bool, &str)] = &[
    ("course", false, "One of the caller's courses (default: all of them)"),
    ("skill", false, "A skill id"),
    ("component", false, "A component id"),
    ("status", false, "open, acknowledged or resolved"),
    ("severity", false, "low, medium or high"),
    ("since", false, "Opened at or after: a date (2026-11-20) or RFC 3339"),
    ("cursor", false, "next_cursor of the previous page"),
    ("limit", false, "1 to 200 (default 50)"),
];

const ANALYTICS_QUERY: &[(&str, bool, &str)] = &[
    ("course", true, "The course"),
    ("group", false, "One group of the course (an educator whose token names a group sees that group only)"),
    ("format", false, "json (default) or csv"),
];

fn ops() -> Vec<Op> {
    vec![
        Op {
            method: "GET",
            path: "/healthz",
            summary: "The process is up",
            access: "anyone",
            query: &[],
            request: Body::None,
            reply: Body::Json(health),
            errors: &[],
        },
        Op {
            method: "GET",
            path: "/readyz",
            summary: "An index and its content are served (503 with the reason until then)",
            access: "anyone",
            query: &[],
            request: Body::None,
            reply: Body::Json(ready),
            errors: &[503],
        },
        Op {
            method: "GET",
            path: "/openapi.json",
            summary: "This document",
            access: "anyone",
            query: &[],
            request: Body::None,
            reply: Body::Json(|| json!({"type": "object"})),
            errors: &[],
        },
        Op {
            method: "GET",
            path: "/metrics",
            summary: "Prometheus metrics",
            access: "admin",
            query: &[],
            request: Body::None,
            reply: Body::Text("text/plain; version=0.0.4"),
            errors: &[401, 403],
        },
        Op {
            method: "POST",
            path: "/v1/events",
            summary: "Record a batch of learner statements (idempotent by id; all or nothing)",
            access: "a learner (own statements), a service (its courses), an admin",
            query: &[],
            request: Body::Schema(events_body),
            reply: Body::Schema(schema::<super::passport::EventsReply>),
            errors: &[400, 401, 403, 413, 415, 422, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/learners/{id}/passport",
            summary: "A learner's skill passport",
            access: "the learner, a service (its courses' skills), an admin",
            query: &[],
            request: Body::None,
            reply: Body::Schema(schema::<Passport>),
            errors: &[400, 401, 403, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/learners/{id}/plan",
            summary: "How to adapt a page for a learner",
            access: "the learner, a service (its courses), an admin",
            query: &[("component", true, "The component the page shows")],
            request: Body::None,
            reply: Body::Schema(schema::<Plan>),
            errors: &[400, 401, 403, 404, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/learners/{id}/audit",
            summary: "Who read the learner's data (admins, services), newest first",
            access: "the learner, an admin",
            query: &[],
            request: Body::None,
            reply: Body::Schema(audit),
            errors: &[400, 401, 403, 429, 503],
        },
        Op {
            method: "DELETE",
            path: "/v1/learners/{id}",
            summary: "Erase everything kept about a learner",
            access: "the learner, an admin",
            query: &[],
            request: Body::None,
            reply: Body::Schema(erased),
            errors: &[400, 401, 403, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/me",
            summary: "Who the token says the caller is, and the courses they reach",
            access: "anyone with a token",
            query: &[],
            request: Body::None,
            reply: Body::Json(me),
            errors: &[401, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/flags",
            summary: "The struggle review queue: most severe first, then oldest; paginated",
            access: "an educator (their courses), an admin",
            query: FLAG_FILTERS,
            request: Body::None,
            reply: Body::Schema(schema::<FlagPage>),
            errors: &[400, 401, 403, 404, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/flags/{id}",
            summary: "A flag with its evidence: answers, mastery trend, transcript, rules, history (the read is audited)",
            access: "an educator of the flag's course, an admin",
            query: &[],
            request: Body::None,
            reply: Body::Schema(schema::<Detail>),
            errors: &[401, 403, 404, 429, 503],
        },
        Op {
            method: "POST",
            path: "/v1/flags/{id}/acknowledge",
            summary: "Acknowledge an open flag (idempotent)",
            access: "an educator of the flag's course, an admin",
            query: &[],
            request: Body::Schema(schema::<super::educators::ChangeBody>),
            reply: Body::Schema(changed),
            errors: &[401, 403, 404, 409, 413, 415, 422, 429, 503],
        },
        Op {
            method: "POST",
            path: "/v1/flags/{id}/resolve",
            summary: "Resolve a flag with an outcome and a note (idempotent; the first of two reviewers wins)",
            access: "an educator of the flag's course, an admin",
            query: &[],
            request: Body::Schema(schema::<super::educators::ChangeBody>),
            reply: Body::Schema(changed),
            errors: &[401, 403, 404, 409, 413, 415, 422, 429, 503],
        },
        Op {
            method: "POST",
            path: "/v1/flags/{id}/reopen",
            summary: "Reopen a flag (409 when another is open for the same learner and skill)",
            access: "an educator of the flag's course, an admin",
            query: &[],
            request: Body::Schema(schema::<super::educators::ChangeBody>),
            reply: Body::Schema(changed),
            errors: &[401, 403, 404, 409, 413, 415, 422, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/analytics/skills",
            summary: "Per skill: learners, answers, wrong rate, hints, flags, demand, misconceptions, time to proficient; progression by week (small groups suppressed)",
            access: "an educator (their courses), an admin",
            query: ANALYTICS_QUERY,
            request: Body::None,
            reply: Body::SchemaOrCsv(report::<SkillsReport>),
            errors: &[400, 401, 403, 404, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/analytics/components",
            summary: "Per component: learners, answers, wrong rate, hints, flags, misconceptions; where learners stop (small groups suppressed)",
            access: "an educator (their courses), an admin",
            query: ANALYTICS_QUERY,
            request: Body::None,
            reply: Body::SchemaOrCsv(report::<ComponentsReport>),
            errors: &[400, 401, 403, 404, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/courses/{course}/priorities",
            summary: "The course's priority skills (for the course, and per group)",
            access: "an educator of the course, an admin",
            query: &[],
            request: Body::None,
            reply: Body::Schema(priorities),
            errors: &[401, 403, 404, 429, 503],
        },
        Op {
            method: "PUT",
            path: "/v1/courses/{course}/priorities",
            summary: "Replace the priority skills of the course or of one group",
            access: "an educator of the course, an admin",
            query: &[],
            request: Body::Schema(schema::<super::educators::PrioritiesBody>),
            reply: Body::Schema(priorities),
            errors: &[401, 403, 404, 413, 415, 422, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/skills/{skill}/model",
            summary: "A skill's BKT parameters as every passport uses them: fitted (with when, from how many answers, the gain), authored or default",
            access: "an educator of the skill's course, an admin",
            query: &[],
            request: Body::None,
            reply: Body::Schema(schema::<super::educators::SkillModel>),
            errors: &[401, 403, 404, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/components/{id}",
            summary: "A component as a learner sees it: rendered, sanitised HTML; exercise items as their prompts only",
            access: "any token",
            query: &[],
            request: Body::None,
            reply: Body::Schema(schema::<LearnerComponent>),
            errors: &[400, 401, 404, 429, 503],
        },
        Op {
            method: "POST",
            path: "/v1/components/{id}/items/{item}/hint",
            summary: "An exercise item's hint number `number`, given on request, one at a time (409 out of order)",
            access: "a learner, a service (its courses), an admin",
            query: &[],
            request: Body::Json(hint_body),
            reply: Body::Schema(schema::<Hint>),
            errors: &[400, 401, 403, 404, 409, 413, 415, 422, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/learners/{id}/lesson",
            summary: "A course as this learner's lesson: per skill, the material the plan chooses and the exercises",
            access: "the learner, a service (its courses), an admin",
            query: &[("course", true, "The course")],
            request: Body::None,
            reply: Body::Schema(schema::<Lesson>),
            errors: &[400, 401, 403, 404, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/learners/{id}/recommendations",
            summary: "What to study next, each with its material and a reason naming the evidence",
            access: "the learner, a service (its courses), an admin",
            query: &[
                ("course", false, "One course (default: every course the caller reaches)"),
                ("limit", false, "1 to 50 (default 5)"),
            ],
            request: Body::None,
            reply: Body::Schema(schema::<Recommendations>),
            errors: &[400, 401, 403, 404, 429, 503],
        },
        Op {
            method: "POST",
            path: "/v1/learners/{id}/recommendations/{rec}/feedback",
            summary: "The learner's feedback on a recommendation: helpful, not_now, already_know or dismiss",
            access: "the learner, an admin",
            query: &[],
            request: Body::Json(feedback_body),
            reply: Body::Schema(schema::<Given>),
            errors: &[400, 401, 403, 404, 413, 415, 422, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/learners/{id}/skills/{skill}/evidence",
            summary: "Why the passport thinks what it does about a skill: the answers that moved the estimate",
            access: "the learner, a service (its courses), an admin",
            query: &[],
            request: Body::None,
            reply: Body::Schema(schema::<Trail>),
            errors: &[400, 401, 403, 404, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/sessions/{id}",
            summary: "A tutoring session's transcript, for its learner",
            access: "the learner, an admin (naming the learner)",
            query: &[("learner", false, "The learner (an admin names them; a learner token is its own)")],
            request: Body::None,
            reply: Body::Schema(schema::<SessionView>),
            errors: &[400, 401, 403, 404, 429, 503],
        },
        Op {
            method: "GET",
            path: "/v1/search",
            summary: "Search the course: what `tutor search --json` prints (learner-visible text only)",
            access: "any token",
            query: &[
                ("q", true, "The query, 1 to 500 characters"),
                ("course", false, "A course id"),
                ("skill", false, "A skill id (several: separated by commas, any of them)"),
                ("level", false, "intro, developing, proficient or advanced (several: separated by commas)"),
                ("format", false, "A format, e.g. worked_example (several: separated by commas)"),
                ("k", false, "1 to 100 (default 5)"),
            ],
            request: Body::None,
            reply: Body::Schema(|g| json!({"type": "array", "items": schema::<Hit>(g)})),
            errors: &[400, 401, 429, 503],
        },
        Op {
            method: "GET",
            path: "/",
            summary: "The demo lesson: a course adapted to the learner, with the tutor",
            access: "anyone",
            query: &[],
            request: Body::None,
            reply: Body::Text("text/html; charset=utf-8"),
            errors: &[429],
        },
        Op {
            method: "GET",
            path: "/me",
            summary: "The learner's own passport, with the evidence behind it, and recommendations",
            access: "anyone",
            query: &[],
            request: Body::None,
            reply: Body::Text("text/html; charset=utf-8"),
            errors: &[429],
        },
        Op {
            method: "GET",
            path: "/components/{id}",
            summary: "One component's page, for a learner, with the tutor",
            access: "anyone",
            query: &[],
            request: Body::None,
            reply: Body::Text("text/html; charset=utf-8"),
            errors: &[429],
        },
        Op {
            method: "GET",
            path: "/widget.js",
            summary: "The embeddable tutor: one script tag turns a content page into a page with the tutor",
            access: "anyone",
            query: &[],
            request: Body::None,
            reply: Body::Text("text/javascript; charset=utf-8"),
            errors: &[429],
        },
        Op {
            method: "GET",
            path: "/educator",
            summary: "The educators' page: the review queue and the analytics",
            access: "anyone",
            query: &[],
            request: Body::None,
            reply: Body::Text("text/html; charset=utf-8"),
            errors: &[429],
        },
        Op {
            method: "GET",
            path: "/assets/{file}",
            summary: "The pages' scripts and styles",
            access: "anyone",
            query: &[],
            request: Body::None,
            reply: Body::Texts(&["text/javascript; charset=utf-8", "text/css; charset=utf-8"]),
            errors: &[404, 429],
        },
        Op {
            method: "POST",
            path: "/v1/tutor/chat",
            summary: "A tutor turn: an SSE stream (tool, delta, replace, done), or one JSON reply with Accept: application/json",
            access: "a learner (as themselves), a service (its courses' pages), an admin",
            query: &[],
            request: Body::Schema(schema::<ChatRequest>),
            reply: Body::StreamOr(schema::<TurnResult>),
            errors: &[400, 401, 403, 404, 413, 415, 422, 429, 503],
        },
    ]
}

fn error_reply(status: u16) -> Value {
    let what = match status {
        400 => "The request is malformed",
        401 => "No bearer token, or one that is not accepted",
        403 => "The token may not do this",
        404 => "Not found",
        409 => "The resource is not in a state this can change",
        413 => "The body is too large",
        415 => "The body is not application/json",
        422 => "The body is well-formed but not acceptable",
        429 => "A limit is reached; see Retry-After",
        503 => "Not ready, or a store is unavailable",
        _ => "Error",
    };
    json!({"description": what, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn content(body: &Body, g: &mut SchemaGenerator) -> Option<Value> {
    match body {
        Body::None => None,
        Body::Schema(f) => Some(json!({"application/json": {"schema": f(g)}})),
        Body::Json(f) => Some(json!({"application/json": {"schema": f()}})),
        Body::Text(ct) => {
            let mut m = Map::new();
            m.insert((*ct).to_owned(), json!({"schema": {"type": "string"}}));
            Some(Value::Object(m))
        }
        Body::Texts(types) => {
            let mut m = Map::new();
            for ct in *types {
                m.insert((*ct).to_owned(), json!({"schema": {"type": "string"}}));
            }
            Some(Value::Object(m))
        }
        Body::SchemaOrCsv(f) => Some(json!({
            "application/json": {"schema": f(g)},
            "text/csv": {"schema": {"type": "string"}},
        })),
        Body::StreamOr(f) => Some(json!({
            "text/event-stream": {"schema": {"type": "string", "description":
                "events `tool`, `delta` ({text}), `replace` ({reason, message}) and `done` (the JSON reply)"}},
            "application/json": {"schema": f(g)},
        })),
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2019_09();
    settings.definitions_path = "#/components/schemas/".into();
    settings.meta_schema = None;
    let mut g = settings.into_generator();
    let mut paths = Map::new();
    for op in ops() {
        let mut params: Vec<Value> = op
            .query
            .iter()
            .map(|(name, required, d)| {
                json!({"name": name, "in": "query", "required": required, "description": d, "schema": {"type": "string"}})
            })
            .collect();
        if op.path.contains("{id}") {
            let (what, pattern) = if op.path.starts_with("/v1/flags") {
                ("The flag id", "^[A-Za-z0-9_-]{1,128}$")
            } else if op.path.contains("components/") {
                ("The component id", "^[a-z0-9][a-z0-9-]{0,99}$")
            } else if op.path.starts_with("/v1/sessions") {
                ("The session id", "^[A-Za-z0-9-]{1,128}$")
            } else {
                ("The learner id", "^[A-Za-z0-9._@:-]{1,128}$")
            };
            params.push(json!({"name": "id", "in": "path", "required": true, "description": what,
                               "schema": {"type": "string", "pattern": pattern}}));
        }
        if op.path.contains("{course}") {
            params.push(json!({"name": "course", "in": "path", "required": true, "description": "The course id",
                               "schema": {"type": "string"}}));
        }
        for (name, what) in
            [("item", "The exercise item id"), ("rec", "The recommendation id"), ("skill", "The skill id")]
        {
            if op.path.contains(&format!("{{{name}}}")) {
                params.push(json!({"name": name, "in": "path", "required": true, "description": what,
                                   "schema": {"type": "string"}}));
            }
        }
        if op.path.contains("{file}") {
            params.push(json!({"name": "file", "in": "path", "required": true, "description": "The asset's name",
                               "schema": {"type": "string", "enum": super::pages::asset_names()}}));
        }
        let mut responses = Map::new();
        let mut ok = json!({"description": "OK"});
        if let Some(c) = content(&op.reply, &mut g) {
            ok["content"] = c;
        }
        responses.insert("200".into(), ok);
        for status in op.errors {
            responses.insert(status.to_string(), error_reply(*status));
        }
        let mut operation = json!({
            "summary": op.summary,
            "description": format!("Who may call: {}.", op.access),
            "parameters": params,
            "responses": responses,
        });
        if op.access != "anyone" {
            operation["security"] = json!([{"bearer": []}]);
        }
        if let Some(c) = content(&op.request, &mut g) {
            operation["requestBody"] = json!({"required": true, "content": c});
        }
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        entry[op.method.to_lowercase()] = operation;
    }
    let mut schemas: Map<String, Value> =
        g.take_definitions().into_iter().map(|(k, v)| (k, serde_json::to_value(v).unwrap_or_default())).collect();
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"},
                "details": {}}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "tutor", "version": env!("CARGO_PKG_VERSION"),
                 "description": "An agentic AI tutor that lives in the content layer."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    })
}

/// The (method, path) of every operation documented.
pub fn operations() -> Vec<(&'static str, &'static str)> {
    ops().iter().map(|o| (o.method, o.path)).collect()
}
