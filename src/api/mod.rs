//! The HTTP service: [`router`] over the application ([`AppState`]), and [`serve`], which binds,
//! starts the index lifecycle and runs until the shutdown future resolves. Only HTTP lives
//! here: routes, extractors, responses, the layers every request passes (request id and JSON
//! errors, rate limits, CORS, authentication, timeouts); the application is built by
//! [`crate::app`].
//!
//! Every route is listed once, in [`ROUTES`] (the `routes!` invocation below builds the router
//! from the same list); `tests/access.rs` walks every role over every route of that list.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

pub mod access;
mod chat;
mod educators;
mod envelope;
mod error;
mod learners;
mod limits;
mod openapi;
mod pages;
mod passport;
mod server;

pub use envelope::REQUEST_ID;
pub use error::ApiError;
pub use passport::{MAX_BATCH, MAX_EVENTS_BODY};

use crate::app::{App, AppError, Readiness};
use crate::auth::Verifier;
use crate::config::Config;
use crate::content::Library;

/// What every handler works with: the application.
pub type AppState = Arc<App>;

/// The loaded content, or a 503 while there is none.
fn library(app: &App) -> Result<Arc<Library>, ApiError> {
    app.library().ok_or(ApiError::ContentNotLoaded)
}

/// Builds [`ROUTES`] and the router of the same routes. After a route's handler come the
/// layers of that route alone.
macro_rules! routes {
    ($cfg:ident; $($method:ident $path:literal => $handler:expr $(, $layer:expr)*;)+) => {
        /// Every route, as (method, path).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),+];

        fn routes($cfg: &Config) -> Router<AppState> {
            Router::new()
                $(.route($path, axum::routing::on(axum::routing::MethodFilter::$method, $handler)$(.layer::<_, std::convert::Infallible>($layer))*))+
        }
    };
}

routes! { cfg;
    GET "/healthz" => healthz;
    GET "/readyz" => readyz;
    GET "/openapi.json" => openapi_json;
    GET "/metrics" => metrics, bounded(cfg);
    POST "/v1/events" => passport::post_events, DefaultBodyLimit::max(MAX_EVENTS_BODY), bounded(cfg);
    GET "/v1/learners/{id}/passport" => passport::get_passport, bounded(cfg);
    GET "/v1/learners/{id}/plan" => passport::get_plan, bounded(cfg);
    GET "/v1/learners/{id}/audit" => passport::get_audit, bounded(cfg);
    DELETE "/v1/learners/{id}" => passport::erase_learner, bounded(cfg);
    GET "/v1/me" => educators::me, bounded(cfg);
    GET "/v1/flags" => educators::list_flags, bounded(cfg);
    GET "/v1/flags/{id}" => educators::get_flag, bounded(cfg);
    POST "/v1/flags/{id}/acknowledge" => educators::acknowledge, DefaultBodyLimit::max(SMALL_BODY), bounded(cfg);
    POST "/v1/flags/{id}/resolve" => educators::resolve, DefaultBodyLimit::max(SMALL_BODY), bounded(cfg);
    POST "/v1/flags/{id}/reopen" => educators::reopen, DefaultBodyLimit::max(SMALL_BODY), bounded(cfg);
    GET "/v1/analytics/skills" => educators::skills_analytics, bounded(cfg);
    GET "/v1/analytics/components" => educators::components_analytics, bounded(cfg);
    GET "/v1/courses/{course}/priorities" => educators::get_priorities, bounded(cfg);
    PUT "/v1/courses/{course}/priorities" => educators::put_priorities, DefaultBodyLimit::max(SMALL_BODY), bounded(cfg);
    GET "/v1/skills/{skill}/model" => educators::skill_model, bounded(cfg);
    GET "/v1/components/{id}" => learners::get_component, bounded(cfg);
    POST "/v1/components/{id}/items/{item}/hint" => learners::hint, DefaultBodyLimit::max(SMALL_BODY), bounded(cfg);
    GET "/v1/learners/{id}/lesson" => learners::get_lesson, bounded(cfg);
    GET "/v1/learners/{id}/recommendations" => learners::get_recommendations, bounded(cfg);
    POST "/v1/learners/{id}/recommendations/{rec}/feedback" => learners::post_feedback, DefaultBodyLimit::max(SMALL_BODY), bounded(cfg);
    GET "/v1/learners/{id}/skills/{skill}/evidence" => learners::get_evidence, bounded(cfg);
    GET "/v1/sessions/{id}" => learners::get_session, bounded(cfg);
    GET "/v1/search" => learners::search, bounded(cfg);
    GET "/educator" => pages::educator;
    GET "/" => pages::lesson;
    GET "/me" => pages::me;
    GET "/components/{id}" => pages::component;
    GET "/widget.js" => pages::widget;
    GET "/assets/{file}" => pages::asset;
    // streams for as long as the turn takes (the turn has its own budget)
    POST "/v1/tutor/chat" => chat::chat, DefaultBodyLimit::max(chat::MAX_CHAT_BODY);
}

/// The largest body of the educators' small writes (a note, a list of skills).
const SMALL_BODY: usize = 16 * 1024;

/// The answer-time bound of a route that does not stream.
fn bounded(cfg: &Config) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(cfg.limits.request_timeout_secs))
}

