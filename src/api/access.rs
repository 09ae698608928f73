//! Who may call what. [`authenticate`] verifies the bearer token of every request (or, in dev
//! mode, lets everyone in as an admin) and puts the [`Caller`] into the request; handlers take
//! the `Caller` and check it against the resource with the functions here. Routes open to
//! anyone are [`OPEN`]; every other route without a token is 401.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::auth::{AuthError, Principal, Role};
use crate::content::{Component, Library};
use crate::passport::LearnerId;

/// Routes anyone may call, without a token (the pages hold no data: they call the API with
/// the token the user gives them).
pub const OPEN: &[&str] = &["/healthz", "/readyz", "/openapi.json", "/educator", "/", "/me", "/widget.js"];

/// Whether a path is open to anyone: an [`OPEN`] route, a component's page, or a page's asset.
pub fn is_open(path: &str) -> bool {
    OPEN.contains(&path) || path.starts_with("/assets/") || path.starts_with("/components/")
}

/// The verified caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or(ApiError::Unauthorized(AuthError::Missing))
    }
}

/// Verifies the request's bearer token and puts the caller into the request.
pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = match &app.verifier {
        None => Some(Principal::dev()),
        Some(v) => match bearer(&req) {
            Ok(None) => None,
            Ok(Some(token)) => match v.verify(token).await {
                Ok(p) => Some(p),
                Err(e) => return ApiError::Unauthorized(e).into_response(),
            },
            Err(e) => return ApiError::Unauthorized(e).into_response(),
        },
    };
    match caller {
        Some(p) => {
            tracing::Span::current().record("caller", tracing::field::display(p.key()));
            req.extensions_mut().insert(Caller(Arc::new(p)));
        }
        None if !is_open(req.uri().path()) => {
            return ApiError::Unauthorized(AuthError::Missing).into_response();
        }
        None => {}
    }
    next.run(req).await
}

/// The token of an `Authorization: Bearer …` header, if there is one.
fn bearer(req: &Request) -> Result<Option<&str>, AuthError> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AuthError::Invalid("the Authorization header is not text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(AuthError::Invalid("use Authorization: Bearer <JWT>".into())),
    }
}

/// The learner a request acts for: a learner token's own (a request may repeat it, not name
/// another: 403); for anyone else, the one the request names (`missing` when it names none).
pub fn acting_for(
    caller: &Caller,
    named: Option<&str>,
    missing: impl FnOnce() -> ApiError,
) -> Result<LearnerId, ApiError> {
    let named = named.map(|l| LearnerId::parse(l).map_err(ApiError::invalid("invalid_learner"))).transpose()?;
    match (caller.learner(), named) {
        (Some(own), None) => Ok(own),
        (Some(own), Some(named)) if named == own => Ok(own),
        (Some(_), Some(_)) => Err(not_yours(caller)),
        (None, Some(named)) => Ok(named),
        (None, None) => Err(missing()),
    }
}

/// 403 unless the caller is `learner` or an admin.
pub fn own(caller: &Caller, learner: &LearnerId) -> Result<(), ApiError> {
    if caller.is_or_admin(learner) { Ok(()) } else { Err(not_yours(caller)) }
}

/// 403 unless the caller is `learner`, an admin, or a service whose courses include the
/// component's.
pub fn own_or_service(caller: &Caller, learner: &LearnerId, component: &Component) -> Result<(), ApiError> {
    own_or_service_in(caller, learner, &component.course)
}

/// 403 unless the caller is `learner`, an admin, or a service whose courses include `course`.
pub fn own_or_service_in(caller: &Caller, learner: &LearnerId, course: &str) -> Result<(), ApiError> {
    if caller.is_or_admin(learner) || (caller.role == Role::Service && caller.covers(course)) {
        Ok(())
    } else if caller.role == Role::Service {
        Err(out_of_scope(course))
    } else {
        Err(not_yours(caller))
    }
}

/// The courses whose learner data the caller may see for `learner`: all of them for the
/// learner and an admin, a service's own courses, none for anyone else (403).
pub fn readable_courses(caller: &Caller, lib: &Library, learner: &LearnerId) -> Result<Vec<String>, ApiError> {
    if caller.is_or_admin(learner) {
        Ok(lib.courses.keys().cloned().collect())
    } else if caller.role == Role::Service {
        Ok(lib.courses.keys().filter(|c| caller.covers(c)).cloned().collect())
    } else {
        Err(not_yours(caller))
    }
}

/// The 403 for a learner's data that is not the caller's.
pub fn not_yours(caller: &Caller) -> ApiError {
    match caller.role {
        Role::Learner => ApiError::forbidden("not_your_learner", "a learner token reaches only its own learner's data"),
        Role::Educator => ApiError::forbidden(
            "forbidden",
            "educators see flags and analytics of their courses, not learners' data directly",
        ),
        _ => ApiError::forbidden("forbidden", "this token may not do this"),
    }
}

/// The 403 for a course outside a token's scopes.
pub fn out_of_scope(course: &str) -> ApiError {
    ApiError::forbidden("course_out_of_scope", format!("the token's courses do not include '{course}'"))
}
