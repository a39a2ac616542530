//! The daemon's router, state and service endpoints (`/health`, `/ready`, shutdown). `serve`
//! takes a bound listener and a shutdown signal, so tests bind port 0 and the `daemon serve`
//! command binds the configured port. The login handlers are in `login`.

use std::future::Future;
use std::sync::Arc;

use authsome_vault::{AuditEvent, AuditLog, Home, Vault};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::login;
use super::security::{self, Guard};
use super::sessions::Sessions;
use super::ui::{self, Grants};
use crate::error::{CliError, Kind};
use crate::providers::Catalog;

/// What a daemon instance is.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) home: Home,
    /// The port the listener is bound to (for the `Host` check and default URLs).
    pub(crate) port: u16,
    /// `AUTHSOME_SERVER_BASE_URL`: the public base of form and callback URLs.
    pub(crate) public_base: Option<String>,
    /// The API's bearer token (the content of `daemon.token`); also the key of the identity
    /// proof `/health` gives.
    pub(crate) token: SecretString,
}

pub(crate) struct AppState {
    pub(crate) guard: Guard,
    pub(crate) token: SecretString,
    pub(super) home: Home,
    /// Base of the URLs the daemon hands out (`http://127.0.0.1:7998`).
    pub(super) base: String,
    pub(super) sessions: Sessions,
    /// One-time links to the overview and the browsers they let in.
    pub(super) ui: Grants,
    stop: tokio::sync::Notify,
}

impl AppState {
    pub(super) fn redirect_uri(&self) -> String {
        format!("{}/auth/callback/oauth", self.base)
    }

    pub(super) fn audit(&self, profile: &str, event: AuditEvent) {
        if let Err(e) = AuditLog::new(self.home.audit_path()).append(&event.profile(profile)) {
            tracing::warn!(error = %e, "could not write the audit log");
        }
    }
}

/// Serve until `shutdown` resolves or an authenticated `POST /api/shutdown` arrives.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let base = config
        .public_base
        .clone()
        .map(|b| b.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.port));
    let state = Arc::new(AppState {
        guard: Guard::new(config.port, config.public_base.as_deref()),
        token: config.token,
        home: config.home,
        base,
        sessions: Sessions::default(),
        ui: Grants::default(),
        stop: tokio::sync::Notify::new(),
    });
    let app = router(state.clone());
    let stopper = state.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown => {}
                () = stopper.stop.notified() => {}
            }
        })
        .await
}

fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/ready", get(ready))
        .route("/auth/sessions", post(login::start_session))
        .route("/auth/sessions/{id}", get(login::get_session))
        .route("/api/shutdown", post(shutdown))
        .route("/api/ui", post(ui::issue))
        .route_layer(middleware::from_fn_with_state(state.clone(), security::require_token));
    Router::new()
        .route("/health", get(health))
        .route("/auth/sessions/{id}/open/{capability}", get(login::open))
        .route("/auth/sessions/{id}/input", get(login::form).post(login::submit))
        .route("/auth/callback/oauth", get(login::callback))
        .route("/ui/open/{capability}", get(ui::open))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .merge(api)
        .layer(middleware::from_fn_with_state(state.clone(), security::host_and_origin))
        .with_state(state)
}

/// Run `work` (SQLite, key files, the keychain) on the blocking pool, never on the async
/// workers: a store busy for seconds must not stall `/health` or other logins.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CliError> + Send + 'static,
) -> Result<T, CliError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CliError::new(Kind::Generic, "a daemon task failed").cause(e))?
}

/// A `CliError` as an API answer: `{"error": CLASS, "message", "hint", "causes"}`.
pub(super) struct ApiError(CliError);

impl From<CliError> for ApiError {
    fn from(e: CliError) -> Self {
        Self(e)
    }
}
impl From<authsome_vault::Error> for ApiError {
    fn from(e: authsome_vault::Error) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.kind {
            Kind::ProviderNotFound | Kind::ConnectionNotFound => StatusCode::NOT_FOUND,
            Kind::Usage | Kind::AuthenticationFailed | Kind::InputCancelled => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(error_json(&self.0))).into_response()
    }
}

fn error_json(e: &CliError) -> Value {
    json!({"error": e.kind.class_name(), "message": e.message, "hint": e.hint, "causes": e.causes})
}

/// `GET /health[?nonce=N]`: upstream's public document. Nothing in it tells this home's
/// daemon from any other program; with a nonce it adds `proof`, which only a holder of the
/// token can compute (see `security::health_proof`).
async fn health(State(state): State<Arc<AppState>>, Query(query): Query<HealthQuery>) -> Json<Value> {
    let mut doc = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": "local",
        "pid": std::process::id(),
    });
    if let Some(nonce) = query.nonce.filter(|n| (16..=256).contains(&n.len())) {
        doc["proof"] = security::health_proof(state.token.expose_secret(), &nonce, state.home.root()).into();
    }
    Json(doc)
}

#[derive(Debug, Deserialize)]
struct HealthQuery {
    nonce: Option<String>,
}

async fn ready(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let home = state.home.clone();
    Ok(Json(blocking(move || Ok(readiness(&home))).await?))
}

/// The checks of `/ready`: config, provider files, and a vault round trip.
fn readiness(home: &Home) -> Value {
    let mut issues = Vec::new();
    let config = match authsome_vault::Config::load(&home.config_path()) {
        Ok(_) => "ok",
        Err(e) => {
            issues.push(e.to_string());
            "error"
        }
    };
    let catalog = Catalog::load(home);
    let providers = if catalog.problems.is_empty() { "ok" } else { "warning" };
    issues.extend(catalog.problems.iter().map(|p| format!("{}: {}", p.path.display(), p.message)));
    let vault = match authsome_vault::profiles::default_profile(home)
        .and_then(|profile| Vault::open(home, &profile))
        .and_then(|vault| vault.list_connections())
    {
        Ok(_) => "ok",
        Err(e) => {
            issues.push(e.to_string());
            "error"
        }
    };
    let ready = config == "ok" && vault == "ok";
    json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {"config": config, "providers": providers, "vault": vault},
        "issues": issues,
    })
}

async fn shutdown(State(state): State<Arc<AppState>>) -> Json<Value> {
    state.stop.notify_one();
    Json(json!({"status": "stopping"}))
}
