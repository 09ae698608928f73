//! Learners through the HTTP API: components as sanitised HTML with no answer key, hint or
//! diagnosis in anything a learner can fetch (scanned over both sample courses), graded
//! answers and hints on request, the lesson adapted per learner, a session's transcript for
//! its learner only, recommendations with reasons and feedback that changes them (erased
//! with the learner), the evidence behind an estimate, and search over HTTP and from the CLI.

#[macro_use]
mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{Value, json};
use tutor::auth::Role;

const SECRET: &str = "learners-test-secret-learners-test!!";
const DIVIDE_EX: &str = "fractions-divide-ex-1";
const MULTIPLY_EX: &str = "fractions-multiply-ex-1";

fn token(role: Role, sub: &str, courses: &[&str]) -> String {
    signed_token(SECRET, role, sub, courses, None)
}

fn answer(learner: &str, n: usize, component: &str, item: &str, right: bool, response: &str) -> Value {
    json!({"id": format!("{learner}-{component}-{item}-{n}"), "actor": learner, "verb": "answered",
        "object": {"component": component, "item": item},
        "result": {"success": right, "response": response, "hints_used": 0},
        "timestamp": format!("2026-11-20T{:02}:{:02}:00Z", 8 + n / 60, n % 60)})
}

/// JSON as it appears on the wire (`/` escaped or not, quotes escaped), and as text.
fn leaked<'a>(text: &str, secrets: &'a [String]) -> Option<&'a String> {
    let lower = text.to_lowercase();
    secrets.iter().find(|s| {
        let s = s.to_lowercase();
        lower.contains(&s) || lower.contains(&serde_json::to_string(&s).unwrap().trim_matches('"').to_owned())
    })
}

