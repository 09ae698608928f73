//! The Qdrant server backend as an operator runs it: faults (the server unreachable at start,
//! gone during a session) on a Qdrant process of the test's own, and two `tutor serve`
//! replicas on one PostgreSQL and one Qdrant server behaving as one service.
//!
//! The fault tests start `../shared/bin/qdrant` (or `TUTOR_TEST_QDRANT_BIN`); the replica test
//! needs `TUTOR_TEST_QDRANT_URL` and `TUTOR_TEST_DATABASE_URL`. Each says it was skipped when
//! what it needs is absent (and fails instead under `TUTOR_REQUIRE_QDRANT`).

#[macro_use]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tutor::retrieval::IndexBackend;

/// `GET {base}/readyz`: its status and body.
async fn readyz(base: &str) -> (u16, Value) {
    match reqwest::get(format!("{base}/readyz")).await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or_default()),
        Err(_) => (0, Value::Null),
    }
}

#[tokio::test]
async fn a_qdrant_server_unreachable_at_start_is_not_ready_saying_so_then_recovers() {
    let Some(bin) = qdrant_binary("a_qdrant_server_unreachable_at_start_is_not_ready_saying_so_then_recovers") else {
        return;
    };
    let grpc = free_port();
    let url = format!("http://127.0.0.1:{grpc}");
    let app = spawn_app(|c| {
        c.content_dir = sample_content();
        c.embed.model_id = Some("none".into());
        c.qdrant.url = Some(url.clone());
        c.qdrant.connect_timeout_secs = 1;
    })
    .await;

    // not ready, and saying why, for as long as the server is away
    let started = Instant::now();
    let body = loop {
        let (status, body) = readyz(&app.base).await;
        assert_eq!(status, 503, "{body}");
        if body.to_string().contains("unreachable") {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never said why: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(&url), "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(readyz(&app.base).await.0, 503);

    // the server comes up: the service ingests and serves by itself
    let _qdrant = QdrantProcess::start(&bin, grpc);
    let ready = wait_ready(&app.base).await;
    assert!(ready["index"]["chunks"].as_u64().unwrap() > 100, "{ready}");
    assert!(ready.get("warning").is_none(), "the outage is still reported: {ready}");
    let reply = chat(&app, json!({"learner_id": "ada", "message": "how do I divide fractions?"})).await;
    assert!(!reply["citations"].as_array().unwrap().is_empty(), "{reply}");
}

#[tokio::test]
async fn a_qdrant_server_gone_mid_session_degrades_the_answer_and_says_so() {
    let Some(bin) = qdrant_binary("a_qdrant_server_gone_mid_session_degrades_the_answer_and_says_so") else {
        return;
    };
    let qdrant = QdrantProcess::start(&bin, free_port());
    let url = qdrant.url();
    let app = spawn_app(|c| {
        c.content_dir = sample_content();
        c.embed.model_id = Some("none".into());
        c.qdrant.url = Some(url);
        c.qdrant.timeout_secs = 2;
        c.qdrant.connect_timeout_secs = 1;
    })
    .await;
    wait_ready(&app.base).await;
    let page = "fractions-divide-explain-intro";
    let first = chat(
        &app,
        json!({"learner_id": "ada", "component_id": page, "message": "why do we flip the second fraction?"}),
    )
    .await;
    assert!(!first["citations"].as_array().unwrap().is_empty(), "{first}");

    drop(qdrant);

    // on a page: the page's own material, saying search is down
    let started = Instant::now();
    let on_page = chat(
        &app,
        json!({"learner_id": "ada", "session_id": first["session_id"], "component_id": page,
               "message": "can you explain dividing fractions another way?"}),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(30), "the turn waited on the dead server");
    let text = on_page["answer"].as_str().unwrap();
    assert!(text.contains("can't search the course material just now"), "{on_page:#}");
    assert!(!on_page["citations"].as_array().unwrap().is_empty(), "the page's material is still cited: {on_page:#}");
    // no page: says so, and declines nothing it cannot judge
    let off_page = chat(&app, json!({"learner_id": "bo", "message": "what is phishing?"})).await;
    let text = off_page["answer"].as_str().unwrap();
    assert!(text.contains("can't search the course material just now"), "{off_page:#}");
    assert!(!text.contains("does not cover"), "{off_page:#}");
    // the search route: a JSON error with a status that says "try later", not a 500
    let r = reqwest::get(format!("{}/v1/search?q=fractions", app.base)).await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("unreachable"), "{body}");
}

#[tokio::test]
async fn with_the_qdrant_server_gone_the_model_is_told_search_is_unavailable_and_the_turn_succeeds() {
    let Some(bin) = qdrant_binary("with_the_qdrant_server_gone_the_model_is_told_search_is_unavailable") else {
        return;
    };
    let qdrant = QdrantProcess::start(&bin, free_port());
    let url = qdrant.url();
    let reply =
        "I can't search the course just now; from this page: dividing by a fraction multiplies by its reciprocal.";
    let model = llm((0..6).map(|_| text(&[reply])).collect()).await;
    let app = spawn_app(|c| {
        c.content_dir = sample_content();
        c.embed.model_id = Some("none".into());
        c.qdrant.url = Some(url);
        c.qdrant.timeout_secs = 2;
        c.qdrant.connect_timeout_secs = 1;
        use_llm(c, &model);
    })
    .await;
    wait_ready(&app.base).await;
    drop(qdrant);

    let events = chat_sse(
        &app,
        json!({"learner_id": "ada", "component_id": "fractions-divide-explain-intro",
               "message": "can you explain dividing fractions another way?"}),
    )
    .await;
    assert!(events.iter().all(|(name, _)| name != "error"), "{events:#?}");
    done(&events);
    assert!(!deltas(&events).trim().is_empty(), "{events:#?}");
    let sent = requests(&model).await;
    assert!(!sent.is_empty(), "the model was not asked");
    assert!(
        sent[0].to_string().contains("the course search is unavailable right now"),
        "the model was not told: {}",
        sent[0]
    );
}

// ---- two replicas on one PostgreSQL and one Qdrant server ----

/// A `tutor serve` process; killed when dropped.
struct Replica {
    child: Child,
    base: String,
    _data: tempfile::TempDir,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tutor_cmd(data: &Path, content: &Path, db: &str, server: &ServerIndex) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tutor"));
    cmd.arg("--data-dir")
        .arg(data)
        .env("TUTOR_CONTENT_DIR", content)
        .env("TUTOR_DATABASE_URL", db)
        .env("TUTOR_EMBED_MODEL_ID", "none")
        .env("TUTOR_DEMO", "false")
        .env_remove("TUTOR_EMBED_BASE_URL")
        .env_remove("TUTOR_LLM_BASE_URL")
        .env("RUST_LOG", "info,qdrant_edge=error");
    for (k, v) in server.env() {
        cmd.env(k, v);
    }
    cmd
}

fn replica(content: &Path, db: &str, server: &ServerIndex) -> Replica {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(data.path().join("serve.log")).unwrap();
    let child = tutor_cmd(data.path(), content, db, server)
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Replica { child, base: format!("http://127.0.0.1:{port}"), _data: data }
}

#[tokio::test]
async fn two_replicas_on_one_postgresql_and_one_qdrant_behave_as_one_service() {
    let test = "two_replicas_on_one_postgresql_and_one_qdrant_behave_as_one_service";
    let Some(server) = ServerIndex::fresh(test) else {
        return;
    };
    let Some(db) = fresh_postgres(test).await else {
        return;
    };
    let content = tempfile::tempdir().unwrap();
    copy_tree(&sample_content(), content.path());

    // both start at once: one ingests, the other waits for it and follows
    let (a, b) = (replica(content.path(), &db, &server), replica(content.path(), &db, &server));
    let (ra, rb) = (wait_ready(&a.base).await, wait_ready(&b.base).await);
    assert_eq!(ra["index"]["generation"], rb["index"]["generation"], "{ra} {rb}");
    assert_eq!((ra["index"]["backend"].as_str(), rb["index"]["backend"].as_str()), (Some("qdrant"), Some("qdrant")));
    assert_eq!(server.index().generations().unwrap().len(), 1, "both replicas built a generation");

    // a learner's session continues on either
    let first = post_json(
        &format!("{}/v1/tutor/chat", a.base),
        &json!({"learner_id": "ada", "component_id": "fractions-divide-explain-intro", "message": "why do we flip the second fraction?"}),
    )
    .await;
    assert_eq!(first.0, 200, "{}", first.1);
    let sid = first.1["session_id"].as_str().unwrap().to_owned();
    let second = post_json(
        &format!("{}/v1/tutor/chat", b.base),
        &json!({"learner_id": "ada", "session_id": sid, "component_id": "fractions-divide-explain-intro", "message": "I still don't get it"}),
    )
    .await;
    assert_eq!(second.0, 200, "{}", second.1);
    assert_eq!(second.1["session_id"], sid.as_str());
    for base in [&a.base, &b.base] {
        let (status, s) = get(&format!("{base}/v1/sessions/{sid}?learner=ada")).await;
        assert_eq!(status, 200, "{s}");
        assert_eq!(s["messages"].as_array().unwrap().len(), 4, "{s:#}");
    }

    // the same answers posted to both replicas at once: one flag, its evidence not doubled
    let wrong: Value = (0..4)
        .map(|i| {
            json!({"id": format!("same-{i}"), "actor": "cy", "verb": "answered",
                   "object": {"component": "fractions-divide-ex-1", "item": "q1"},
                   "result": {"success": false, "response": "6/8"},
                   "timestamp": format!("2026-11-20T08:00:0{i}Z")})
        })
        .collect();
    let (to_a, to_b) = (format!("{}/v1/events", a.base), format!("{}/v1/events", b.base));
    let (x, y) = tokio::join!(post_json(&to_a, &wrong), post_json(&to_b, &wrong));
    assert_eq!((x.0, y.0), (200, 200), "{} {}", x.1, y.1);
    for base in [&a.base, &b.base] {
        let (status, flags) = get(&format!("{base}/v1/flags?course=fractions")).await;
        assert_eq!(status, 200, "{flags}");
        let cy: Vec<&Value> = flags["flags"].as_array().unwrap().iter().filter(|f| f["learner"] == "cy").collect();
        assert_eq!(cy.len(), 1, "{flags:#}");
        // one streak of four wrong answers: one piece of evidence, not one per replica
        assert_eq!(cy[0]["evidence"].as_array().unwrap().len(), 1, "{:#}", cy[0]);
    }

    // an operator's ingest goes live on both within seconds
    std::fs::write(
        content.path().join("fractions/zz-replica-note.md"),
        explanation(
            "fractions-replica-note",
            "fractions.divide",
            "developing",
            "Dividing by a unit fraction",
            "Dividing by one quarter asks how many quarters fit: eight divided by one quarter is thirty-two quokkas.",
        ),
    )
    .unwrap();
    let ops = tempfile::tempdir().unwrap();
    let out = tutor_cmd(ops.path(), content.path(), &db, &server).arg("ingest").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let newest = server.index().current_generation().unwrap().unwrap();
    let started = Instant::now();
    for r in [&a, &b] {
        loop {
            let (_, body) = readyz(&r.base).await;
            if body["index"]["generation"].as_str() == Some(newest.as_str()) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{} did not follow the ingest: {body}", r.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, hits) = get(&format!("{}/v1/search?q=quokkas&k=1", r.base)).await;
        assert_eq!(status, 200, "{hits}");
        assert_eq!(hits[0]["component_id"], "fractions-replica-note", "{hits}");
    }
    println!("both replicas served the new generation {:.1} s after the ingest", started.elapsed().as_secs_f64());
}
