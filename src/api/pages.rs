//! The pages the binary serves, with their assets embedded (no CDN, no external network): the
//! educators' review page `/educator`, the learners' lesson `/` (and a page per component,
//! `/components/{id}`), their passport `/me`, and the embeddable tutor `/widget.js`. Pages hold no data: their script calls the API with
//! the token the user gives (or none, in dev mode).

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The assets under `/assets/`: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("tutor.css", "text/css; charset=utf-8", include_str!("../../assets/tutor.css")),
    ("educator.js", "text/javascript; charset=utf-8", include_str!("../../assets/educator.js")),
    ("charts.js", "text/javascript; charset=utf-8", include_str!("../../assets/charts.js")),
    ("lesson.js", "text/javascript; charset=utf-8", include_str!("../../assets/lesson.js")),
    ("me.js", "text/javascript; charset=utf-8", include_str!("../../assets/me.js")),
    ("learner.js", "text/javascript; charset=utf-8", include_str!("../../assets/learner.js")),
    ("widget.css", "text/css; charset=utf-8", include_str!("../../assets/widget.css")),
];

/// The names of the assets.
pub(super) fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|(n, _, _)| *n).collect()
}

/// Pages allow their own scripts and styles only, and are never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn page(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /educator`.
pub(super) async fn educator() -> Response {
    page(include_str!("../../assets/educator.html"))
}

/// `GET /assets/{file}`.
pub(super) async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (_, ct, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| ApiError::not_found("not_found", format!("no asset '{file}'")))?;
    Ok((
        [(header::CONTENT_TYPE, *ct), (header::X_CONTENT_TYPE_OPTIONS, "nosniff"), (header::CACHE_CONTROL, "no-cache")],
        *body,
    )
        .into_response())
}

/// `GET /`: the demo lesson.
pub(super) async fn lesson() -> Response {
    page(include_str!("../../assets/lesson.html"))
}

/// `GET /components/{id}`: one component, for a learner (the lesson page in one-component mode).
pub(super) async fn component(Path(_id): Path<String>) -> Response {
    page(include_str!("../../assets/lesson.html"))
}

/// `GET /me`: the learner's own passport, with reasons.
pub(super) async fn me() -> Response {
    page(include_str!("../../assets/me.html"))
}

/// `GET /widget.js`: the embeddable tutor, for any content page (served to any origin; what
/// it calls is under the CORS allow-list).
pub(super) async fn widget() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        WIDGET_JS,
    )
        .into_response()
}

/// The widget's script.
pub const WIDGET_JS: &str = include_str!("../../assets/widget.js");
