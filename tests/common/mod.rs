//! Shared test helpers (also used by the benches): temporary content trees, configs, the
//! service on a free port and a wait until it is ready, a wiremock embeddings server, and
//! OpenAI-shaped chat completion fixtures (streamed text and tool-call deltas). Set `TEST_LOG=1`
//! to see the service's logs.
#![allow(dead_code, unused_macros)]

/// `name => sqlite_test, postgres_test;`: a test run once on SQLite and once on PostgreSQL
/// (`name(pg: bool)`; on PostgreSQL it says it was skipped when no server is configured).
macro_rules! on_both {
    ($($name:ident => $sqlite:ident, $pg:ident;)+) => {$(
        #[tokio::test]
        async fn $sqlite() {
            $name(false).await
        }
        #[tokio::test]
        async fn $pg() {
            $name(true).await
        }
    )+};
}

/// `name => edge_test, server_test;`: a test run once on the embedded index and once on the
/// Qdrant server (`name(backend: Backend)`; on the server it says it was skipped when no server
/// is configured).
macro_rules! on_backends {
    ($($name:ident => $edge:ident, $server:ident;)+) => {$(
        #[tokio::test]
        async fn $edge() {
            $name(Backend::Edge).await
        }
        #[tokio::test]
        async fn $server() {
            $name(Backend::Server).await
        }
    )+};
}

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;
use tutor::config::Config;
use tutor::content::{Library, LoadOptions, load_library};
use tutor::retrieval::{Embedder, OpenAiEmbedder, Retriever, SearchFilter, SearchRequest, VectorStore};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Logs to the test's output when `TEST_LOG` is set (once per test binary).
pub fn init_test_log() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,qdrant_edge=error".into());
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

pub const SKILLS: &str = "course:
  id: mini
  title: Mini course
skills:
  - id: mini.a
    name: Skill A
    description: The first skill.
    prerequisites: []
  - id: mini.b
    name: Skill B
    description: The second skill.
    prerequisites: [mini.a]
";

/// A component file with the given front matter lines and body.
pub fn component(front: &str, body: &str) -> String {
    format!("---\n{front}\n---\n{body}\n")
}

pub fn explanation(id: &str, skill: &str, level: &str, title: &str, body: &str) -> String {
    component(&format!("id: {id}\ntitle: \"{title}\"\nskills: [{skill}]\nlevel: {level}\nformat: explanation"), body)
}

/// Writes `files` (relative path, content) under a fresh temp dir; returns it.
pub fn tree(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), files);
    dir
}

pub fn write_files(root: &Path, files: &[(&str, &[u8])]) {
    for (rel, content) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

/// The repository's sample content.
pub fn sample_content() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("content")
}

pub fn load(root: &Path) -> Library {
    load_library(root, &LoadOptions::default()).unwrap_or_else(|e| panic!("content should load:\n{e}"))
}

/// A config with a fresh data dir (kept alive by the returned guard).
pub fn config(content: &Path) -> (Config, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut cfg =
        Config { data_dir: data.path().to_owned(), content_dir: content.to_owned(), demo: false, ..Config::default() };
    // no in-process model unless a test loads one, whatever this machine's Hugging Face cache holds
    cfg.embed.model_id = Some("none".into());
    (cfg, data)
}

/// Which index backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// qdrant-edge in the data dir.
    Edge,
    /// The Qdrant server at `TUTOR_TEST_QDRANT_URL`.
    Server,
}

/// A test's own index on the test Qdrant server (a collection name of its own), removed when
/// dropped.
pub struct ServerIndex {
    pub cfg: tutor::config::QdrantConfig,
}

impl ServerIndex {
    /// A fresh index name on `TUTOR_TEST_QDRANT_URL`, or `None` (printing that `test` was
    /// skipped) when it is unset; with `TUTOR_REQUIRE_QDRANT` set, its absence fails the test.
    pub fn fresh(test: &str) -> Option<Self> {
        let Ok(url) = std::env::var("TUTOR_TEST_QDRANT_URL") else {
            assert!(
                std::env::var_os("TUTOR_REQUIRE_QDRANT").is_none(),
                "TUTOR_REQUIRE_QDRANT is set but TUTOR_TEST_QDRANT_URL is not"
            );
            println!("skipped {test} on the Qdrant server: TUTOR_TEST_QDRANT_URL is not set");
            return None;
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let collection = format!(
            "t{}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 100_000_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        Some(Self { cfg: tutor::config::QdrantConfig { url: Some(url), collection, ..Default::default() } })
    }

    pub fn index(&self) -> tutor::retrieval::QdrantIndex {
        tutor::retrieval::QdrantIndex::connect(&self.cfg).unwrap()
    }

    /// The environment a `tutor` process needs to use this index.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TUTOR_QDRANT_URL", self.cfg.url.clone().unwrap()),
            ("TUTOR_QDRANT_COLLECTION", self.cfg.collection.clone()),
        ]
    }
}

