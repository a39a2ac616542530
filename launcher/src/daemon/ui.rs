//! The daemon's overview page (`authsome ui`): every profile's connections and the providers
//! one can log in to, without any secret (record metadata only, never a key or token).
//!
//! Reached the way login forms are: the CLI asks the API (bearer token) for a one-time URL,
//! the first browser that opens it gets an HttpOnly, SameSite=Strict cookie and is sent on to
//! `/ui/`, and `/ui/` answers only browsers holding such a cookie. Another local user who reads
//! the URL (it is in the browser opener's argv) finds it already spent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use authsome_vault::{Home, Vault};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};

use super::pages::{self, escape};
use super::security;
use super::server::AppState;
use super::sessions::SESSION_TTL;
use crate::auth::pkce::random_token;
use crate::providers::Catalog;

/// The cookie of a browser let into the overview.
const UI_COOKIE: &str = "authsome_ui";

/// Unused one-time URLs and the browsers they let in, each with its expiry (Unix seconds).
#[derive(Default)]
pub(crate) struct Grants {
    inner: Mutex<GrantState>,
}

#[derive(Default)]
struct GrantState {
    pending: HashMap<String, i64>,
    bound: HashMap<String, i64>,
}

impl Grants {
    /// A new one-time capability.
    fn issue(&self) -> String {
        let capability = random_token(32);
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = authsome_vault::time::now_seconds();
        state.pending.retain(|_, expires| *expires > now);
        state.bound.retain(|_, expires| *expires > now);
        state.pending.insert(capability.clone(), now + SESSION_TTL);
        capability
    }

    /// Spend `capability` (once): the new browser's cookie value.
    fn open(&self, capability: &str) -> Option<String> {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = authsome_vault::time::now_seconds();
        let expires = state.pending.remove(capability).filter(|expires| *expires > now)?;
        let cookie = random_token(32);
        // The browser keeps the overview for the rest of the link's lifetime.
        state.bound.insert(cookie.clone(), expires);
        Some(cookie)
    }

    fn admits(&self, cookie: Option<&str>) -> bool {
        let Some(cookie) = cookie else { return false };
        let state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.bound.get(cookie).is_some_and(|expires| *expires > authsome_vault::time::now_seconds())
    }
}

/// `POST /api/ui` (bearer token): a one-time URL of the overview.
pub(super) async fn issue(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let url = format!("{}/ui/open/{}", state.base, state.ui.issue());
    (StatusCode::CREATED, Json(json!({"url": url})))
}

/// `GET /ui/open/{capability}`: the first browser gets the cookie and goes on to `/ui/`.
pub(super) async fn open(State(state): State<Arc<AppState>>, Path(capability): Path<String>) -> Response {
    let Some(cookie) = state.ui.open(&capability) else {
        let page = pages::message(
            "Unknown link",
            "This link is unknown, expired, or was already opened. Run `authsome ui` again.",
        );
        return (StatusCode::NOT_FOUND, page).into_response();
    };
    let set = security::binding_cookie(UI_COOKIE, &cookie, "/ui", state.base.starts_with("https://"));
    (StatusCode::SEE_OTHER, [(header::SET_COOKIE, set), (header::LOCATION, "/ui/".to_string())]).into_response()
}

/// `GET /ui/`: the overview, for a browser let in by `open` (403 otherwise).
pub(super) async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !state.ui.admits(security::cookie(&headers, UI_COOKIE)) {
        let page = pages::message("Refused", "Open this page with `authsome ui`.");
        return (StatusCode::FORBIDDEN, page).into_response();
    }
    let home = state.home.clone();
    // SQLite and config files: off the async workers.
    match tokio::task::spawn_blocking(move || overview(&home)).await {
        Ok(page) => page.into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, pages::message("Error", "The overview failed.")).into_response(),
    }
}

/// The page: connections per profile, then the providers. Only metadata is read.
fn overview(home: &Home) -> Html<String> {
    let catalog = Catalog::load(home);
    let mut body = String::new();
    let profiles = authsome_vault::profiles::list(home).unwrap_or_default();
    let mut connected = std::collections::BTreeSet::new();
    for profile in &profiles {
        body.push_str(&format!("<h2>Profile <code>{}</code></h2>", escape(&profile.name)));
        let connections = Vault::open(home, &profile.name).and_then(|v| v.list_connections());
        match connections {
            Ok(list) if list.is_empty() => body.push_str("<p>No connections yet.</p>"),
            Ok(list) => {
                body.push_str(
                    "<table><tr><th>Provider</th><th>Connection</th><th>Type</th><th>Status</th><th>Expires</th></tr>",
                );
                for meta in list {
                    connected.insert(meta.provider.clone());
                    let expires = meta.expires_at.map(authsome_vault::time::iso_z_seconds).unwrap_or_default();
                    body.push_str(&format!(
                        "<tr><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(&meta.provider),
                        escape(&meta.name),
                        if meta.is_default { " (default)" } else { "" },
                        escape(meta.auth_type.as_str()),
                        escape(meta.status.as_str()),
                        escape(&expires),
                    ));
                }
                body.push_str("</table>");
            }
            Err(e) => body.push_str(&format!("<p class=\"error\">{}</p>", escape(&e.to_string()))),
        }
    }
    body.push_str("<h2>Providers</h2><ul>");
    for entry in catalog.entries() {
        let provider = &entry.provider;
        let mark = if connected.contains(&provider.name) { " ✓" } else { "" };
        body.push_str(&format!(
            "<li>{} <code>{}</code>{mark} — <code>authsome login {}</code></li>",
            escape(&provider.display_name),
            escape(&provider.name),
            escape(&provider.name),
        ));
    }
    body.push_str("</ul>");
    pages::page("authsome", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capability_lets_in_one_browser_once() {
        let grants = Grants::default();
        let capability = grants.issue();
        assert!(grants.open("forged").is_none());
        let cookie = grants.open(&capability).expect("first open");
        assert!(grants.open(&capability).is_none(), "one time only");
        assert!(grants.admits(Some(&cookie)));
        assert!(!grants.admits(Some("other")) && !grants.admits(None));
    }
}
