//! The HTTP service on a real socket: health, readiness while the index is prepared at start,
//! JSON errors.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn serve_ingests_the_content_at_start_and_becomes_ready() {
    let content = tree(&[
        ("mini/skills.yaml", SKILLS.as_bytes()),
        ("mini/a.md", explanation("mini-a", "mini.a", "intro", "A", "All about A.").as_bytes()),
        ("mini/b.md", explanation("mini-b", "mini.b", "advanced", "B", "All about B.").as_bytes()),
    ]);
    let dir = content.path().to_owned();
    let app = spawn_app(|c| c.content_dir = dir).await;

    let (status, health) = get(&format!("{}/healthz", app.base)).await;
    let ready = wait_ready(&app.base).await;

    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["index"]["components"], 2);
    assert_eq!(ready["index"]["dense"], false);
    assert_eq!(ready["index"]["backend"], "embedded");
}

#[tokio::test]
async fn invalid_content_and_no_index_is_not_ready_with_a_reason() {
    let content = tree(&[
        ("mini/skills.yaml", SKILLS.as_bytes()),
        ("mini/a.md", explanation("mini-a", "mini.zzz", "intro", "A", "All about A.").as_bytes()),
    ]);
    let dir = content.path().to_owned();
    let app = spawn_app(|c| c.content_dir = dir).await;

    let started = Instant::now();
    let body = loop {
        let (status, body) = get(&format!("{}/readyz", app.base)).await;
        assert_eq!(status, 503);
        if body["error"]["message"].as_str().is_some_and(|m| m.contains("problem")) {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(body["error"]["message"].as_str().unwrap().contains("1 problem(s)"), "{body}");
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let app = spawn_app(|c| c.content_dir = "/nonexistent".into()).await;
    let (status, body) = get(&format!("{}/v1/nothing-here", app.base)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_running_server_picks_up_an_ingest_made_by_another_process() {
    let content = tree(&[
        ("mini/skills.yaml", SKILLS.as_bytes()),
        ("mini/a.md", explanation("mini-a", "mini.a", "intro", "A", "All about A.").as_bytes()),
    ]);
    let data = tempfile::tempdir().unwrap();
    let dir = content.path().to_owned();
    let data_dir = data.path().to_owned();
    let app = spawn_app(|c| {
        c.content_dir = dir;
        c.data_dir = data_dir;
    })
    .await;
    let first = wait_ready(&app.base).await;
    write_files(
        content.path(),
        &[("mini/b.md", explanation("mini-b", "mini.b", "intro", "B", "All about B.").as_bytes())],
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tutor"))
        .arg("--data-dir")
        .arg(data.path())
        .arg("ingest")
        .arg(content.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let started = Instant::now();
    loop {
        let ready = wait_ready(&app.base).await;
        if ready["index"]["generation"] != first["index"]["generation"] {
            assert_eq!(ready["index"]["components"], 2);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still serving {first}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
