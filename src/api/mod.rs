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

use crate::config::Config;
use crate::content::load_library;
use crate::retrieval::{Embedder, OpenAiEmbedder, Retriever, cleanup_generations, ingest, is_stale, open_current};

/// Shared state of the service.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub retriever: Arc<Retriever>,
    pub status: Arc<Status>,
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: "no such route".into() }
        })
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
        _ => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "not_ready",
            message: problem.unwrap_or_else(|| "index is being prepared".into()),
        }
        .into_response(),
    }
}

/// The configured embedder, if any.
pub fn embedder(cfg: &Config) -> Option<Arc<dyn Embedder>> {
    OpenAiEmbedder::from_config(&cfg.embed).map(|e| Arc::new(e) as Arc<dyn Embedder>)
}

/// Binds `cfg.host:cfg.port` (port 0 picks one) and returns the address and the server
/// future; the index is prepared in the background (ingesting `content_dir` when the index is
/// missing or stale), with `/readyz` answering 503 until it is served.
pub async fn serve(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).await?;
    let addr = listener.local_addr()?;
    let embedder = embedder(&cfg);
    let state = AppState {
        config: Arc::new(cfg),
        retriever: Arc::new(Retriever::new(embedder.clone())),
        status: Arc::new(Status::default()),
    };
    tokio::spawn(prepare_index(state.clone(), embedder));
    let app = router(state);
    let server = async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await };
    Ok((addr, server))
}

#[tracing::instrument(skip_all)]
async fn prepare_index(state: AppState, embedder: Option<Arc<dyn Embedder>>) {
    let cfg = state.config.clone();
    let model = embedder.as_ref().map(|e| e.model().to_owned());
    let content = cfg.content_dir.clone();
    let opts = cfg.load_options();
    let lib = tokio::task::spawn_blocking(move || load_library(&content, &opts)).await.expect("loader task");
    match lib {
        Ok(lib) => match is_stale(&cfg, &lib, model.as_deref()) {
            Ok(false) => tracing::info!("index is up to date"),
            _ => {
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
            tracing::error!(problems = e.diagnostics.len(), "content does not validate; serving the previous index if any");
            for d in &e.diagnostics {
                tracing::error!("{d}");
            }
            state.status.set_problem(format!("content in {} has {} problem(s); run `tutor validate`", cfg.content_dir.display(), e.diagnostics.len()));
        }
    }
    let dir = cfg.index_dir();
    match tokio::task::spawn_blocking(move || open_current(&dir)).await.expect("open task") {
        Ok(Some(store)) => {
            state.retriever.set_store(Arc::new(store));
            state.status.ready.store(true, Ordering::Release);
            cleanup_generations(&cfg.index_dir());
        }
        Ok(None) => state.status.set_problem("no index: the content could not be ingested"),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the index");
            state.status.set_problem(format!("cannot open the index: {e}"));
        }
    }
}
