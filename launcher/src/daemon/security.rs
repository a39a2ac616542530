//! Request guards: `Host` (DNS-rebinding), `Origin` (cross-site requests), and the bearer
//! token of the JSON API; and the daemon's proof of identity for `/health` (an HMAC of the
//! caller's nonce under the token, so the public endpoint reveals nothing a squatter on the
//! port could replay). The checks are pure functions; the middleware applies them.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

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

/// What the proof is bound to, so a MAC made under the token for another purpose never
/// counts as a health proof.
const PROOF_CONTEXT: &[u8] = b"authsome daemon health proof v1";

/// HMAC-SHA256 (RFC 2104). Hand-written over `sha2` because no HMAC crate is vendored in this
/// workspace; the RFC 4231 vectors below pin it.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block_key.map(|k| k ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The proof `/health?nonce=N` answers: hex HMAC-SHA256(token, nonce || 0 || context || 0 ||
/// home). Only a holder of `daemon.token` (0600) can make it, a fresh nonce per probe defeats
/// replay, and the home binds it to one `AUTHSOME_HOME` (a token copied into another home
/// does not make this daemon that home's).
pub(crate) fn health_proof(token: &str, nonce: &str, home: &std::path::Path) -> String {
    let home = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    let mut message = Vec::new();
    message.extend_from_slice(nonce.as_bytes());
    message.push(0);
    message.extend_from_slice(PROOF_CONTEXT);
    message.push(0);
    message.extend_from_slice(home.as_os_str().as_encoded_bytes());
    hmac_sha256(token.as_bytes(), &message).iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value that binds a browser to what lives under `path`: unreadable to
/// scripts, never sent on cross-site requests, `Secure` when the daemon is served over HTTPS.
pub(crate) fn binding_cookie(name: &str, value: &str, path: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict{secure}")
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
    if !bearer_ok(state.token.expose_secret(), header_str(request.headers(), header::AUTHORIZATION)) {
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
    fn hmac_matches_rfc_4231() {
        let hex = |bytes: [u8; 32]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        // Test case 2 (short key) and 6 (key longer than the block).
        assert_eq!(
            hex(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn proofs_depend_on_token_and_nonce() {
        let home = std::path::Path::new("/nonexistent/home-a");
        let proof = health_proof("token", "nonce", home);
        assert_eq!(proof.len(), 64);
        assert_eq!(proof, health_proof("token", "nonce", home));
        assert_ne!(proof, health_proof("other", "nonce", home));
        assert_ne!(proof, health_proof("token", "nonce2", home));
        assert_ne!(proof, health_proof("token", "nonce", std::path::Path::new("/nonexistent/home-b")));
    }

    #[test]
    fn cookies() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; authsome_login=xyz".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&headers, "authsome_login"), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "authsome"), None);
        let set = binding_cookie("n", "v", "/auth/sessions/s", false);
        assert_eq!(set, "n=v; Path=/auth/sessions/s; HttpOnly; SameSite=Strict");
        assert!(binding_cookie("n", "v", "/", true).ends_with("; Secure"));
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