impl Drop for ServerIndex {
    fn drop(&mut self) {
        if let Err(e) = self.index().remove_all() {
            eprintln!("could not remove the test's collections {}: {e}", self.cfg.collection);
        }
    }
}

/// A test's data dir, and its server index when it runs on the server.
pub struct TestIndex {
    pub data: tempfile::TempDir,
    pub server: Option<ServerIndex>,
}

/// [`config`] on `backend`; `None` when the server is asked for and none is configured.
pub fn config_on(backend: Backend, content: &Path, test: &str) -> Option<(Config, TestIndex)> {
    let (mut cfg, data) = config(content);
    let server = match backend {
        Backend::Edge => None,
        Backend::Server => Some(ServerIndex::fresh(test)?),
    };
    if let Some(s) = &server {
        cfg.qdrant = s.cfg.clone();
    }
    Some((cfg, TestIndex { data, server }))
}

/// The index's generations, oldest first, each with whether it is complete.
pub fn generations(cfg: &Config) -> Vec<(String, bool)> {
    if cfg.qdrant.url.is_some() {
        return tutor::retrieval::QdrantIndex::connect(&cfg.qdrant).unwrap().generations().unwrap();
    }
    let mut out: Vec<(String, bool)> = std::fs::read_dir(cfg.index_dir())
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("gen-"))
                .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p.join("manifest.json").exists()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

pub async fn ingest_with(
    cfg: &Config,
    lib: &Library,
    embedder: Option<Arc<dyn Embedder>>,
) -> tutor::retrieval::IngestReport {
    tutor::retrieval::ingest(cfg, &tutor::app::index(cfg).unwrap(), lib, embedder, &indicatif::ProgressBar::hidden())
        .await
        .expect("ingest")
}

/// The current generation of the index in `cfg`'s data dir (closed again when dropped).
pub fn open_current(cfg: &Config) -> Arc<dyn VectorStore> {
    tutor::app::index(cfg).unwrap().open_current().unwrap().expect("an index")
}

/// Opens the current index for search (closing it again when dropped).
pub fn retriever(cfg: &Config, embedder: Option<Arc<dyn Embedder>>) -> Retriever {
    let r = Retriever::new(embedder);
    r.set_store(open_current(cfg));
    r
}

pub async fn search(r: &Retriever, text: &str, filter: SearchFilter, k: usize) -> Vec<tutor::retrieval::Hit> {
    r.search(&SearchRequest { text: text.into(), filter, k }).await.unwrap()
}

/// Deterministic pseudo-embeddings: hashed bag of words, L2-normalised, so that texts sharing
/// words are near each other, as with a real model.
pub struct HashedEmbeddings {
    pub dims: usize,
}

pub fn hashed_vector(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0f32; dims];
    for w in text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2) {
        let h = w.bytes().fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
        v[h as usize % dims] += 1.0;
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter().map(|x| x / n).collect()
}

impl Respond for HashedEmbeddings {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let inputs: Vec<String> = match &body["input"] {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
            other => panic!("unexpected input {other}"),
        };
        let data: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| serde_json::json!({"object": "embedding", "index": i, "embedding": hashed_vector(t, self.dims)}))
            .collect();
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "object": "list", "data": data, "model": body["model"],
            "usage": {"prompt_tokens": 10, "total_tokens": 10}
        }))
    }
}

/// A wiremock server answering `/embeddings` as OpenAI does.
pub async fn embeddings_server(dims: usize) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path("/embeddings")).respond_with(HashedEmbeddings { dims }).mount(&server).await;
    server
}

pub fn embedder_for(server: &MockServer, cfg: &mut Config) -> Arc<dyn Embedder> {
    cfg.embed.base_url = Some(server.uri());
    cfg.embed.model = "test-embed".into();
    cfg.embed.api_key = Some("test-key".into());
    cfg.embed.batch_size = 16;
    Arc::new(OpenAiEmbedder::from_config(&cfg.embed).unwrap())
}

