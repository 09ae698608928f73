//! Events over HTTP, end to end: `tutor serve` (the release binary, its own process, SQLite,
//! struggle rules on) takes `POST /v1/events` (a) in batches of 1,000 statements from one
//! client and from four, and (b) one statement per request from 50 concurrent clients, as
//! content pages post answers. Every reply comes after its statements are durably committed.
//! `cargo bench --bench events` prints statements/s and request latency p50/p99;
//! `EVENTS_SECONDS` (20) sets each phase's length; `EVENTS_PHASES` (`batches,single`) which
//! phases run (`single` alone, e.g., to profile the server under one-statement posts);
//! `EVENTS_CLIENTS` (`50`) the single-statement phase's concurrent clients, several separated
//! by commas.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn statement(learner: &str, id: &str, item: usize, right: bool, ts_ms: i64) -> serde_json::Value {
    let ts = chrono::DateTime::from_timestamp_millis(ts_ms).expect("a time");
    serde_json::json!({"id": id, "actor": learner, "verb": "answered",
        "object": {"component": "fractions-divide-ex-1", "item": format!("q{}", item % 4 + 1)},
        "result": {"success": right}, "timestamp": ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)})
}

fn pct(lat: &mut [Duration], p: f64) -> f64 {
    lat.sort();
    lat.get(((lat.len().max(1) - 1) as f64 * p) as usize).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// `clients` tasks posting for `secs`: each request is `make(client, n)`; returns statements/s
/// and the request latencies.
async fn phase(
    base: &str,
    clients: usize,
    secs: u64,
    per_request: usize,
    make: impl Fn(usize, u64) -> serde_json::Value + Send + Sync + 'static,
) -> (f64, Vec<Duration>) {
    let make = Arc::new(make);
    let done = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, make, done) = (http.clone(), base.to_owned(), make.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let body = make(c, n);
                let t = Instant::now();
                let r = http.post(format!("{base}/v1/events")).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                let _ = r.bytes().await;
                lat.push(t.elapsed());
                done.fetch_add(per_request as u64, Ordering::Relaxed);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(), all)
}

fn main() {
    let secs: u64 = std::env::var("EVENTS_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let data = common::sample_data_dir();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tutor"))
            .arg("--data-dir")
            .arg(data.path())
            .args(["serve", "--port", &port.to_string()])
            .env("TUTOR_CONTENT_DIR", common::sample_content())
            .env("TUTOR_RATE_PER_MINUTE", "100000000")
            .env("TUTOR_RATE_PER_ADDRESS_PER_MINUTE", "100000000")
            .env("TUTOR_DEMO", "false")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        common::wait_ready(&base).await;
        let t0 = chrono::Utc::now().timestamp_millis() - 86_400_000;
        let clock = Arc::new(AtomicU64::new(0));

        let phases = std::env::var("EVENTS_PHASES").unwrap_or_else(|_| "batches,single".into());
        let batches = if phases.split(',').any(|p| p.trim() == "batches") { &[1usize, 4][..] } else { &[] };
        for &clients in batches {
            let clock = clock.clone();
            let (rate, mut lat) = phase(&base, clients, secs, 1000, move |c, n| {
                // 1,000 answers of 100 learners of this client, in time order
                let at = t0 + clock.fetch_add(1000, Ordering::Relaxed) as i64;
                serde_json::Value::Array(
                    (0..1000)
                        .map(|i| {
                            let learner = format!("batch-{clients}-{c}-{}", i % 100);
                            statement(&learner, &format!("b{clients}-{c}-{n}-{i}"), i, i % 3 != 0, at + i as i64)
                        })
                        .collect(),
                )
            })
            .await;
            println!(
                "batches of 1,000, {clients} client(s): {rate:.0} statements/s, request p50 {:.1} ms, p99 {:.1} ms",
                pct(&mut lat, 0.5),
                pct(&mut lat, 0.99)
            );
        }
        let clock2 = clock.clone();
        if !phases.split(',').any(|p| p.trim() == "single") {
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        }
        let clients = std::env::var("EVENTS_CLIENTS").unwrap_or_else(|_| "50".into());
        for clients in clients.split(',').map(|c| c.trim().parse::<usize>().expect("EVENTS_CLIENTS: numbers")) {
            let clock = clock2.clone();
            let (rate, mut lat) = phase(&base, clients, secs, 1, move |c, n| {
                let at = t0 + clock.fetch_add(1, Ordering::Relaxed) as i64;
                statement(&format!("page-{clients}-{c}"), &format!("s{clients}-{c}-{n}"), n as usize, n % 3 != 0, at)
            })
            .await;
            println!(
                "one statement per request, {clients} client(s): {rate:.0} statements/s, request p50 {:.1} ms, p99 {:.1} ms",
                pct(&mut lat, 0.5),
                pct(&mut lat, 0.99)
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
    });
}
