//! Load and soak: `tutor serve` (the real binary, its own process) under many concurrent chat
//! sessions and a steady stream of event posts, for minutes; every 30 s it prints the server's
//! resident memory, the turns and events done, errors, and turn latency p50/p99 of the window.
//! `cargo bench --bench soak` (10 minutes per engine); `SOAK_MINUTES`, `SOAK_SESSIONS` (50),
//! `SOAK_POSTERS` (4) and `SOAK_ENGINE` (`offline`, `mock` or `both`) change it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The mock model: a streamed answer citing the page, with the usage a server reports.
async fn completions(_: Bytes) -> axum::response::Response {
    let mut chunks = common::text_chunks(&[
        "Dividing by a fraction asks how many of it fit. ",
        "Flip the divisor and multiply [fractions-divide-explain-intro].",
    ]);
    chunks.push(common::usage_chunk(900, 40));
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from(common::sse_body(&chunks)))
        .unwrap()
}

/// Resident memory of a process in MB: the total, and its parts — anonymous (the heap: caches,
/// sessions, the allocator's arenas, SQLite's page cache), file-backed (the binary, mapped files)
/// and shared (SQLite's WAL index).
fn rss_mb(pid: u32) -> [f64; 4] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    [field("VmRSS:"), field("RssAnon:"), field("RssFile:"), field("RssShmem:")]
}

/// Size of the data directory's database and its WAL, in MB.
fn db_mb(dir: &std::path::Path) -> f64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".db"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len() as f64 / 1048576.0)
        .sum()
}

#[derive(Default)]
struct Counts {
    turns: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
}

