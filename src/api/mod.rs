//! The HTTP service: [`router`] over an [`AppState`], and [`serve`] which binds, prepares the
//! index in the background and runs until the shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

mod chat;
mod passport;

pub use passport::{MAX_BATCH, MAX_EVENTS_BODY};

use crate::config::Config;
use crate::content::{Library, load_library};
use crate::passport::{SqlStore, StoreError};
use crate::retrieval::{
    Embedder, OpenAiEmbedder, Retriever, VectorStore, cleanup_generations, ingest, is_stale, open_current,
};

/// Shared state of the service.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub retriever: Arc<Retriever>,
    pub status: Arc<Status>,
    pub store: Arc<SqlStore>,
    pub agent: Arc<crate::agent::Agent>,
    /// The content as last loaded; `None` until it validates.
    pub library: Arc<std::sync::RwLock<Option<Arc<Library>>>>,
}

impl AppState {
    /// The loaded content, or a 503 while there is none.
    pub fn library(&self) -> Result<Arc<Library>, ApiError> {
        self.library.read().expect("library lock").clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "content_not_loaded",
                "the content is not loaded yet (see /readyz)",
            )
        })
    }

    fn set_library(&self, lib: Library) {
        *self.library.write().expect("library lock") = Some(Arc::new(lib));
    }
}

/// What `/readyz` reports.
#[derive(Default)]
pub struct Status {
    ready: AtomicBool,
    problem: std::sync::Mutex<Option<String>>,
}

impl Status {
    fn set_problem(&self, p: impl Into<String>) {
        *self.problem.lock().expect("status lock") = Some(p.into());
    }
}

/// A JSON error `{"error": {"code", "message"}}` with its status.
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Machine-readable specifics, e.g. each bad statement of a batch.
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(d) = self.details {
            error["details"] = d;
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(passport::routes())
        .route("/v1/tutor/chat", axum::routing::post(chat::chat))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(s): State<AppState>) -> Response {
    let problem = s.status.problem.lock().expect("status lock").clone();
    match s.retriever.store() {
        Some(store) if s.status.ready.load(Ordering::Acquire) => {
            let m = store.manifest();
            let mut body = json!({
                "status": "ready",
                "index": {"generation": m.generation, "components": m.components.len(), "chunks": m.chunks,
                          "dense": m.settings.dense.is_some()},
            });
            if let Some(p) = problem {
                body["warning"] = json!(p);
            }
            Json(body).into_response()
        }
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            problem.unwrap_or_else(|| "index is being prepared".into()),
        )
        .into_response(),
    }
}

/// The configured embedder, if any.
pub fn embedder(cfg: &Config) -> Option<Arc<dyn Embedder>> {
    OpenAiEmbedder::from_config(&cfg.embed).map(|e| Arc::new(e) as Arc<dyn Embedder>)
}

/// The agent over the given stores, with the configured prompts and LLM.
pub fn build_agent(
    config: Arc<Config>,
    retriever: Arc<Retriever>,
    store: Arc<SqlStore>,
) -> Result<crate::agent::Agent, crate::agent::prompts::PromptError> {
    let prompts = crate::agent::Prompts::from_config(config.prompts_dir.as_deref())?;
    let llm = crate::agent::LlmClient::from_config(&config.agent).map(Arc::new);
    tracing::info!(engine = if llm.is_some() { "llm" } else { "offline" }, "tutor agent ready");
    Ok(crate::agent::Agent {
        retriever,
        passports: store.clone(),
        flags: store.clone(),
        store,
        prompts: Arc::new(prompts),
        llm,
        config,
    })
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding the listener: {0}")]
    Bind(#[from] std::io::Error),
    #[error("opening the learner store: {0}")]
    Store(#[from] StoreError),
    #[error("loading the prompts: {0}")]
    Prompts(#[from] crate::agent::prompts::PromptError),
}

/// Binds `cfg.host:cfg.port` (port 0 picks one) and returns the address and the server
/// future; the index is prepared in the background (ingesting `content_dir` when the index is
/// missing or stale), with `/readyz` answering 503 until it is served.
pub async fn serve(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = std::io::Result<()>>), ServeError> {
    let store = SqlStore::connect(&cfg.database_url()).await?;
    let listener = tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).await?;
    let addr = listener.local_addr()?;
    let embedder = embedder(&cfg);
    let config = Arc::new(cfg);
    let retriever = Arc::new(Retriever::new(embedder.clone()));
    let agent = Arc::new(build_agent(config.clone(), retriever.clone(), store.clone())?);
    let state =
        AppState { config, retriever, status: Arc::new(Status::default()), store, agent, library: Arc::default() };
    tokio::spawn(prepare_index(state.clone(), embedder));
    let app = router(state);
    // no Nagle: streamed deltas are small writes, and waiting for the peer's delayed ACK
    // would add up to 40 ms to a turn
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let server = async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await };
    Ok((addr, server))
}

/// Runs blocking work off the async threads; `None` (logged) if it panicked or the runtime is
/// shutting down, so that the caller can stop instead of taking the process down.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) if e.is_cancelled() => None,
        Err(e) => {
            tracing::error!(error = %e, "a background task failed");
            None
        }
    }
}

