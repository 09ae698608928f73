//! Who may call what: every role over every route (the table below must name every route of
//! `tutor::api::ROUTES`: a new route is added to it), the tokens that must be refused, a
//! learner posting for another, and a JWKS with rotating keys.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tutor::auth::Role;
use tutor::config::{AuthConfig, Config};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "test-secret-test-secret-test-secret";
const PAGE: &str = "fractions-divide-ex-1";

fn auth() -> AuthConfig {
    hs256(SECRET)
}

fn token(role: Role, sub: &str, courses: &[&str]) -> String {
    signed_token(SECRET, role, sub, courses, None)
}

async fn secured_app(tweak: impl FnOnce(&mut Config)) -> App {
    spawn_sample_app(|c| {
        c.auth = auth();
        tweak(c);
    })
    .await
}

/// Sends a request with an optional bearer token; the status and the JSON body.
async fn call(app: &App, method: &str, path: &str, body: Option<&Value>, bearer: Option<&str>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", app.base);
    let mut req = client.request(method.parse().unwrap(), &url).header("accept", "application/json");
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let text = r.text().await.unwrap();
    if status == 200 && !ct.starts_with("application/json") {
        // the metrics, the pages and their assets
        return (status, Value::String(text));
    }
    assert!(ct.starts_with("application/json"), "{method} {path}: {status} {ct}: {text}");
    (status, serde_json::from_str(&text).unwrap())
}

/// The callers of the table, in its column order.
const CALLERS: &[&str] = &["none", "alice", "bob", "educator", "educator_other", "service", "service_other", "admin"];

fn bearer_of(who: &str) -> Option<String> {
    match who {
        "none" => None,
        "alice" => Some(token(Role::Learner, "alice", &[])),
        "bob" => Some(token(Role::Learner, "bob", &[])),
        "educator" => Some(token(Role::Educator, "ada", &["fractions"])),
        "educator_other" => Some(token(Role::Educator, "eve", &["security"])),
        "service" => Some(token(Role::Service, "lms", &["fractions"])),
        "service_other" => Some(token(Role::Service, "lms-2", &["security"])),
        "admin" => Some(token(Role::Admin, "root", &[])),
        other => panic!("no caller {other}"),
    }
}

struct Row {
    method: &'static str,
    path: &'static str,
    /// The request's path (the route with its parameters filled in: alice's resources;
    /// `{flag}` stands for alice's flag on the fractions course, `{session}` for her chat session).
    target: &'static str,
    body: Option<Value>,
    /// The status for each caller of [`CALLERS`].
    expect: [u16; 8],
}

