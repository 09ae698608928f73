//! Service overhead per tutor turn: `POST /v1/tutor/chat` on the sample courses against an
//! OpenAI-compatible mock that answers at once (a tool call, then a streamed answer), so
//! everything measured is the service's own work plus two loopback HTTP calls to the mock.
//! Prints turn latency p50/p99 at 1, 50 and 200 concurrent sessions, the time to the first
//! streamed byte, and the same for the offline engine.
//! `cargo bench --bench agent`; `BENCH_SMALL=1` for a quick run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use tutor::config::Config;
use tutor::content::{LoadOptions, load_library};

/// The mock: a `retrieve_components` call when the conversation has no tool result yet, then
/// a short streamed answer.
async fn completions(body: Bytes) -> axum::response::Response {
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let has_tool_result = req["messages"].as_array().unwrap().iter().any(|m| m["role"] == "tool");
    let chunks = if has_tool_result {
        common::text_chunks(&[
            "Dividing by a fraction asks how many of it fit. ",
            "Three halves fit in one and a half ",
            "[fractions-divide-explain-intro].",
        ])
    } else {
        common::tool_call_chunks(&[(
            "call_1",
            "retrieve_components",
            r#"{"query": "why flip when dividing fractions", "k": 3}"#,
        )])
    };
    let out = common::sse_body(&chunks);
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from(out))
        .unwrap()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// `sessions` concurrent learners, each asking `turns` questions in one session, pausing
/// `think` (±50%, deterministic) between turns, as a person reading the answer does (`None`: no
/// pause, a saturation test); returns the sorted turn latencies and times to first byte.
async fn run(base: &str, sessions: usize, turns: usize, think: Option<Duration>) -> (Vec<Duration>, Vec<Duration>) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let tasks: Vec<_> = (0..sessions)
        .map(|s| {
            let client = client.clone();
            let url = format!("{base}/v1/tutor/chat");
            tokio::spawn(async move {
                let mut session = serde_json::Value::Null;
                let mut lat = Vec::new();
                let mut ttfb = Vec::new();
                let mut x = s as u64 + 1;
                for t in 0..turns {
                    if let Some(think) = think {
                        // sessions start spread over one think time, then pause 0.5x to 1.5x
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let f = if t == 0 { (x >> 33) as f64 / (1u64 << 31) as f64 } else { 0.5 + (x >> 33) as f64 / (1u64 << 31) as f64 };
                        tokio::time::sleep(think.mul_f64(f)).await;
                    }
                    let body = serde_json::json!({"learner_id": format!("bench-{s}"), "session_id": session,
                        "component_id": "fractions-divide-explain-intro", "message": format!("Why do we flip the second fraction? ({t})")});
                    let started = Instant::now();
                    let mut r = client.post(&url).json(&body).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    let mut first = None;
                    let mut text = Vec::new();
                    while let Some(c) = r.chunk().await.unwrap() {
                        first.get_or_insert_with(|| started.elapsed());
                        text.extend_from_slice(&c);
                    }
                    lat.push(started.elapsed());
                    ttfb.push(first.unwrap());
                    let text = String::from_utf8(text).unwrap();
                    let done = text.split("event: done\ndata: ").nth(1).expect("a done event");
                    let done: serde_json::Value = serde_json::from_str(done.lines().next().unwrap()).unwrap();
                    session = done["session_id"].clone();
                }
                (lat, ttfb)
            })
        })
        .collect();
    let (mut lat, mut ttfb) = (Vec::new(), Vec::new());
    for t in tasks {
        let (l, f) = t.await.unwrap();
        lat.extend(l);
        ttfb.extend(f);
    }
    lat.sort();
    ttfb.sort();
    (lat, ttfb)
}

async fn serve(data: &std::path::Path, llm: Option<String>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let content = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("content");
    let mut cfg = Config { data_dir: data.to_owned(), content_dir: content, port: 0, ..Config::default() };
    // every session comes from one address here: the rate limits would measure themselves
    cfg.limits.requests_per_minute = u32::MAX;
    cfg.limits.requests_per_minute_per_address = u32::MAX;
    // and a learner's 200 turns would spend a day's LLM tokens
    cfg.limits.llm_tokens_per_day = 0;
    if let Some(base) = llm {
        cfg.agent.llm_base_url = Some(base);
        cfg.agent.llm_api_key = Some("bench".into());
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = tutor::api::serve(cfg, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    tokio::spawn(server);
    let base = format!("http://{addr}");
    common::wait_ready(&base).await;
    (base, tx)
}

fn main() {
    let small = std::env::var_os("BENCH_SMALL").is_some();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let content = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("content");
    let lib = load_library(&content, &LoadOptions::default()).unwrap();
    rt.block_on(async {
        let mock = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock_url = format!("http://{}/v1", mock.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(mock, Router::new().route("/v1/chat/completions", post(completions))).await });
        for (engine, llm) in [("llm (mock, 2 model calls + 1 tool call per turn)", Some(mock_url.clone())), ("offline", None)] {
            // a data dir (index and database) per service
            let data = tempfile::tempdir().unwrap();
            let cfg = Config { data_dir: data.path().to_owned(), content_dir: content.clone(), ..Config::default() };
            common::ingest_with(&cfg, &lib, None).await;
            let (base, stop) = serve(data.path(), llm).await;
            println!("engine {engine}");
            for sessions in [1usize, 50, 200] {
                let turns = if small { 2 } else if sessions == 1 { 200 } else { 10 };
                let think = (sessions > 1).then_some(Duration::from_secs(1));
                let (lat, ttfb) = run(&base, sessions, turns, think).await;
                let mode = if think.is_some() { "sessions, 1 s think time" } else { "session, back to back    " };
                println!(
                    "  {sessions:>3} {mode}, {:>4} turns: turn p50 {:.2} ms  p99 {:.2} ms;  first byte p50 {:.2} ms  p99 {:.2} ms",
                    lat.len(),
                    pct(&lat, 0.5),
                    pct(&lat, 0.99),
                    pct(&ttfb, 0.5),
                    pct(&ttfb, 0.99)
                );
            }
            let (lat, started) = (run(&base, 50, if small { 2 } else { 20 }, None), Instant::now());
            let (lat, _) = lat.await;
            println!(
                "   50 sessions, no pause (saturation): {} turns in {:.2} s = {:.0} turns/s; turn p50 {:.2} ms  p99 {:.2} ms",
                lat.len(),
                started.elapsed().as_secs_f64(),
                lat.len() as f64 / started.elapsed().as_secs_f64(),
                pct(&lat, 0.5),
                pct(&lat, 0.99)
            );
            drop(stop);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}
