//! Request guards: `Host` (DNS-rebinding), `Origin` (cross-site requests), and the bearer
//! token of the JSON API. The checks are pure functions; the middleware applies them.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::server::AppState;
use crate::auth::pkce::constant_time_eq;

/// Who may talk to the daemon.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// `host:port` values accepted in `Host`, lower case.
    pub(crate) hosts: Vec<String>,
    /// Origins accepted in `Origin` (`http://127.0.0.1:7998`).
    pub(crate) origins: Vec<String>,
}

impl Guard {
    /// The daemon's own names on `port`, plus the public base URL's (if any).
    pub(crate) fn new(port: u16, public_base: Option<&str>) -> Self {
        let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")];
        let mut origins: Vec<String> = hosts.iter().map(|h| format!("http://{h}")).collect();
        if let Some(url) = public_base.and_then(|b| url::Url::parse(b).ok())
            && let Some(host) = url.host_str()
        {
            let port = url.port_or_known_default().unwrap_or(80);
            let authority = format!("{}:{port}", host.to_ascii_lowercase());
            if url.port().is_none() {
                hosts.push(host.to_ascii_lowercase());
            }
            hosts.push(authority);
            origins.push(url.origin().ascii_serialization());
        }
        Self { hosts, origins }
    }

    pub(crate) fn host_ok(&self, host: Option<&str>) -> bool {
        host.is_some_and(|h| self.hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(h.trim())))
    }

    /// No `Origin` (a CLI, a top-level navigation) is fine; another site's is not.
    pub(crate) fn origin_ok(&self, origin: Option<&str>) -> bool {
        origin.is_none_or(|o| self.origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(o.trim())))
    }
}

/// `Authorization: Bearer <token>` with the daemon's token.
pub(crate) fn bearer_ok(expected: &str, authorization: Option<&str>) -> bool {
    let Some(value) = authorization else { return false };
    let Some((scheme, token)) = value.split_once(' ') else { return false };
    scheme.eq_ignore_ascii_case("bearer") && constant_time_eq(token.trim(), expected)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every route: the `Host` must be ours (421 otherwise) and a present `Origin` too (403).
pub(crate) async fn host_and_origin(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if !state.guard.host_ok(header_str(headers, header::HOST)) {
        return (StatusCode::MISDIRECTED_REQUEST, "this daemon only answers to its own address\n").into_response();
    }
    if !state.guard.origin_ok(header_str(headers, header::ORIGIN)) {
        return (StatusCode::FORBIDDEN, "cross-origin requests are refused\n").into_response();
    }
    next.run(request).await
}

/// API routes: the bearer token from `daemon.token` (401 otherwise).
pub(crate) async fn require_token(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if !bearer_ok(&state.token, header_str(request.headers(), header::AUTHORIZATION)) {
        let body = serde_json::json!({
            "error": "unauthorized",
            "message": "this API needs the bearer token from AUTHSOME_HOME/daemon/daemon.token",
        });
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], axum::Json(body)).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        let guard = Guard::new(7998, None);
        assert!(guard.host_ok(Some("127.0.0.1:7998")));
        assert!(guard.host_ok(Some("LOCALHOST:7998")));
        for bad in [None, Some("127.0.0.1"), Some("127.0.0.1:7999"), Some("evil.example:7998"), Some("")] {
            assert!(!guard.host_ok(bad), "{bad:?}");
        }
        assert!(guard.origin_ok(None));
        assert!(guard.origin_ok(Some("http://127.0.0.1:7998")));
        assert!(!guard.origin_ok(Some("https://evil.example")));
        assert!(!guard.origin_ok(Some("null")));

        let public = Guard::new(7998, Some("https://auth.example.com"));
        assert!(public.host_ok(Some("auth.example.com")));
        assert!(public.host_ok(Some("auth.example.com:443")));
        assert!(public.origin_ok(Some("https://auth.example.com")));
    }

    #[test]
    fn bearer() {
        assert!(bearer_ok("t0k", Some("Bearer t0k")));
        assert!(bearer_ok("t0k", Some("bearer t0k")));
        for bad in [None, Some("Bearer"), Some("Bearer t0K"), Some("Basic t0k"), Some("t0k")] {
            assert!(!bearer_ok("t0k", bad), "{bad:?}");
        }
    }
}
