//! The HTTP side of the limits (`crate::app::limits`): requests per minute per client address
//! (before the token is checked) and per caller (after), each answered 429 with `Retry-After`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::access::Caller;
use super::{ApiError, AppState};

/// The 429 of a rate limit: `what` says whose.
pub fn rate_limited(what: &str, wait: Duration) -> ApiError {
    let secs = wait.as_secs_f64().ceil() as u64;
    ApiError::TooMany {
        code: "rate_limited",
        message: format!("too many requests {what}; retry in {secs} s"),
        retry_after: secs.max(1),
    }
}

/// The client's address: the peer of the connection; an IPv6 address by its /64 network (one
/// host is given a whole /64, and could otherwise rotate through it).
fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| match c.0.ip() {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("mapped")),
        v4 => v4,
    })
}

/// Health and readiness probes are not limited: they are cheap, and an orchestrator polls them.
fn is_probe(req: &Request) -> bool {
    matches!(req.uri().path(), "/healthz" | "/readyz")
}

/// Requests per minute per client address, before anything else is done for them.
pub async fn per_address(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if !is_probe(&req)
        && let Some(ip) = client_ip(&req)
        && let Err(wait) = app.limits.per_address.take(&ip.to_string())
    {
        return rate_limited("from this address", wait).into_response();
    }
    next.run(req).await
}

/// Requests per minute per caller (the token's role and subject; the address in dev mode).
pub async fn per_caller(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let key = match req.extensions().get::<Caller>() {
        Some(c) if !c.dev => Some(c.key()),
        _ => client_ip(&req).map(|ip| format!("addr:{ip}")),
    };
    if !is_probe(&req)
        && let Some(key) = key
        && let Err(wait) = app.limits.per_caller.take(&key)
    {
        return rate_limited("for this caller", wait).into_response();
    }
    next.run(req).await
}

/// The 429 for a learner with as many chat turns running as allowed.
pub fn too_many_turns(limit: u32) -> ApiError {
    ApiError::TooMany {
        code: "too_many_turns",
        message: format!("{limit} chat turn(s) of this learner are still running; wait for one to finish"),
        retry_after: 1,
    }
}