/// Texts sent to the embeddings endpoint so far.
pub async fn embedded_inputs(server: &MockServer) -> Vec<String> {
    let mut out = Vec::new();
    for r in server.received_requests().await.unwrap_or_default() {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        for v in body["input"].as_array().unwrap() {
            out.push(v.as_str().unwrap().to_owned());
        }
    }
    out
}

/// A service on a real socket, stopped when dropped.
pub struct App {
    pub base: String,
    pub data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl App {
    /// Begins the service's shutdown, as SIGTERM does; the data dir is kept.
    pub fn stop(self) -> tempfile::TempDir {
        self.data
    }
}

/// Starts `tutor::api::serve` on a free port with a fresh data dir, after `cfg_for` adjusts
/// the config.
pub async fn spawn_app(cfg_for: impl FnOnce(&mut Config)) -> App {
    init_test_log();
    let data = tempfile::tempdir().unwrap();
    // no demo learners unless a test asks for them
    let mut cfg = Config { data_dir: data.path().to_owned(), port: 0, demo: false, ..Config::default() };
    cfg_for(&mut cfg);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = tutor::api::serve(cfg, async {
        let _ = rx.await;
    })
    .await
    .unwrap();
    tokio::spawn(server);
    App { base: format!("http://{addr}"), data, _stop: tx }
}

pub async fn get(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// A data dir holding an index of the sample content, built once per test binary and copied
/// for each test (so a service started on it serves at once instead of ingesting).
pub fn sample_data_dir() -> tempfile::TempDir {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let src = BUILT.get_or_init(|| {
        std::thread::spawn(|| {
            let dir = tempfile::tempdir().unwrap().keep();
            let cfg = Config { data_dir: dir.clone(), content_dir: sample_content(), ..Config::default() };
            let lib = load(&sample_content());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(ingest_with(&cfg, &lib, None));
            dir
        })
        .join()
        .unwrap()
    });
    let dst = tempfile::tempdir().unwrap();
    copy_dir(&src.join("index"), &dst.path().join("index"));
    dst
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Starts the service on the sample content with a prebuilt index and waits until it serves.
pub async fn spawn_sample_app(cfg_for: impl FnOnce(&mut Config)) -> App {
    let data = sample_data_dir();
    let dir = data.path().to_owned();
    let mut app = spawn_app(|c| {
        c.content_dir = sample_content();
        c.data_dir = dir;
        cfg_for(c);
    })
    .await;
    app.data = data;
    wait_ready(&app.base).await;
    app
}

/// Polls `GET {base}/readyz` until it answers 200 (at most a minute) and returns its body;
/// until then it must answer 503.
pub async fn wait_ready(base: &str) -> Value {
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or_default();
            if status == 200 {
                return body;
            }
            assert_eq!(status, 503, "{body}");
            assert!(started.elapsed() < Duration::from_secs(60), "never ready: {body}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts JSON and returns the status and JSON reply.
pub async fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new().post(url).header("accept", "application/json").json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

// ---------- an OpenAI-compatible chat completions mock ----------

/// One `chat.completion.chunk` with a delta, as OpenAI streams it.
pub fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1763800000, "model": "gpt-test",
           "system_fingerprint": "fp_test", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
           "usage": null})
}

/// The last chunk when `stream_options.include_usage` is set: no choices, the usage.
pub fn usage_chunk(prompt: u32, completion: u32) -> Value {
    json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1763800000, "model": "gpt-test",
           "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})
}

/// The body of a streamed reply: `data:` lines, ending in `data: [DONE]`.
pub fn sse_body(chunks: &[Value]) -> String {
    let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    body
}

pub fn sse(chunks: &[Value]) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_raw(sse_body(chunks), "text/event-stream")
}

/// The chunks of a reply calling tools: each call's id and name first, then its arguments in
/// two pieces, as OpenAI streams them.
pub fn tool_call_chunks(calls: &[(&str, &str, &str)]) -> Vec<Value> {
    let mut chunks = Vec::new();
    for (i, (id, name, args)) in calls.iter().enumerate() {
        chunks.push(chunk(
            json!({"role": "assistant", "content": null,
                   "tool_calls": [{"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
            None,
        ));
        let mid = args.len() / 2;
        let mid = (0..=mid).rev().find(|m| args.is_char_boundary(*m)).unwrap();
        for piece in [&args[..mid], &args[mid..]] {
            chunks.push(chunk(json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}), None));
        }
    }
    chunks.push(chunk(json!({}), Some("tool_calls")));
    chunks
}

/// A streamed reply calling tools, with usage.
pub fn tool_calls(calls: &[(&str, &str, &str)]) -> ResponseTemplate {
    let mut chunks = tool_call_chunks(calls);
    chunks.push(usage_chunk(300, 20));
    sse(&chunks)
}

/// The chunks of a text reply, in the given pieces.
pub fn text_chunks(pieces: &[&str]) -> Vec<Value> {
    let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    chunks.extend(pieces.iter().map(|p| chunk(json!({"content": p}), None)));
    chunks.push(chunk(json!({}), Some("stop")));
    chunks
}

/// A streamed text reply, in the given pieces, with usage.
pub fn text(pieces: &[&str]) -> ResponseTemplate {
    let mut chunks = text_chunks(pieces);
    chunks.push(usage_chunk(500, 40));
    sse(&chunks)
}

/// Replies in order; the last one repeats.
pub struct Script {
    pub replies: Vec<ResponseTemplate>,
    pub next: AtomicUsize,
}

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        self.replies[n.min(self.replies.len() - 1)].clone()
    }
}

/// A chat completions endpoint at `{uri}/v1` answering with `replies` in order.
pub async fn llm(replies: Vec<ResponseTemplate>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Script { replies, next: AtomicUsize::new(0) })
        .mount(&server)
        .await;
    server
}