#[tokio::test]
async fn nothing_a_learner_can_fetch_carries_an_answer_key_hint_or_diagnosis() {
    // a scan of some 500 requests, over the per-caller limit of a minute
    let api = Api::with(false, SECRET, "leaks", |c| c.limits.requests_per_minute = 10_000).await.unwrap();
    let lib = load(&sample_content());
    let secrets = learner_secrets(&lib);
    assert!(secrets.len() > 150, "the scan has something to look for: {}", secrets.len());
    // alice has a wrong answer on every item, none of a known misconception: nothing about her
    // may show a diagnosis, an explanation or the right answer
    let wrong: Vec<Value> = lib
        .components
        .values()
        .flat_map(|c| c.items.iter().map(move |i| (c.id.to_string(), i.id.clone())))
        .enumerate()
        .map(|(n, (c, i))| answer("alice", n, &c, &i, false, "zzz"))
        .collect();
    assert!(wrong.len() > 90);
    api.events(wrong).await;
    let alice = token(Role::Learner, "alice", &[]);
    let mut paths: Vec<String> = vec![
        "/".into(),
        "/me".into(),
        "/widget.js".into(),
        "/openapi.json".into(),
        "/v1/me".into(),
        "/v1/learners/alice/passport".into(),
        "/v1/learners/alice/recommendations?limit=50".into(),
    ];
    for name in ["tutor.css", "widget.css", "learner.js", "lesson.js", "me.js"] {
        paths.push(format!("/assets/{name}"));
    }
    for course in lib.courses.keys() {
        paths.push(format!("/v1/learners/alice/lesson?course={course}"));
    }
    for (id, c) in &lib.components {
        paths.push(format!("/v1/components/{id}"));
        paths.push(format!("/components/{id}"));
        paths.push(format!("/v1/learners/alice/plan?component={id}"));
        // search for the component's own words and its items' prompts: the chunks it returns
        let q: String = c.items.first().map_or(c.title.clone(), |i| i.prompt.clone()).chars().take(200).collect();
        paths.push(format!("/v1/search?k=10&q={}", urlencode(&q)));
    }
    for skill in lib.skills.keys() {
        paths.push(format!("/v1/learners/alice/skills/{skill}/evidence"));
    }
    let mut scanned = 0;
    for p in &paths {
        let (status, body) = api.call("GET", p, &alice, None).await;
        assert_eq!(status, 200, "{p}: {body}");
        let text = match &body {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        if let Some(s) = leaked(&text, &secrets) {
            panic!("{p} shows a learner {s:?}");
        }
        scanned += 1;
    }
    assert!(scanned > 400, "{scanned}");
    // the component JSON is the page's HTML, sanitised, and its items' prompts
    let (_, c) = api.call("GET", &format!("/v1/components/{DIVIDE_EX}"), &alice, None).await;
    assert!(c["html"].as_str().unwrap().contains("<h2>"), "{c}");
    let item = &c["items"][0];
    assert!(item["prompt_html"].as_str().unwrap().starts_with("<p>") && item["hints"].as_u64() > Some(0), "{c}");
    let keys: BTreeSet<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["id", "prompt_html", "demand", "hints"]), "{item}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn course_text_is_sanitised_before_a_learner_sees_it() {
    let bad = "# Hi\n\nText <script>alert(1)</script> and <img src=x onerror=alert(2)> [a](javascript:alert(3)) [b](https://example.org)\n";
    let root = tree(&[
        (
            "c/skills.yaml",
            b"course: {id: c, title: C, description: d, audience: a}\nskills:\n  - {id: c.s, name: S, description: d, prerequisites: []}\n",
        ),
        ("c/components/c-s-explain-intro.md", explanation("c-s-explain-intro", "c.s", "intro", "Title", bad).as_bytes()),
    ]);
    let dir = root.path().to_owned();
    let app = spawn_app(|c| c.content_dir = dir).await;
    wait_ready(&app.base).await;
    let (status, c) = get(&format!("{}/v1/components/c-s-explain-intro", app.base)).await;
    assert_eq!(status, 200, "{c}");
    let html = c["html"].as_str().unwrap();
    assert!(html.contains(r#"<a href="https://example.org" rel="noopener noreferrer nofollow">b</a>"#), "{html}");
    for gone in ["<script", "onerror", "javascript:"] {
        assert!(!html.contains(gone), "{gone} in {html}");
    }
}

async fn exercises_are_graded_hints_come_on_request_and_the_lesson_differs_per_learner(pg: bool) {
    let Some(api) = Api::new(pg, SECRET, "exercises_are_graded").await else { return };
    let ada = token(Role::Learner, "ada", &[]);
    // a wrong answer with a known misconception: graded, with what it shows
    let stmt = json!([{"id": "a1", "actor": "ada", "verb": "answered", "object": {"component": DIVIDE_EX, "item": "q1"},
                       "result": {"response": "3/8"}, "timestamp": "2026-11-20T08:00:00Z"}]);
    let (status, r) = api.call("POST", "/v1/events", &ada, Some(&stmt)).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["graded"][0]["success"], false, "{r}");
    assert!(r["graded"][0]["diagnosis"].as_str().unwrap().contains("Multiplied"), "{r}");
    // hints one at a time, and no more than there are
    let path = format!("/v1/components/{DIVIDE_EX}/items/q1/hint");
    let (status, e) = api.call("POST", &path, &ada, Some(&json!({"number": 2}))).await;
    assert_eq!((status, e["error"]["code"].as_str()), (409, Some("hint_out_of_order")), "{e}");
    let (status, h) = api.call("POST", &path, &ada, Some(&json!({"number": 1}))).await;
    assert_eq!(status, 200, "{h}");
    assert!(h["hint"].as_str().unwrap().len() > 5 && h["of"].as_u64() >= Some(2), "{h}");
    assert_eq!(api.call("POST", &path, &ada, Some(&json!({"number": 1}))).await.0, 200, "one given before, again");
    // the next answer on the item counts the hint, whatever the page says (an answer sent
    // again with it, already stored, does not take it); the one after does not
    for (id, minute) in [("a2", 1), ("a3", 2)] {
        let mut batch = vec![
            json!({"id": id, "actor": "ada", "verb": "answered", "object": {"component": DIVIDE_EX, "item": "q1"},
                           "result": {"response": "9"}, "timestamp": format!("2026-11-20T08:0{minute}:00Z")}),
        ];
        if id == "a2" {
            batch.insert(0, stmt[0].clone());
        }
        let (status, r) = api.call("POST", "/v1/events", &ada, Some(&json!(batch))).await;
        assert_eq!(
            (status, r["accepted"].as_u64(), r["duplicates"].as_u64()),
            (200, Some(1), Some(batch.len() as u64 - 1)),
            "{r}"
        );
    }
    let (_, t) = api.call("GET", "/v1/learners/ada/skills/fractions.divide/evidence", &ada, None).await;
    let hints: Vec<u64> = t["steps"].as_array().unwrap().iter().map(|s| s["hints_used"].as_u64().unwrap()).collect();
    assert_eq!(hints, [0, 1, 0], "newest first: {t:#}");
    let (status, e) = api.call("POST", &path, &ada, Some(&json!({"number": 0}))).await;
    assert_eq!((status, e["error"]["code"].as_str()), (404, Some("no_such_hint")), "{e}");
    let beyond = h["of"].as_u64().unwrap() + 1;
    let (status, e) = api.call("POST", &path, &ada, Some(&json!({"number": beyond}))).await;
    assert_eq!((status, e["error"]["code"].as_str()), (404, Some("no_such_hint")), "{e}");
    let (status, _) = api
        .call("POST", &format!("/v1/components/{DIVIDE_EX}/items/q99/hint"), &ada, Some(&json!({"number": 1})))
        .await;
    assert_eq!(status, 404);
    let edu = token(Role::Educator, "eve", &["fractions"]);
    let (status, _) = api.call("POST", &path, &edu, Some(&json!({"number": 1}))).await;
    assert_eq!(status, 403);
    let bob = token(Role::Learner, "bob", &[]);
    let (status, _) = api.call("POST", &path, &bob, Some(&json!({"number": 1, "learner": "ada"}))).await;
    assert_eq!(status, 403, "hints are given to oneself");

    // ben knows division well: his lesson shows other material for it than ada's
    let ben: Vec<Value> = (0..8).map(|n| answer("ben", n, DIVIDE_EX, ["q1", "q2", "q3"][n % 3], true, "ok")).collect();
    api.events(ben).await;
    let section = |l: &Value| -> Value {
        l["sections"].as_array().unwrap().iter().find(|s| s["skill"]["id"] == "fractions.divide").unwrap().clone()
    };
    let (_, la) = api.call("GET", "/v1/learners/ada/lesson?course=fractions", &ada, None).await;
    let (_, lb) =
        api.call("GET", "/v1/learners/ben/lesson?course=fractions", &token(Role::Learner, "ben", &[]), None).await;
    let (a, b) = (section(&la), section(&lb));
    assert_ne!(a["material"]["id"], b["material"]["id"], "two learners, two variants:\n{a:#}\n{b:#}");
    assert_eq!(b["plan"]["variant"]["component_id"], b["material"]["id"]);
    assert!(b["plan"]["variant"]["reason"].as_str().unwrap().contains("mastered"), "{b:#}");
    assert!(a["exercises"].as_array().unwrap().iter().any(|e| e["id"] == DIVIDE_EX));
    assert_eq!(la["sections"].as_array().unwrap().len(), 10, "one section per skill of the course");
    // someone else's lesson is not ada's to read
    let (status, _) = api.call("GET", "/v1/learners/ben/lesson?course=fractions", &ada, None).await;
    assert_eq!(status, 403);
}

async fn recommendations_name_their_evidence_and_follow_feedback_until_erased(pg: bool) {
    let Some(api) = Api::new(pg, SECRET, "recommendations").await else { return };
    let mia = token(Role::Learner, "mia", &[]);
    let recs = |v: &Value| -> Vec<(String, String)> {
        v["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_str().unwrap().to_owned(), r["kind"].as_str().unwrap().to_owned()))
            .collect()
    };
    // no evidence yet: where each course's skill graph starts
    let (status, r) = api.call("GET", "/v1/learners/mia/recommendations?course=fractions", &mia, None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(recs(&r), [("fractions.meaning".to_owned(), "next".to_owned())], "{r:#}");
    for item in r["recommendations"].as_array().unwrap() {
        for field in ["id", "skill", "component_id", "reason"] {
            assert!(item[field].is_string(), "{field}: {item}");
        }
    }
    // wrong answers on multiplying while dividing: the gap comes first, with its evidence
    let mut events: Vec<Value> = (0..3).map(|n| answer("mia", n, MULTIPLY_EX, "q1", false, "x")).collect();
    events.extend((3..5).map(|n| answer("mia", n, DIVIDE_EX, "q2", n == 3, "x")));
    api.events(events).await;
    let (_, r) = api.call("GET", "/v1/learners/mia/recommendations?course=fractions", &mia, None).await;
    let first = &r["recommendations"][0];
    assert_eq!(
        (first["skill"].as_str(), first["kind"].as_str()),
        (Some("fractions.multiply"), Some("prerequisite_gap")),
        "{r:#}"
    );
    assert_eq!(
        first["reason"],
        "3 of your last 3 answers on multiplying fractions were wrong, and dividing fractions needs it.",
        "{r:#}"
    );
    assert_eq!(r["recommendations"][1]["kind"], "fragile", "{r:#}");
    // an educator's priority leads its kind, and says so
    let edu = token(Role::Educator, "ada", &["fractions"]);
    let (status, _) =
        api.call("PUT", "/v1/courses/fractions/priorities", &edu, Some(&json!({"skills": ["fractions.divide"]}))).await;
    assert_eq!(status, 200);
    let (_, r) = api.call("GET", "/v1/learners/mia/recommendations?course=fractions", &mia, None).await;
    let divide = r["recommendations"].as_array().unwrap().iter().find(|x| x["skill"] == "fractions.divide").unwrap();
    assert!(
        divide["priority"] == true && divide["reason"].as_str().unwrap().ends_with("marked it a priority."),
        "{r:#}"
    );

    // a service of the other course sees that course's recommendations, and nothing of this one
    let svc = token(Role::Service, "lms", &["security"]);
    let (status, r) = api.call("GET", "/v1/learners/mia/recommendations", &svc, None).await;
    assert_eq!(status, 200, "{r}");
    assert!(
        r["recommendations"].as_array().unwrap().iter().all(|x| x["course"] == "security")
            && !r.to_string().contains("fraction"),
        "{r:#}"
    );

    // dismissed: gone; "already know": a check, on an exercise
    let fb = |rec: &str, feedback: &str| {
        (format!("/v1/learners/mia/recommendations/{rec}/feedback"), json!({"feedback": feedback}))
    };
    let (path, body) = fb("fractions.multiply", "dismiss");
    let (status, given) = api.call("POST", &path, &mia, Some(&body)).await;
    assert_eq!((status, given["feedback"].as_str()), (200, Some("dismiss")), "{given}");
    let (path, body) = fb("fractions.divide", "already_know");
    api.call("POST", &path, &mia, Some(&body)).await;
    let (_, r) = api.call("GET", "/v1/learners/mia/recommendations?course=fractions", &mia, None).await;
    let ids: Vec<String> = recs(&r).into_iter().map(|(id, _)| id).collect();
    assert!(!ids.contains(&"fractions.multiply".to_owned()), "a dismissed one does not come back: {r:#}");
    let check = r["recommendations"].as_array().unwrap().iter().find(|x| x["skill"] == "fractions.divide").unwrap();
    assert_eq!((check["kind"].as_str(), check["format"].as_str()), (Some("check"), Some("exercise")), "{r:#}");
    assert!(check["reason"].as_str().unwrap().starts_with("You said you already know dividing fractions"), "{check}");
    // once she answers on it, her answers speak instead
    let mut now = answer("mia", 30, DIVIDE_EX, "q1", false, "x");
    let later = chrono::Utc::now() + chrono::Duration::seconds(2);
    now["timestamp"] = json!(later.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    api.events(vec![now]).await;
    let (_, r) = api.call("GET", "/v1/learners/mia/recommendations?course=fractions", &mia, None).await;
    let divide = r["recommendations"].as_array().unwrap().iter().find(|x| x["skill"] == "fractions.divide").unwrap();
    assert_ne!(divide["kind"], "check", "{r:#}");
    // feedback on what is not a recommendation, or on another's, is refused
    let (path, body) = fb("no.such-skill", "helpful");
    assert_eq!(api.call("POST", &path, &mia, Some(&body)).await.0, 404);
    let (status, _) =
        api.call("POST", &path.replace("/mia/", "/ben/"), &mia, Some(&json!({"feedback": "helpful"}))).await;
    assert_eq!(status, 403);
    let (status, bad) =
        api.call("POST", &fb("fractions.divide", "x").0, &mia, Some(&json!({"feedback": "love"}))).await;
    assert_eq!(status, 422, "{bad}");

    // the evidence behind the estimate: each answer, how it moved it, what it showed
    let (status, t) = api.call("GET", "/v1/learners/mia/skills/fractions.multiply/evidence", &mia, None).await;
    assert_eq!(status, 200, "{t}");
    let steps = t["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{t:#}");
    // newest first: each step starts where the one before it ended, and it ends at the estimate
    for pair in steps.windows(2) {
        assert_eq!(pair[0]["mastery_before"], pair[1]["mastery_after"], "{t:#}");
    }
    assert_eq!(steps[0]["mastery_after"], t["mastery"], "{t:#}");
    assert!(t["mastery"].as_f64() < Some(0.2) && t["band"] == "intro", "three wrong answers: {t:#}");
    assert!(steps[0]["sentence"].as_str().unwrap().starts_with("Wrong on q1 of"), "{t:#}");
    assert!(t["summary"].as_str().unwrap().starts_with("3 answer(s) on multiplying fractions, 0 right"), "{t:#}");

    // erased with her
    let (_, erased) = api.call("DELETE", "/v1/learners/mia", &mia, None).await;
    assert_eq!(erased["erased"]["recommendation_feedback"], 2, "{erased}");
    let (_, r) = api.call("GET", "/v1/learners/mia/recommendations?course=fractions", &mia, None).await;
    assert_eq!(recs(&r), [("fractions.meaning".to_owned(), "next".to_owned())], "a fresh start: {r:#}");
}

#[tokio::test]
async fn a_sessions_transcript_is_its_learners_alone() {
    let api = Api::new(false, SECRET, "sessions").await.unwrap();
    let alice = token(Role::Learner, "alice", &[]);
    let turn = json!({"component_id": "fractions-divide-explain-intro", "message": "how do I divide fractions?"});
    let (status, r) = api.call("POST", "/v1/tutor/chat", &alice, Some(&turn)).await;
    assert_eq!(status, 200, "{r}");
    let sid = r["session_id"].as_str().unwrap();
    let (status, s) = api.call("GET", &format!("/v1/sessions/{sid}"), &alice, None).await;
    assert_eq!(status, 200, "{s}");
    let messages = s["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{s:#}");
    assert_eq!(
        (messages[0]["role"].as_str(), messages[0]["content"].as_str()),
        (Some("learner"), Some("how do I divide fractions?"))
    );
    assert_eq!(messages[1]["role"], "tutor");
    assert_eq!(messages[1]["citations"], r["citations"], "the citations come back with the transcript");
    // another learner: as if it did not exist; an admin names the learner
    let bob = token(Role::Learner, "bob", &[]);
    let (status, e) = api.call("GET", &format!("/v1/sessions/{sid}"), &bob, None).await;
    assert_eq!((status, e["error"]["code"].as_str()), (404, Some("unknown_session")), "{e}");
    let admin = token(Role::Admin, "root", &[]);
    assert_eq!(api.call("GET", &format!("/v1/sessions/{sid}"), &admin, None).await.0, 400);
    assert_eq!(api.call("GET", &format!("/v1/sessions/{sid}?learner=alice"), &admin, None).await.0, 200);
    assert_eq!(api.call("GET", &format!("/v1/sessions/{sid}?learner=bob"), &admin, None).await.0, 404);
}

#[tokio::test]
async fn search_answers_over_http_and_the_cli_asks_a_running_server() {
    let api = Api::new(false, SECRET, "search").await.unwrap();
    let alice = token(Role::Learner, "alice", &[]);
    let (status, hits) =
        api.call("GET", "/v1/search?q=how%20do%20I%20divide%20fractions&course=fractions&k=3", &alice, None).await;
    assert_eq!(status, 200, "{hits}");
    let hits = hits.as_array().unwrap();
    assert!(!hits.is_empty() && hits.len() <= 3 && hits.iter().all(|h| h["course"] == "fractions"), "{hits:?}");
    assert!(hits.iter().any(|h| h["skills"].as_array().unwrap().contains(&json!("fractions.divide"))), "{hits:?}");
    for (q, code) in [("", "missing_query"), ("x&k=0", "invalid_k"), ("x&level=expert", "invalid_level")] {
        let (status, e) = api.call("GET", &format!("/v1/search?q={q}"), &alice, None).await;
        assert_eq!((status, e["error"]["code"].as_str()), (400, Some(code)), "{q}: {e}");
    }
    // `tutor search --server` asks the service (in this process: the command must not block it),
    // with the token in TUTOR_TOKEN
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tutor"))
        .args([
            "search",
            "how do I divide fractions",
            "--course",
            "fractions",
            "-k",
            "3",
            "--json",
            "--server",
            &api.app.base,
        ])
        .env("TUTOR_TOKEN", &alice)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli.as_array().unwrap(), hits, "the CLI prints what the route answers");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tutor"))
        .args(["search", "fractions", "--server", &api.app.base])
        .env_remove("TUTOR_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("TUTOR_TOKEN"), "{err}");
}

on_both! {
    exercises_are_graded_hints_come_on_request_and_the_lesson_differs_per_learner => exercises_on_sqlite, exercises_on_postgres;
    recommendations_name_their_evidence_and_follow_feedback_until_erased => recommendations_on_sqlite, recommendations_on_postgres;
}
