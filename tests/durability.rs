//! Every acknowledged statement survives SIGKILL: `tutor serve` (the real binary) takes
//! concurrent event batches, is killed mid-stream, restarts on the same store, and each batch
//! it answered 200 comes back as all duplicates — on SQLite, and on PostgreSQL when
//! `TUTOR_TEST_DATABASE_URL` is set.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(data: &std::path::Path, port: u16, database_url: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tutor"));
    cmd.arg("--data-dir").arg(data).args(["serve", "--port", &port.to_string()]);
    cmd.env("TUTOR_CONTENT_DIR", sample_content())
        .env("TUTOR_RATE_PER_MINUTE", "1000000")
        .env("TUTOR_RATE_PER_ADDRESS_PER_MINUTE", "1000000")
        .env_remove("TUTOR_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(url) = database_url {
        cmd.env("TUTOR_DATABASE_URL", url);
    }
    cmd.spawn().unwrap()
}

fn batch(poster: usize, n: usize) -> Value {
    let learner = format!("kill-{poster}");
    Value::Array(
        (0..5)
            .map(|i| {
                json!({"id": format!("p{poster}-b{n}-{i}"), "actor": learner, "verb": "answered",
                       "object": {"component": "fractions-divide-ex-1", "item": "q1"},
                       "result": {"success": i % 2 == 0},
                       "timestamp": format!("2026-11-20T08:{:02}:{:02}Z", n % 60, i)})
            })
            .collect(),
    )
}

async fn killed_mid_stream_loses_no_acknowledged_statement(database_url: Option<String>) {
    let data = sample_data_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start(data.path(), port, database_url.as_deref());
    wait_ready(&base).await;

    let acked: Arc<Mutex<Vec<Value>>> = Arc::default();
    let mut posters = Vec::new();
    for poster in 0..4 {
        let (base, acked) = (base.clone(), acked.clone());
        posters.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0.. {
                let b = batch(poster, n);
                match client.post(format!("{base}/v1/events")).json(&b).send().await {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push(b),
                    Ok(r) => panic!("batch refused: {}", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for p in posters {
        p.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 10, "only {} batches acknowledged before the kill", acked.len());

    let mut child = start(data.path(), port, database_url.as_deref());
    wait_ready(&base).await;
    let started = Instant::now();
    for b in &acked {
        let (status, r) = post_json(&format!("{base}/v1/events"), b).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(0), Some(5)), "a batch was lost: {b}");
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sqlite_keeps_every_acknowledged_statement_through_sigkill() {
    killed_mid_stream_loses_no_acknowledged_statement(None).await;
}

#[tokio::test]
async fn postgres_keeps_every_acknowledged_statement_through_sigkill() {
    if let Some(url) = fresh_postgres("sigkill").await {
        killed_mid_stream_loses_no_acknowledged_statement(Some(url)).await;
    }
}