/// The request bodies the mock received, in order.
pub async fn requests(server: &MockServer) -> Vec<Value> {
    server.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
}

// ---------- the chat endpoint ----------

/// Points `c` at the mock chat completions endpoint `server`.
pub fn use_llm(c: &mut Config, server: &MockServer) {
    c.agent.llm_base_url = Some(format!("{}/v1", server.uri()));
    c.agent.llm_api_key = Some("sk-test".into());
}

pub async fn llm_app(server: &MockServer, tweak: impl FnOnce(&mut tutor::config::Config)) -> App {
    spawn_sample_app(move |c| {
        use_llm(c, server);
        c.agent.llm_model = "gpt-test".into();
        tweak(c);
    })
    .await
}

/// A streamed turn: the SSE events in order, as (event name, data).
pub async fn chat_sse(app: &App, body: Value) -> Vec<(String, Value)> {
    let r = reqwest::Client::new().post(format!("{}/v1/tutor/chat", app.base)).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
        if !name.is_empty() {
            out.push((name, serde_json::from_str(&data).unwrap()));
        }
    }
    out
}

pub async fn chat(app: &App, body: Value) -> Value {
    let (status, reply) = post_json(&format!("{}/v1/tutor/chat", app.base), &body).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

pub fn done(events: &[(String, Value)]) -> &Value {
    let (name, d) = events.last().unwrap();
    assert_eq!(name, "done");
    d
}

/// The answer as a client shows it: the deltas after the last `replace` event.
pub fn deltas(events: &[(String, Value)]) -> String {
    let start = events.iter().rposition(|(n, _)| n == "replace").map_or(0, |i| i + 1);
    events[start..].iter().filter(|(n, _)| n == "delta").map(|(_, d)| d["text"].as_str().unwrap()).collect()
}

/// A fresh, empty PostgreSQL database for one test, or `None` (printing why) when no server
/// is configured.
/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Copies the folder `from` into `to`, recursively.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The Qdrant server binary: `TUTOR_TEST_QDRANT_BIN` or `../shared/bin/qdrant` beside the
/// repository. `None` (saying `what` was skipped) when it is absent, unless
/// `TUTOR_REQUIRE_QDRANT` is set.
pub fn qdrant_binary(what: &str) -> Option<PathBuf> {
    let bin = std::env::var_os("TUTOR_TEST_QDRANT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bin/qdrant"));
    if bin.is_file() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("TUTOR_REQUIRE_QDRANT").is_none(),
        "TUTOR_REQUIRE_QDRANT is set but {} is missing",
        bin.display()
    );
    println!("skipped {what}: no Qdrant server binary at {} (set TUTOR_TEST_QDRANT_BIN)", bin.display());
    None
}

/// A Qdrant server of one's own on loopback, with its storage in a temporary folder; killed
/// when dropped.
pub struct QdrantProcess {
    child: std::process::Child,
    pub grpc: u16,
    pub http: u16,
    _dir: tempfile::TempDir,
}

