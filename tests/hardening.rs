//! The service under abuse and operation: every error JSON with a request id (the framework's
//! own rejections too), JSON bodies only, slow clients cut off, rate limits and the answer
//! oracle answered 429 with `Retry-After`, chat turns and LLM tokens per learner bounded, CORS
//! for listed origins only, readiness that never says ready while the learner routes cannot
//! serve, a shutdown that lets an open stream finish, and a CLI quiet on a closed pipe.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tutor::auth::{Role, TokenRequest, mint};
use tutor::config::AuthConfig;

const SECRET: &str = "test-secret-test-secret-test-secret";

fn learner_token(sub: &str) -> String {
    let auth = AuthConfig { jwt_secret: Some(SECRET.into()), ..AuthConfig::default() };
    let req = TokenRequest {
        role: Role::Learner,
        sub: sub.into(),
        courses: vec![],
        group: None,
        ttl: Duration::from_secs(600),
    };
    mint(&auth, &req).unwrap()
}

/// Sends raw bytes on a fresh connection and returns the whole reply as text.
fn raw(base: &str, request: &[u8]) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn json_body(reply: &str) -> Value {
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {reply}"))
}

#[tokio::test]
async fn every_error_is_json_with_the_request_id_including_the_frameworks_own() {
    let app = spawn_sample_app(|_| {}).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", app.base);
    let big = "x".repeat(100 * 1024);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("wrong method", client.put(url("/v1/events")), 405),
        ("bad utf-8 in a path id", client.get(url("/v1/learners/%FF/passport")), 400),
        ("duplicated query field", client.get(url("/v1/learners/ada/plan?component=a&component=b")), 400),
        (
            "chat body over the limit",
            client.post(url("/v1/tutor/chat")).json(&json!({"learner_id": "ada", "message": big})),
            413,
        ),
        ("unknown route", client.get(url("/nope")), 404),
        ("events as text/plain", client.post(url("/v1/events")).header("content-type", "text/plain").body("[]"), 415),
        ("chat without a content type", client.post(url("/v1/tutor/chat")).body("{}"), 415),
    ];
    for (name, req, status) in cases {
        let r = req.header("x-request-id", format!("test-{}", name.replace(' ', "-"))).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{name}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"), "{name}");
        assert_eq!(r.headers()["x-request-id"], format!("test-{}", name.replace(' ', "-")).as_str(), "{name}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{name}: {body}");
        assert_eq!(body["error"]["request_id"], format!("test-{}", name.replace(' ', "-")), "{name}");
    }
    // a request without an id gets a fresh one
    let r = client.get(url("/nope")).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16, "{id}");
    // text/plain events are refused before anything is stored
    let (_, p) = get(&url("/v1/learners/ada/passport")).await;
    assert!(p["skills"].as_array().unwrap().iter().all(|s| s["evidence"] == 0));
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_or_body_is_cut_off() {
    let app = spawn_sample_app(|c| {
        c.limits.header_timeout_secs = 1;
        c.limits.body_timeout_secs = 1;
    })
    .await;
    let base = app.base.clone();
    let started = Instant::now();
    let reply = tokio::task::spawn_blocking(move || raw(&base, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "held for {:?}", started.elapsed());
    assert!(!reply.contains("200 OK"), "{reply}");
    // a connection that sends nothing at all is closed too
    let base = app.base.clone();
    let started = Instant::now();
    let reply = tokio::task::spawn_blocking(move || raw(&base, b"")).await.unwrap();
    assert!(reply.is_empty() && started.elapsed() < Duration::from_secs(10), "{reply} after {:?}", started.elapsed());
    // a body announced and never sent
    let base = app.base.clone();
    let reply = tokio::task::spawn_blocking(move || {
        raw(
            &base,
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\nConnection: close\r\n\r\n[",
        )
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 400") || reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(json_body(&reply)["error"]["code"].is_string(), "{reply}");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let app = spawn_sample_app(|c| {
        c.auth.jwt_secret = Some(SECRET.into());
        c.limits.requests_per_minute = 3;
    })
    .await;
    let token = learner_token("ada");
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let r = client.get(format!("{}/v1/learners/ada/passport", app.base)).bearer_auth(&token).send().await.unwrap();
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let r = last.unwrap();
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // another learner has a bucket of their own
    let other =
        client.get(format!("{}/v1/learners/bo/passport", app.base)).bearer_auth(learner_token("bo")).send().await;
    assert_eq!(other.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn answers_to_one_item_are_limited_per_hour_so_the_passport_is_no_answer_oracle() {
    let app = spawn_sample_app(|c| {
        c.auth.jwt_secret = Some(SECRET.into());
        c.limits.answers_per_item_per_hour = 3;
    })
    .await;
    let token = learner_token("ada");
    let client = reqwest::Client::new();
    let answer = |n: u32, item: &str| {
        json!({"id": format!("a-{item}-{n}"), "actor": "ada", "verb": "answered",
               "object": {"component": "fractions-divide-ex-1", "item": item},
               "result": {"response": format!("{n}/7")}, "timestamp": "2026-11-20T08:00:00Z"})
    };
    let mut statuses = Vec::new();
    for n in 0..4 {
        let r = client.post(format!("{}/v1/events", app.base)).bearer_auth(&token).json(&answer(n, "q1")).send().await;
        statuses.push(r.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    // another item is not limited by the first
    let r = client.post(format!("{}/v1/events", app.base)).bearer_auth(&token).json(&answer(0, "q2")).send().await;
    assert_eq!(r.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn a_learner_runs_at_most_the_allowed_turns_at_once() {
    // a model that takes 2 s to answer
    let server = llm(vec![
        text(&["Dividing by a fraction multiplies by its reciprocal [fractions-divide-explain-intro]."])
            .set_delay(Duration::from_secs(2)),
    ])
    .await;
    let app = llm_app(&server, |c| c.limits.chat_turns_at_once = 1).await;
    let body = json!({"learner_id": "ada", "component_id": "fractions-divide-explain-intro", "message": "why flip?"});
    let url = format!("{}/v1/tutor/chat", app.base);
    let first = {
        let (url, body) = (url.clone(), body.clone());
        tokio::spawn(async move {
            reqwest::Client::new().post(url).header("accept", "application/json").json(&body).send().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, reply) = post_json(&url, &body).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (429, Some("too_many_turns")), "{reply}");
    assert_eq!(first.await.unwrap().status().as_u16(), 200);
    // the slot is free again
    let (status, _) = post_json(&url, &json!({"learner_id": "bo", "message": "hi"})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_daily_llm_token_budget_stops_model_turns_and_is_erased_with_the_learner() {
    let mut reply = text_chunks(&["Flip the divisor and multiply [fractions-divide-explain-intro]."]);
    reply.push(usage_chunk(900, 100));
    let server = llm(vec![sse(&reply)]).await;
    let app = llm_app(&server, |c| c.limits.llm_tokens_per_day = 1000).await;
    let url = format!("{}/v1/tutor/chat", app.base);
    let body = json!({"learner_id": "ada", "component_id": "fractions-divide-explain-intro", "message": "why flip?"});
    let (status, first) = post_json(&url, &body).await;
    assert_eq!(status, 200, "{first}");
    assert!(
        first["tokens"]["prompt"].as_u64().unwrap() + first["tokens"]["completion"].as_u64().unwrap() >= 1000,
        "{first}"
    );
    let r = reqwest::Client::new().post(&url).header("accept", "application/json").json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait <= 86_400);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "llm_budget_spent", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("00:00 UTC"));
    // another learner still has a budget; erasing ada erases her count
    assert_eq!(post_json(&url, &json!({"learner_id": "bo", "message": "why flip?"})).await.0, 200);
    let erased: Value = reqwest::Client::new()
        .delete(format!("{}/v1/learners/ada", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(erased["erased"]["llm_usage_days"], 1, "{erased}");
    assert_eq!(post_json(&url, &body).await.0, 200);
}

#[tokio::test]
async fn cors_answers_listed_origins_only() {
    let app = spawn_sample_app(|c| c.limits.cors_origins = vec!["https://lessons.example.org".into()]).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{}/v1/tutor/chat", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let ok = preflight("https://lessons.example.org").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://lessons.example.org");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// `tutor serve` as its own process, on `content` and `data`.
fn serve_process(content: &std::path::Path, data: &std::path::Path) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_tutor"))
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--port", &port.to_string()])
        .env("TUTOR_CONTENT_DIR", content)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

fn stop(mut child: std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn broken_content_with_an_older_index_serves_the_content_that_index_was_built_from() {
    let content = tree(&[
        ("mini/skills.yaml", SKILLS.as_bytes()),
        ("mini/a.md", explanation("mini-a", "mini.a", "intro", "A", "All about A.").as_bytes()),
    ]);
    let data = tempfile::tempdir().unwrap();
    let (first, base) = serve_process(content.path(), data.path());
    wait_ready(&base).await;
    stop(first);
    // an author breaks the tree; the service restarts on it
    write_files(
        content.path(),
        &[("mini/a.md", explanation("mini-a", "mini.zzz", "intro", "A", "All about A.").as_bytes())],
    );
    let (again, base) = serve_process(content.path(), data.path());
    let ready = wait_ready(&base).await;
    assert!(ready["warning"].as_str().unwrap().contains("serving the last content that did"), "{ready}");
    let (status, p) = get(&format!("{base}/v1/learners/ada/plan?component=mini-a")).await;
    assert_eq!(status, 200, "{p}");
    stop(again);

    // with no snapshot (an index from an older version), it is not ready, and says why
    std::fs::remove_dir_all(data.path().join("content-snapshots")).unwrap();
    let (third, base) = serve_process(content.path(), data.path());
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 503, "ready while the learner routes cannot serve: {body}");
            if body["error"]["message"].as_str().is_some_and(|m| m.contains("problem")) {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = get(&format!("{base}/v1/learners/ada/passport")).await;
    assert_eq!(status, 503);
    stop(third);
}

#[tokio::test]
async fn shutdown_lets_an_open_stream_finish_and_refuses_new_connections() {
    // a model that streams slowly: the turn is still running when the shutdown comes
    let server = llm(vec![
        text(&["Flip the divisor and multiply [fractions-divide-explain-intro]."])
            .set_delay(Duration::from_millis(1500)),
    ])
    .await;
    let app = llm_app(&server, |_| {}).await;
    let base = app.base.clone();
    let url = format!("{base}/v1/tutor/chat");
    let stream = tokio::spawn(async move {
        let body = json!({"learner_id": "ada", "component_id": "fractions-divide-explain-intro", "message": "why?"});
        reqwest::Client::new().post(url).json(&body).send().await.unwrap().text().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let data = app.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err(), "a new connection after the shutdown began");
    let text = stream.await.unwrap();
    assert!(text.contains("event: done"), "the open stream was cut: {text}");
    drop(data);
}

#[test]
fn the_cli_exits_quietly_when_its_reader_closes_the_pipe() {
    let data = sample_data_dir();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tutor"))
        .arg("--data-dir")
        .arg(data.path())
        // about 100 KB: more than a pipe holds, so the write meets the closed pipe
        .args(["search", "fractions security", "-k", "500", "--json"])
        .env("TUTOR_CONTENT_DIR", sample_content())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // read a few bytes, like `| head -c 10`, then close the pipe
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