/// All routes, with the layers every request passes, outermost first: the envelope (request
/// id, JSON errors), the per-address rate limit, CORS, authentication, the per-caller rate
/// limit, the body read timeout.
pub fn router(state: AppState) -> Router {
    let cfg = state.config.clone();
    let origins: Vec<_> = cfg.limits.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, REQUEST_ID])
        .expose_headers([REQUEST_ID, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600));
    routes(&cfg)
        .fallback(|| async { ApiError::not_found("not_found", "no such route") })
        .layer(RequestBodyTimeoutLayer::new(Duration::from_secs(cfg.limits.body_timeout_secs)))
        .layer(from_fn_with_state(state.clone(), limits::per_caller))
        .layer(from_fn_with_state(state.clone(), access::authenticate))
        .layer(cors)
        .layer(from_fn_with_state(state.clone(), limits::per_address))
        .layer(from_fn(envelope::envelope))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(app): State<AppState>) -> Response {
    let auth = Verifier::describe(app.verifier.as_deref());
    match app.readiness() {
        Readiness::Ready { manifest: m, warning } => {
            let mut body = json!({
                "status": "ready",
                "auth": auth,
                "index": {"generation": m.generation, "components": m.components.len(), "chunks": m.chunks,
                          "dense": m.settings.dense.is_some(),
                          "backend": if app.config.qdrant.url.is_some() { "qdrant" } else { "embedded" }},
            });
            if let Some(w) = warning {
                body["warning"] = json!(w);
            }
            Json(body).into_response()
        }
        Readiness::NotReady(why) => ApiError::NotReady(why).into_response(),
    }
}

async fn openapi_json() -> Json<serde_json::Value> {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOC.get_or_init(openapi::document).clone())
}

/// The (method, path) of every operation in `/openapi.json`.
pub fn documented_operations() -> Vec<(&'static str, &'static str)> {
    openapi::operations()
}

async fn metrics(State(app): State<AppState>, caller: access::Caller) -> Result<Response, ApiError> {
    if caller.role != crate::auth::Role::Admin {
        return Err(ApiError::forbidden("forbidden", "metrics are for admins (or set TUTOR_METRICS_ADDR)"));
    }
    Ok(metrics_text(&app))
}

/// The metrics, with the gauges read now.
fn metrics_text(app: &App) -> Response {
    let ready = matches!(app.readiness(), Readiness::Ready { .. });
    let gauges = [
        ("tutor_chat_turns_running", f64::from(app.limits.running_turns())),
        ("tutor_index_ready", f64::from(u8::from(ready))),
    ];
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&gauges)).into_response()
}

/// Serves `GET /metrics` alone, without authentication, on `addr` (until the process ends).
async fn serve_metrics(app: AppState, addr: &str) -> Result<SocketAddr, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let router = Router::new()
        .route("/metrics", axum::routing::get(|State(app): State<AppState>| async move { metrics_text(&app) }))
        .fallback(|| async { ApiError::not_found("not_found", "this listener serves GET /metrics only") })
        .with_state(app);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    tracing::info!(addr = %local, "metrics on http://{local}/metrics");
    Ok(local)
}

/// In dev mode on an empty database: seeds the demo learners once the content is loaded.
fn seed_demo_when_ready(app: AppState) {
    tokio::spawn(async move {
        let lib = loop {
            match app.library() {
                Some(lib) => break lib,
                None => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        match crate::app::demo::is_empty(&app).await {
            Ok(true) => {
                if let Err(e) = crate::app::demo::seed(&app, &lib).await {
                    tracing::warn!(error = %e, "could not seed the demo data");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not check for demo data"),
        }
    });
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding the listener: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(
        "refusing to serve on {0} without authentication: set TUTOR_JWT_SECRET (or TUTOR_JWKS_URL), \
         or bind a loopback address (TUTOR_HOST=127.0.0.1) for development"
    )]
    Unauthenticated(String),
}

/// Binds `cfg.host:cfg.port` (port 0 picks one) and returns the address and the server
/// future; the index is prepared in the background (ingesting `content_dir` when the index is
/// missing or stale), with `/readyz` answering 503 until it is served. Without authentication
/// configured it serves only on a loopback address.
pub async fn serve(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = std::io::Result<()>>), ServeError> {
    if !cfg.auth.enabled() && !cfg.binds_loopback() {
        return Err(ServeError::Unauthenticated(cfg.host.clone()));
    }
    let app = App::open(cfg.clone()).await?;
    let listener = tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).await?;
    let addr = listener.local_addr()?;
    if app.verifier.is_none() {
        tracing::warn!(%addr, "authentication is off (dev mode): anyone on this machine may call; set TUTOR_JWT_SECRET or TUTOR_JWKS_URL to require tokens");
    } else {
        tracing::info!(auth = Verifier::describe(app.verifier.as_deref()), "bearer tokens required");
    }
    app.start();
    app.start_retention();
    if cfg.demo && app.verifier.is_none() {
        seed_demo_when_ready(app.clone());
    }
    if let Some(m) = &cfg.metrics_addr {
        serve_metrics(app.clone(), m).await?;
    }
    let router = router(app);
    let l = &cfg.limits;
    let server = server::run(
        listener,
        router,
        Duration::from_secs(l.header_timeout_secs),
        Duration::from_secs(l.shutdown_grace_secs),
        shutdown,
    );
    Ok((addr, server))
}
