//! The pages the binary serves, with their assets embedded (no CDN, no external network): the
//! educators' review page `/educator`. Pages hold no data: their script calls the API with
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