#[tracing::instrument(skip_all)]
async fn prepare_index(state: AppState, embedder: Option<Arc<dyn Embedder>>) {
    let cfg = state.config.clone();
    let model = embedder.as_ref().map(|e| e.model().to_owned());
    let content = cfg.content_dir.clone();
    let opts = cfg.load_options();
    let Some(lib) = blocking(move || load_library(&content, &opts)).await else {
        state.status.set_problem("loading the content failed unexpectedly; see the logs");
        return;
    };
    match lib {
        Ok(lib) => match is_stale(&cfg, &lib, model.as_deref()) {
            Ok(false) => {
                tracing::info!("index is up to date");
                state.set_library(lib);
            }
            _ => {
                // the learner routes need the content model, not the index: serve them now
                state.set_library(lib.clone());
                tracing::info!(components = lib.components.len(), "index missing or stale: ingesting");
                match ingest(&cfg, &lib, embedder, &indicatif::ProgressBar::hidden()).await {
                    Ok(r) => tracing::info!(chunks = r.chunks, ms = r.elapsed_ms, "ingest done"),
                    Err(e) => {
                        tracing::error!(error = %e, "ingest failed; serving the previous index if any");
                        state.status.set_problem(format!("ingest failed: {e}"));
                    }
                }
            }
        },
        Err(e) => {
            tracing::error!(
                problems = e.diagnostics.len(),
                "content does not validate; serving the previous index if any"
            );
            for d in &e.diagnostics {
                tracing::error!("{d}");
            }
            state.status.set_problem(format!(
                "content in {} has {} problem(s); run `tutor validate`",
                cfg.content_dir.display(),
                e.diagnostics.len()
            ));
        }
    }
    let dir = cfg.index_dir();
    let Some(opened) = blocking(move || open_current(&dir)).await else {
        state.status.set_problem("opening the index failed unexpectedly; see the logs");
        return;
    };
    match opened {
        Ok(Some(store)) => {
            state.retriever.set_store(Arc::new(store));
            state.status.ready.store(true, Ordering::Release);
            cleanup_generations(&cfg.index_dir());
        }
        Ok(None) => {
            // keep the reason the ingest failed, which says more than "no index"
            let mut problem = state.status.problem.lock().expect("status lock");
            if problem.is_none() {
                *problem = Some("no index: the content could not be ingested".into());
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot open the index");
            state.status.set_problem(format!("cannot open the index: {e}"));
        }
    }
    follow_new_generations(state).await;
}

/// How often a running server looks for a generation built by `tutor ingest` in another process.
const GENERATION_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Swaps in each new generation that `CURRENT` names, so an operator's `tutor ingest` goes
/// live without a restart. In-flight searches finish on the old one, which is then closed and
/// swept by the next cleanup.
async fn follow_new_generations(state: AppState) {
    let index_dir = state.config.index_dir();
    loop {
        tokio::time::sleep(GENERATION_POLL).await;
        let serving = state.retriever.store().map(|s| s.manifest().generation.clone());
        let Ok(named) = std::fs::read_to_string(index_dir.join("CURRENT")) else {
            continue;
        };
        if serving.as_deref() == Some(named.trim()) {
            continue;
        }
        let dir = index_dir.clone();
        let Some(opened) = blocking(move || open_current(&dir)).await else {
            return;
        };
        match opened {
            Ok(Some(store)) => {
                tracing::info!(generation = %store.manifest().generation, "serving a new index generation");
                let content = state.config.content_dir.clone();
                let opts = state.config.load_options();
                match blocking(move || load_library(&content, &opts)).await {
                    Some(Ok(lib)) => state.set_library(lib),
                    None => return,
                    Some(Err(e)) => tracing::warn!(
                        problems = e.diagnostics.len(),
                        "the content no longer validates; keeping the loaded one"
                    ),
                }
                state.retriever.set_store(Arc::new(store));
                state.status.ready.store(true, Ordering::Release);
                *state.status.problem.lock().expect("status lock") = None;
                let dir = index_dir.clone();
                // give in-flight searches on the old generation time to finish before sweeping
                tokio::spawn(async move {
                    tokio::time::sleep(GENERATION_POLL).await;
                    let _ = tokio::task::spawn_blocking(move || cleanup_generations(&dir)).await;
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "a new index generation could not be opened; still serving the old one")
            }
        }
    }
}