async fn soak(engine: &str, minutes: u64, sessions: usize, posters: usize, mock: Option<String>) {
    let data = common::sample_data_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tutor"));
    cmd.arg("--data-dir").arg(data.path()).args(["serve", "--port", &port.to_string()]);
    cmd.env("TUTOR_CONTENT_DIR", common::sample_content())
        .env("TUTOR_RATE_PER_MINUTE", "100000000")
        .env("TUTOR_RATE_PER_ADDRESS_PER_MINUTE", "100000000")
        .env("TUTOR_LLM_TOKENS_PER_DAY", "0")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(url) = &mock {
        cmd.env("TUTOR_LLM_BASE_URL", url).env("TUTOR_LLM_API_KEY", "soak").env("TUTOR_LLM_MODEL", "mock");
    }
    let mut child = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    common::wait_ready(&base).await;
    println!("engine {engine}: {sessions} chat sessions pausing 0.5 s, {posters} event posters, {minutes} min");
    println!(
        "{:>6} {:>7} {:>6} {:>6} {:>6} {:>7} {:>8} {:>8} {:>7} {:>8} {:>8}",
        "min", "RSS MB", "anon", "file", "shmem", "db MB", "turns", "events", "errors", "p50 ms", "p99 ms"
    );

    let counts = Arc::new(Counts::default());
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let (client, base, counts, latencies, stop) =
            (client.clone(), base.clone(), counts.clone(), latencies.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut session = serde_json::Value::Null;
            let mut t = 0u64;
            while !stop.load(Ordering::Relaxed) {
                t += 1;
                // a new session every 20 turns, as learners come and go
                if t.is_multiple_of(20) {
                    session = serde_json::Value::Null;
                }
                let body = serde_json::json!({"learner_id": format!("soak-{s}"), "session_id": session,
                    "component_id": "fractions-divide-explain-intro", "message": format!("Why do we flip the divisor? ({t})")});
                let started = Instant::now();
                match client.post(format!("{base}/v1/tutor/chat")).json(&body).send().await {
                    Ok(r) if r.status() == 200 => {
                        let text = r.text().await.unwrap_or_default();
                        match text.split("event: done\ndata: ").nth(1) {
                            Some(done) => {
                                let done: serde_json::Value =
                                    serde_json::from_str(done.lines().next().unwrap_or("{}")).unwrap_or_default();
                                session = done["session_id"].clone();
                                counts.turns.fetch_add(1, Ordering::Relaxed);
                                latencies.lock().unwrap().push(started.elapsed());
                            }
                            None => {
                                counts.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    _ => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }
    for p in 0..posters {
        let (client, base, counts, stop) = (client.clone(), base.clone(), counts.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let learner = format!("poster-{p}-{}", n % 500);
                // stamped as a page stamps them (now, to the millisecond); one batch in 100 arrives
                // a minute late, as from a page that lost its connection, and costs its learner a replay
                let late = if n.is_multiple_of(100) { 60_000 } else { 0 };
                let at = chrono::Utc::now().timestamp_millis() - late;
                let batch: Vec<serde_json::Value> = (0..10)
                    .map(|i| {
                        let ts = chrono::DateTime::from_timestamp_millis(at + i).expect("a time");
                        serde_json::json!({"id": format!("p{p}-{n}-{i}"), "actor": learner, "verb": "answered",
                            "object": {"component": "fractions-divide-ex-1", "item": "q1"}, "result": {"success": i % 3 == 0},
                            "timestamp": ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)})
                    })
                    .collect();
                match client.post(format!("{base}/v1/events")).json(&batch).send().await {
                    Ok(r) if r.status() == 200 => {
                        counts.events.fetch_add(10, Ordering::Relaxed);
                    }
                    _ => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < Duration::from_secs(minutes * 60) {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
        lat.sort();
        let pct = |p: f64| lat.get(((lat.len().max(1) - 1) as f64 * p) as usize).map_or(0.0, |d| d.as_secs_f64() * 1e3);
        let m = rss_mb(child.id());
        rss.push((started.elapsed().as_secs_f64() / 60.0, m[0]));
        println!(
            "{:>6.1} {:>7.1} {:>6.1} {:>6.1} {:>6.1} {:>7.1} {:>8} {:>8} {:>7} {:>8.2} {:>8.2}",
            started.elapsed().as_secs_f64() / 60.0,
            m[0],
            m[1],
            m[2],
            m[3],
            db_mb(data.path()),
            counts.turns.load(Ordering::Relaxed),
            counts.events.load(Ordering::Relaxed),
            counts.errors.load(Ordering::Relaxed),
            pct(0.5),
            pct(0.99)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // memory growth after warm-up: a least-squares slope over the second half of the run
    let half: Vec<&(f64, f64)> = rss.iter().skip(rss.len() / 2).collect();
    if half.len() >= 2 {
        let n = half.len() as f64;
        let (mx, my) = (half.iter().map(|p| p.0).sum::<f64>() / n, half.iter().map(|p| p.1).sum::<f64>() / n);
        let slope = half.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>()
            / half.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>().max(1e-9);
        let secs = started.elapsed().as_secs_f64();
        println!(
            "engine {engine}: {} turns ({:.0}/s), {} events ({:.0}/s), {} errors; RSS {:.1} → {:.1} MB, {slope:+.2} MB/min over the second half",
            counts.turns.load(Ordering::Relaxed),
            counts.turns.load(Ordering::Relaxed) as f64 / secs,
            counts.events.load(Ordering::Relaxed),
            counts.events.load(Ordering::Relaxed) as f64 / secs,
            counts.errors.load(Ordering::Relaxed),
            rss.first().map_or(0.0, |p| p.1),
            rss.last().map_or(0.0, |p| p.1),
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn main() {
    let minutes = env_or("SOAK_MINUTES", 10);
    let sessions = env_or("SOAK_SESSIONS", 50) as usize;
    let posters = env_or("SOAK_POSTERS", 4) as usize;
    let engine = std::env::var("SOAK_ENGINE").unwrap_or_else(|_| "both".into());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mock = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock_url = format!("http://{}/v1", mock.local_addr().unwrap());
        tokio::spawn(
            async move { axum::serve(mock, Router::new().route("/v1/chat/completions", post(completions))).await },
        );
        if engine == "offline" || engine == "both" {
            soak("offline", minutes, sessions, posters, None).await;
        }
        if engine == "mock" || engine == "both" {
            soak("llm (mock)", minutes, sessions, posters, Some(mock_url)).await;
        }
    });
}
