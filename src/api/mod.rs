//! The HTTP service: [`router`] over the application ([`AppState`]), and [`serve`], which binds,
//! starts the index lifecycle and runs until the shutdown future resolves. Only HTTP lives
//! here: routes, extractors, responses; the application is built by [`crate::app`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

mod chat;
mod error;
mod passport;

pub use error::ApiError;
pub use passport::{MAX_BATCH, MAX_EVENTS_BODY};

use crate::app::{App, AppError, Readiness};
use crate::config::Config;
use crate::content::Library;

/// What every handler works with: the application.
pub type AppState = Arc<App>;

/// The loaded content, or a 503 while there is none.
fn library(app: &App) -> Result<Arc<Library>, ApiError> {
    app.library().ok_or(ApiError::ContentNotLoaded)
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(passport::routes())
        .route("/v1/tutor/chat", axum::routing::post(chat::chat))
        .fallback(|| async { ApiError::not_found("not_found", "no such route") })
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(app): State<AppState>) -> Response {
    match app.readiness() {
        Readiness::Ready { manifest: m, warning } => {
            let mut body = json!({
                "status": "ready",
                "index": {"generation": m.generation, "components": m.components.len(), "chunks": m.chunks,
                          "dense": m.settings.dense.is_some()},
            });
            if let Some(w) = warning {
                body["warning"] = json!(w);
            }
            Json(body).into_response()
        }
        Readiness::NotReady(why) => ApiError::NotReady(why).into_response(),
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding the listener: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    App(#[from] AppError),
}

/// Binds `cfg.host:cfg.port` (port 0 picks one) and returns the address and the server
/// future; the index is prepared in the background (ingesting `content_dir` when the index is
/// missing or stale), with `/readyz` answering 503 until it is served.
pub async fn serve(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = std::io::Result<()>>), ServeError> {
    let app = App::open(cfg.clone()).await?;
    let listener = tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).await?;
    let addr = listener.local_addr()?;
    app.start();
    let router = router(app);
    // no Nagle: streamed deltas are small writes, and waiting for the peer's delayed ACK
    // would add up to 40 ms to a turn
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let server = async move { axum::serve(listener, router).with_graceful_shutdown(shutdown).await };
    Ok((addr, server))
}