/// Every route × every role, on alice's resources ("alice" is the owner, "bob" another
/// learner; "service" covers the fractions course, "service_other" only security).
fn table() -> Vec<Row> {
    let viewed = json!({"id": "v-1", "actor": "alice", "verb": "viewed", "object": {"component": PAGE},
                        "timestamp": "2026-11-20T08:00:00Z"});
    let chat = json!({"learner_id": "alice", "component_id": PAGE, "message": "how do I divide fractions?"});
    let resolve = json!({"outcome": "supported", "note": "talked it through"});
    let priorities = json!({"skills": ["fractions.divide"]});
    //                                       none alice bob  edu  edu2 svc  svc2 admin
    vec![
        Row {
            method: "GET",
            path: "/healthz",
            target: "/healthz",
            body: None,
            expect: [200, 200, 200, 200, 200, 200, 200, 200],
        },
        Row {
            method: "GET",
            path: "/readyz",
            target: "/readyz",
            body: None,
            expect: [200, 200, 200, 200, 200, 200, 200, 200],
        },
        Row {
            method: "GET",
            path: "/openapi.json",
            target: "/openapi.json",
            body: None,
            expect: [200, 200, 200, 200, 200, 200, 200, 200],
        },
        Row {
            method: "GET",
            path: "/metrics",
            target: "/metrics",
            body: None,
            expect: [401, 403, 403, 403, 403, 403, 403, 200],
        },
        Row {
            method: "POST",
            path: "/v1/events",
            target: "/v1/events",
            body: Some(viewed),
            expect: [401, 200, 403, 403, 403, 200, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/learners/{id}/passport",
            target: "/v1/learners/alice/passport",
            body: None,
            expect: [401, 200, 403, 403, 403, 200, 200, 200],
        },
        Row {
            method: "GET",
            path: "/v1/learners/{id}/plan",
            target: "/v1/learners/alice/plan?component=fractions-divide-ex-1",
            body: None,
            expect: [401, 200, 403, 403, 403, 200, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/learners/{id}/audit",
            target: "/v1/learners/alice/audit",
            body: None,
            expect: [401, 200, 403, 403, 403, 403, 403, 200],
        },
        Row {
            method: "POST",
            path: "/v1/tutor/chat",
            target: "/v1/tutor/chat",
            body: Some(chat),
            expect: [401, 200, 403, 403, 403, 200, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/me",
            target: "/v1/me",
            body: None,
            expect: [401, 200, 200, 200, 200, 200, 200, 200],
        },
        Row {
            method: "GET",
            path: "/v1/flags",
            target: "/v1/flags?course=fractions",
            body: None,
            expect: [401, 403, 403, 200, 403, 403, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/flags/{id}",
            target: "/v1/flags/{flag}",
            body: None,
            expect: [401, 403, 403, 200, 403, 403, 403, 200],
        },
        Row {
            method: "POST",
            path: "/v1/flags/{id}/acknowledge",
            target: "/v1/flags/{flag}/acknowledge",
            body: None,
            expect: [401, 403, 403, 200, 403, 403, 403, 200],
        },
        Row {
            method: "POST",
            path: "/v1/flags/{id}/resolve",
            target: "/v1/flags/{flag}/resolve",
            body: Some(resolve),
            expect: [401, 403, 403, 200, 403, 403, 403, 200],
        },
        Row {
            method: "POST",
            path: "/v1/flags/{id}/reopen",
            target: "/v1/flags/{flag}/reopen",
            body: None,
            expect: [401, 403, 403, 200, 403, 403, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/analytics/skills",
            target: "/v1/analytics/skills?course=fractions",
            body: None,
            expect: [401, 403, 403, 200, 403, 403, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/analytics/components",
            target: "/v1/analytics/components?course=fractions",
            body: None,
            expect: [401, 403, 403, 200, 403, 403, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/courses/{course}/priorities",
            target: "/v1/courses/fractions/priorities",
            body: None,
            expect: [401, 403, 403, 200, 403, 403, 403, 200],
        },
        Row {
            method: "PUT",
            path: "/v1/courses/{course}/priorities",
            target: "/v1/courses/fractions/priorities",
            body: Some(priorities),
            expect: [401, 403, 403, 200, 403, 403, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/skills/{skill}/model",
            target: "/v1/skills/fractions.divide/model",
            body: None,
            expect: [401, 403, 403, 200, 403, 403, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/components/{id}",
            target: "/v1/components/fractions-divide-ex-1",
            body: None,
            expect: [401, 200, 200, 200, 200, 200, 200, 200],
        },
        Row {
            method: "POST",
            path: "/v1/components/{id}/items/{item}/hint",
            target: "/v1/components/fractions-divide-ex-1/items/q1/hint",
            body: Some(json!({"number": 1, "learner": "alice"})),
            expect: [401, 200, 403, 403, 403, 200, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/learners/{id}/lesson",
            target: "/v1/learners/alice/lesson?course=fractions",
            body: None,
            expect: [401, 200, 403, 403, 403, 200, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/learners/{id}/recommendations",
            target: "/v1/learners/alice/recommendations",
            body: None,
            expect: [401, 200, 403, 403, 403, 200, 200, 200],
        },
        Row {
            method: "POST",
            path: "/v1/learners/{id}/recommendations/{rec}/feedback",
            target: "/v1/learners/alice/recommendations/fractions.meaning/feedback",
            body: Some(json!({"feedback": "helpful"})),
            expect: [401, 200, 403, 403, 403, 403, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/learners/{id}/skills/{skill}/evidence",
            target: "/v1/learners/alice/skills/fractions.divide/evidence",
            body: None,
            expect: [401, 200, 403, 403, 403, 200, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/sessions/{id}",
            target: "/v1/sessions/{session}?learner=alice",
            body: None,
            expect: [401, 200, 403, 403, 403, 403, 403, 200],
        },
        Row {
            method: "GET",
            path: "/v1/search",
            target: "/v1/search?q=dividing%20fractions",
            body: None,
            expect: [401, 200, 200, 200, 200, 200, 200, 200],
        },
        Row { method: "GET", path: "/", target: "/", body: None, expect: [200, 200, 200, 200, 200, 200, 200, 200] },
        Row { method: "GET", path: "/me", target: "/me", body: None, expect: [200, 200, 200, 200, 200, 200, 200, 200] },
        Row {
            method: "GET",
            path: "/components/{id}",
            target: "/components/fractions-divide-ex-1",
            body: None,
            expect: [200, 200, 200, 200, 200, 200, 200, 200],
        },
        Row {
            method: "GET",
            path: "/widget.js",
            target: "/widget.js",
            body: None,
            expect: [200, 200, 200, 200, 200, 200, 200, 200],
        },
        Row {
            method: "GET",
            path: "/educator",
            target: "/educator",
            body: None,
            expect: [200, 200, 200, 200, 200, 200, 200, 200],
        },
        Row {
            method: "GET",
            path: "/assets/{file}",
            target: "/assets/educator.js",
            body: None,
            expect: [200, 200, 200, 200, 200, 200, 200, 200],
        },
        // last: it erases alice (erasing twice is fine)
        Row {
            method: "DELETE",
            path: "/v1/learners/{id}",
            target: "/v1/learners/alice",
            body: None,
            expect: [401, 200, 403, 403, 403, 403, 403, 200],
        },
    ]
}

/// Three wrong answers of `learner` on a fractions exercise (posted by an admin): the flag they
/// raise.
async fn raise_flag(app: &App, learner: &str) -> String {
    let wrong: Vec<Value> = (1..=3)
        .map(|i| {
            json!({"id": format!("w{i}"), "actor": learner, "verb": "answered", "object": {"component": PAGE, "item": "q1"},
                   "result": {"success": false, "response": "3/8"}, "timestamp": format!("2026-11-20T08:0{i}:00Z")})
        })
        .collect();
    let admin = bearer_of("admin");
    let (status, body) = call(app, "POST", "/v1/events", Some(&json!(wrong)), admin.as_deref()).await;
    assert_eq!(status, 200, "{body}");
    let (status, page) = call(app, "GET", "/v1/flags?course=fractions", None, admin.as_deref()).await;
    assert_eq!(status, 200, "{page}");
    page["flags"].as_array().unwrap().iter().find(|f| f["learner"] == learner).expect("a flag")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn every_role_on_every_route_gets_what_it_may() {
    let table = table();
    let listed: BTreeSet<(&str, &str)> = table.iter().map(|r| (r.method, r.path)).collect();
    let routes: BTreeSet<(&str, &str)> = tutor::api::ROUTES.iter().copied().collect();
    assert_eq!(listed, routes, "the access table must name every route of tutor::api::ROUTES, and only those");
    let documented: BTreeSet<(&str, &str)> = tutor::api::documented_operations().into_iter().collect();
    assert_eq!(documented, routes, "/openapi.json must document every route, and only those");

    let app = secured_app(|_| {}).await;
    let flag = raise_flag(&app, "alice").await;
    let chat = json!({"component_id": PAGE, "message": "how do I divide fractions?"});
    let (status, turn) = call(&app, "POST", "/v1/tutor/chat", Some(&chat), bearer_of("alice").as_deref()).await;
    assert_eq!(status, 200, "{turn}");
    let session = turn["session_id"].as_str().unwrap().to_owned();
    let mut failures = Vec::new();
    for row in &table {
        let target = row.target.replace("{flag}", &flag).replace("{session}", &session);
        for (i, who) in CALLERS.iter().enumerate() {
            let (status, body) = call(&app, row.method, &target, row.body.as_ref(), bearer_of(who).as_deref()).await;
            if status != row.expect[i] {
                failures
                    .push(format!("{} {target} as {who}: {status}, expected {}: {body}", row.method, row.expect[i]));
            }
            if status >= 400 {
                assert!(body["error"]["code"].is_string() && body["error"]["request_id"].is_string(), "{body}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_service_sees_only_its_courses_skills_and_an_unknown_route_is_401_then_404() {
    let app = secured_app(|_| {}).await;
    let answers = json!([
        {"id": "f1", "actor": "alice", "verb": "answered", "object": {"component": PAGE, "item": "q1"},
         "result": {"success": true}, "timestamp": "2026-11-20T08:00:00Z"},
        {"id": "s1", "actor": "alice", "verb": "answered", "object": {"component": "security-data-handling-ex-1", "item": "q1"},
         "result": {"success": true}, "timestamp": "2026-11-20T08:01:00Z"},
    ]);
    let (status, body) = call(&app, "POST", "/v1/events", Some(&answers), bearer_of("alice").as_deref()).await;
    assert_eq!(status, 200, "{body}");
    let all = call(&app, "GET", "/v1/learners/alice/passport", None, bearer_of("admin").as_deref()).await.1;
    let scoped = call(&app, "GET", "/v1/learners/alice/passport", None, bearer_of("service_other").as_deref()).await.1;
    let courses = |p: &Value| -> BTreeSet<String> {
        p["skills"].as_array().unwrap().iter().map(|s| s["course"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(courses(&all), BTreeSet::from(["fractions".to_owned(), "security".to_owned()]));
    assert_eq!(courses(&scoped), BTreeSet::from(["security".to_owned()]));
    assert_eq!(scoped["format_preference"]["formats"], json!([]), "engagement counted over every course: {scoped}");
    // alice sees who read her data: the admin and the service, not herself
    call(&app, "GET", "/v1/learners/alice/passport", None, bearer_of("alice").as_deref()).await;
    let audit = call(&app, "GET", "/v1/learners/alice/audit", None, bearer_of("alice").as_deref()).await.1;
    let readers: Vec<&str> = audit["reads"].as_array().unwrap().iter().map(|r| r["reader"].as_str().unwrap()).collect();
    assert_eq!(readers, ["service:lms-2", "admin:root"], "{audit}");
    // erased with her
    let erased = call(&app, "DELETE", "/v1/learners/alice", None, bearer_of("alice").as_deref()).await.1;
    assert_eq!(erased["erased"]["audit_reads"], 2, "{erased}");

    assert_eq!(call(&app, "GET", "/v1/nothing-here", None, None).await.0, 401);
    let (status, body) = call(&app, "GET", "/v1/nothing-here", None, bearer_of("alice").as_deref()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn a_learner_token_chats_as_its_learner_and_reaches_no_other_session() {
    let app = secured_app(|_| {}).await;
    let alice = bearer_of("alice");
    let bob = bearer_of("bob");
    // no learner_id in the body: the token's subject
    let (status, first) =
        call(&app, "POST", "/v1/tutor/chat", Some(&json!({"message": "what is a fraction?"})), alice.as_deref()).await;
    assert_eq!(status, 200, "{first}");
    let session = first["session_id"].as_str().unwrap();
    // bob cannot continue alice's session: it is not one of his
    let (status, body) =
        call(&app, "POST", "/v1/tutor/chat", Some(&json!({"session_id": session, "message": "hi"})), bob.as_deref())
            .await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_session")), "{body}");
    let (status, _) = call(
        &app,
        "POST",
        "/v1/tutor/chat",
        Some(&json!({"session_id": session, "message": "and 1/2?"})),
        alice.as_deref(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_learner_posting_for_another_actor_is_refused_and_nothing_is_stored() {
    let app = secured_app(|_| {}).await;
    let batch = json!([
        {"id": "ok-1", "actor": "alice", "verb": "viewed", "object": {"component": PAGE}, "timestamp": "2026-11-20T08:00:00Z"},
        {"id": "bad-1", "actor": "bob", "verb": "answered", "object": {"component": PAGE, "item": "q1"},
         "result": {"success": false}, "timestamp": "2026-11-20T08:01:00Z"},
    ]);
    let (status, body) = call(&app, "POST", "/v1/events", Some(&batch), bearer_of("alice").as_deref()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("not_your_learner")), "{body}");
    for who in ["alice", "bob"] {
        let p = call(&app, "GET", &format!("/v1/learners/{who}/passport"), None, bearer_of("admin").as_deref()).await.1;
        let evidence: u64 = p["skills"].as_array().unwrap().iter().map(|s| s["evidence"].as_u64().unwrap()).sum();
        assert_eq!(evidence, 0, "{who}: {p}");
    }
    // a service posts for any learner of its course, not of another course
    let (status, _) = call(&app, "POST", "/v1/events", Some(&batch), bearer_of("service").as_deref()).await;
    assert_eq!(status, 200);
    let (status, body) = call(&app, "POST", "/v1/events", Some(&batch), bearer_of("service_other").as_deref()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("course_out_of_scope")));
}

/// A token with these claims, signed HS256 with `secret`.
fn signed(claims: &Value, secret: &str, alg: Algorithm) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes()).unwrap()).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Base64url without padding.
fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn refused_tokens_are_401_json() {
    let app = secured_app(|c| {
        c.auth.issuer = Some("https://id.example.org".into());
        c.auth.audience = Some("tutor".into());
    })
    .await;
    let good =
        json!({"sub": "alice", "role": "learner", "exp": now() + 600, "iss": "https://id.example.org", "aud": "tutor"});
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let valid = signed(&good, SECRET, Algorithm::HS256);
    let (status, _) = call(&app, "GET", "/v1/learners/alice/passport", None, Some(&valid)).await;
    assert_eq!(status, 200, "the well-formed token is accepted");

    let mut tampered = valid.clone();
    let parts: Vec<&str> = valid.split('.').collect();
    let forged = b64(serde_json::to_string(&with(&|c| c["sub"] = json!("bob"))).unwrap().as_bytes());
    tampered = tampered.replacen(parts[1], &forged, 1);
    let unsigned =
        format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(serde_json::to_string(&good).unwrap().as_bytes()));
    let cases: Vec<(&str, String)> = vec![
        ("expired", signed(&with(&|c| c["exp"] = json!(now() - 120)), SECRET, Algorithm::HS256)),
        ("not yet valid", signed(&with(&|c| c["nbf"] = json!(now() + 600)), SECRET, Algorithm::HS256)),
        ("tampered", tampered),
        ("another secret", signed(&good, "another-secret-another-secret-xx", Algorithm::HS256)),
        ("wrong algorithm", signed(&good, SECRET, Algorithm::HS512)),
        ("alg none", unsigned),
        ("wrong issuer", signed(&with(&|c| c["iss"] = json!("https://evil.example")), SECRET, Algorithm::HS256)),
        ("no issuer", signed(&with(&|c| drop(c.as_object_mut().unwrap().remove("iss"))), SECRET, Algorithm::HS256)),
        ("wrong audience", signed(&with(&|c| c["aud"] = json!("another-service")), SECRET, Algorithm::HS256)),
        ("no expiry", signed(&with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))), SECRET, Algorithm::HS256)),
        ("unknown role", signed(&with(&|c| c["role"] = json!("superuser")), SECRET, Algorithm::HS256)),
        ("not a JWT", "hello".into()),
    ];
    for (name, t) in &cases {
        let (status, body) = call(&app, "GET", "/v1/learners/alice/passport", None, Some(t)).await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{name}: {body}");
    }
    // a Basic header is not a bearer token
    let r = reqwest::Client::new()
        .get(format!("{}/v1/learners/alice/passport", app.base))
        .header("authorization", "Basic YWxpY2U6cHc=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
}

// Two P-256 keys (PKCS#8 DER) and their public coordinates, made with openssl for this test.
const KEY_A: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJSfHaz6UIBBVXk7nc1p2O3FD5I1sGixHvNK15TOIx5ShRANCAASB+bZXI8eI329m/KkqjO/7uxa5qrMiv8/LTVpOuKDSPMqRY7awZ/1Sj967nvKgQ+lsvSQhuaVbGscq9AroK5Fb";
const KEY_A_XY: (&str, &str) =
    ("gfm2VyPHiN9vZvypKozv-7sWuaqzIr_Py01aTrig0jw", "ypFjtrBn_VKP3rue8qBD6Wy9JCG5pVsaxyr0CugrkVs");
const KEY_B: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggsBixEP7Px7bc59CcmSszvonFDLEDMXu8eit/jAULXahRANCAARDJHzoHmTsj7HOXyoICX1+/PXKW8kPBTKa2wId7PAjDOXOeCHATXxXgOtEjV5G2Xobc6gXKYlKftwbeWU1v7WM";
const KEY_B_XY: (&str, &str) =
    ("QyR86B5k7I-xzl8qCAl9fvz1ylvJDwUymtsCHezwIww", "5c54IcBNfFeA60SNXkbZehtzqBcpiUp-3Bt5ZTW_tYw");

fn es256(kid: &str, der_b64: &str, claims: &Value) -> String {
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD.decode(der_b64).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&der)).unwrap()
}

fn jwk(kid: &str, (x, y): (&str, &str)) -> Value {
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig", "x": x, "y": y})
}

#[tokio::test]
async fn a_jwks_verifies_es256_tokens_follows_a_key_rotation_and_refuses_algorithm_confusion() {
    let idp = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [jwk("a", KEY_A_XY)]})))
        .up_to_n_times(1)
        .mount(&idp)
        .await;
    let url = format!("{}/jwks.json", idp.uri());
    let app = spawn_sample_app(|c| c.auth = AuthConfig { jwks_url: Some(url), ..AuthConfig::default() }).await;
    let claims = json!({"sub": "alice", "role": "learner", "exp": now() + 600});
    let (status, body) =
        call(&app, "GET", "/v1/learners/alice/passport", None, Some(&es256("a", KEY_A, &claims))).await;
    assert_eq!(status, 200, "{body}");
    // signed with the right key but named as another: unknown until the set has it
    let (status, _) = call(&app, "GET", "/v1/learners/alice/passport", None, Some(&es256("b", KEY_A, &claims))).await;
    assert_eq!(status, 401);
    // the provider rotates to key b; a token naming b makes the service fetch the set again
    Mock::given(method("GET"))
        .and(path("/jwks.json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"keys": [jwk("a", KEY_A_XY), jwk("b", KEY_B_XY)]})),
        )
        .mount(&idp)
        .await;
    tokio::time::sleep(tutor::auth::Jwks::MIN_REFETCH + Duration::from_millis(100)).await;
    let (status, body) =
        call(&app, "GET", "/v1/learners/alice/passport", None, Some(&es256("b", KEY_B, &claims))).await;
    assert_eq!(status, 200, "{body}");
    // HS256 "signed" with the public key's text: a JWKS never verifies HMAC
    let confused = signed(&claims, &jwk("a", KEY_A_XY).to_string(), Algorithm::HS256);
    let (status, body) = call(&app, "GET", "/v1/learners/alice/passport", None, Some(&confused)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let fetches = idp.received_requests().await.unwrap().len();
    assert_eq!(fetches, 2, "one fetch at first use, one for the new key id");
}

#[tokio::test]
async fn without_auth_the_service_refuses_to_listen_beyond_loopback_and_says_dev_mode() {
    let cfg = Config { host: "0.0.0.0".into(), port: 0, ..Config::default() };
    let err = tutor::api::serve(cfg, async {}).await.err().expect("refused");
    assert!(err.to_string().contains("TUTOR_JWT_SECRET"), "{err}");
    let app = spawn_sample_app(|_| {}).await;
    let ready = wait_ready(&app.base).await;
    assert!(ready["auth"].as_str().unwrap().starts_with("off (dev mode"), "{ready}");
    // and everything answers as before, without a token
    let (status, _) = get(&format!("{}/v1/learners/alice/passport", app.base)).await;
    assert_eq!(status, 200);
    let secured = secured_app(|_| {}).await;
    assert_eq!(wait_ready(&secured.base).await["auth"], "jwt (HS256)");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_a_metrics_listener_needs_no_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = secured_app(|c| c.metrics_addr = Some(format!("127.0.0.1:{port}"))).await;
    let alice = bearer_of("alice");
    call(&app, "GET", "/v1/learners/alice/passport", None, alice.as_deref()).await;
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(
                "tutor_http_requests_total{method=\"GET\",route=\"/v1/learners/{id}/passport\",status=\"200\"}",
            )
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with(" 1") || !line.ends_with(" 0"), "{line}");
    assert!(!text.contains("alice"), "a learner id in the metrics");
    assert!(text.contains("# TYPE tutor_llm_call_duration_seconds histogram"));
    assert!(text.contains("tutor_index_ready 1"), "{text}");
}

#[tokio::test]
async fn a_service_chatting_on_its_page_sees_nothing_of_the_learners_other_courses() {
    // the model asks for the learner's mastery of a skill of another course
    let server = llm(vec![
        tool_calls(&[(
            "call_1",
            "lookup_mastery",
            r#"{"skills": ["security.phishing-recognize", "fractions.divide"]}"#,
        )]),
        text(&["Let's look at dividing [fractions-divide-explain-intro]."]),
    ])
    .await;
    let app = secured_app(|c| {
        use_llm(c, &server);
    })
    .await;
    let answers = json!([{"id": "s1", "actor": "alice", "verb": "answered",
        "object": {"component": "security-phishing-recognize-ex-1", "item": "q1"}, "result": {"success": false},
        "timestamp": "2026-11-20T08:01:00Z"}]);
    assert_eq!(call(&app, "POST", "/v1/events", Some(&answers), bearer_of("admin").as_deref()).await.0, 200);
    let body = json!({"learner_id": "alice", "component_id": PAGE, "message": "why do we flip the second fraction when dividing?"});
    let (status, reply) = call(&app, "POST", "/v1/tutor/chat", Some(&body), bearer_of("service").as_deref()).await;
    assert_eq!(status, 200, "{reply}");
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2, "the model was asked, and its tool call answered");
    for r in sent {
        for m in r["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "tool") {
            assert!(!m["content"].as_str().unwrap_or_default().contains("security."), "another course's mastery: {m}");
        }
    }
}