impl QdrantProcess {
    /// Starts the server on `grpc` (and a free REST port) and waits until both accept.
    pub fn start(bin: &Path, grpc: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let http = free_port();
        let child = std::process::Command::new(bin)
            .current_dir(dir.path())
            .env("QDRANT__STORAGE__STORAGE_PATH", dir.path().join("storage"))
            .env("QDRANT__STORAGE__SNAPSHOTS_PATH", dir.path().join("snapshots"))
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", http.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", grpc.to_string())
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let accepts = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        while !(accepts(http) && accepts(grpc)) {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "the Qdrant server did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { child, grpc, http, _dir: dir }
    }

    /// Its gRPC URL, as `TUTOR_QDRANT_URL` takes it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }
}

impl Drop for QdrantProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn fresh_postgres(test: &str) -> Option<String> {
    let Ok(admin) = std::env::var("TUTOR_TEST_DATABASE_URL") else {
        println!("skipped {test} on PostgreSQL: TUTOR_TEST_DATABASE_URL is not set");
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!(
        "tutor_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    let mut conn =
        sqlx::AnyConnection::connect(&admin).await.expect("TUTOR_TEST_DATABASE_URL should accept connections");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin.as_str(), String::new()),
    };
    let (server, _db) = base.rsplit_once('/').expect("a database URL has a path");
    Some(format!("{server}/{name}{query}"))
}

/// Authentication by an HS256 shared secret.
pub fn hs256(secret: &str) -> tutor::config::AuthConfig {
    tutor::config::AuthConfig { jwt_secret: Some(secret.into()), ..tutor::config::AuthConfig::default() }
}

/// A bearer token signed with `secret`, valid for ten minutes.
pub fn signed_token(secret: &str, role: tutor::auth::Role, sub: &str, courses: &[&str], group: Option<&str>) -> String {
    let req = tutor::auth::TokenRequest {
        role,
        sub: sub.into(),
        courses: courses.iter().map(|c| c.to_string()).collect(),
        group: group.map(str::to_owned),
        ttl: std::time::Duration::from_secs(600),
    };
    tutor::auth::mint(&hs256(secret), &req).unwrap()
}

/// The service on the sample courses with HS256 tokens of `secret`, on SQLite or (`pg`) on a
/// fresh PostgreSQL database, and a client for it.
pub struct Api {
    pub app: App,
    pub client: reqwest::Client,
    pub secret: &'static str,
}

impl Api {
    /// `None` when PostgreSQL is asked for and none is configured.
    pub async fn new(pg: bool, secret: &'static str, test: &str) -> Option<Self> {
        Self::with(pg, secret, test, |_| {}).await
    }

    /// [`Api::new`] with the configuration changed by `tweak`.
    pub async fn with(pg: bool, secret: &'static str, test: &str, tweak: impl FnOnce(&mut Config)) -> Option<Self> {
        let url = if pg { Some(fresh_postgres(test).await?) } else { None };
        let app = spawn_sample_app(|c| {
            c.auth = hs256(secret);
            c.database_url = url;
            tweak(c);
        })
        .await;
        Some(Self { app, client: reqwest::Client::new(), secret })
    }

    /// A request with `bearer`: the status and the body (JSON, or the text when it is not).
    pub async fn call(&self, method: &str, path: &str, bearer: &str, body: Option<&Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.app.base))
            .bearer_auth(bearer)
            .header("accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Posts statements as an admin; they must be accepted.
    pub async fn events(&self, statements: Vec<Value>) -> Value {
        let admin = signed_token(self.secret, tutor::auth::Role::Admin, "root", &[], None);
        let (status, body) = self.call("POST", "/v1/events", &admin, Some(&json!(statements))).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// What a learner may not see, from the answer keys: hints, diagnoses, explanations and
/// answers, except those that appear in the text learners are shown anyway (a key such as "5"
/// or "no" appears in course text; a summary may repeat a hint), and answers under 4
/// characters.
pub fn learner_secrets(lib: &Library) -> Vec<String> {
    let visible: String = lib.components.values().map(|c| c.retrievable_text().to_lowercase()).collect();
    let mut out = std::collections::BTreeSet::new();
    for (_, _, key) in lib.answer_keys() {
        let long =
            key.hints.iter().chain(key.explanation.iter()).chain(key.misconceptions.iter().map(|m| &m.diagnosis));
        // (a hint may repeat what a page says: then it is no secret)
        for s in long.filter(|s| !visible.contains(&s.to_lowercase())) {
            out.insert(s.clone());
        }
        for a in std::iter::once(&key.answer).chain(&key.accept) {
            if a.chars().count() >= 4 && !visible.contains(&a.to_lowercase()) {
                out.insert(a.clone());
            }
        }
    }
    out.into_iter().collect()
}
