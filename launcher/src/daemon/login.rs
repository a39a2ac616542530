//! The login handlers: starting a session (API), the browser forms (API key, OAuth client),
//! and the OAuth callback. Each flow starts exactly once per session (upstream bug 6).
//!
//! Every vault access runs through `server::blocking` (SQLite may wait seconds on a busy
//! store) and takes keys from `NoPrompt`: the daemon never asks on a terminal, a passphrase
//! profile needs `AUTHSOME_PASSPHRASE` in the daemon's environment (or its cached key).

use std::collections::HashMap;
use std::sync::Arc;

use authsome_vault::{AuditEvent, ClientRecord, CreateOptions, Home, Vault};
use axum::Json;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use super::server::{ApiError, AppState, blocking};
use super::sessions::{DeviceInfo, Need, Session, Status};
use super::{pages, security};
use crate::auth::code::Authorization;
use crate::auth::{self, ClientCredentials, Endpoints, code, dcr, device};
use crate::context::NoPrompt;
use crate::error::{CliError, Kind};
use crate::providers::{AuthType, Catalog, Flow, Provider};

/// `POST /auth/sessions`: start a login.
#[derive(Debug, Deserialize)]
pub(super) struct StartRequest {
    #[serde(default = "default_profile")]
    profile: String,
    provider: String,
    #[serde(default = "default_connection")]
    connection: String,
    #[serde(default)]
    flow: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    base_url: Option<String>,
}

fn default_profile() -> String {
    authsome_vault::DEFAULT_PROFILE.to_string()
}
fn default_connection() -> String {
    "default".to_string()
}

pub(crate) fn parse_flow(word: &str) -> Result<Flow, CliError> {
    match word {
        "pkce" => Ok(Flow::Pkce),
        "device_code" => Ok(Flow::DeviceCode),
        "dcr_pkce" => Ok(Flow::DcrPkce),
        "api_key" => Ok(Flow::ApiKey),
        other => Err(CliError::new(Kind::Usage, format!("unknown flow '{other}'"))),
    }
}

pub(super) async fn start_session(
    State(state): State<Arc<AppState>>,
    Json(request): Json<StartRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authsome_vault::validate_name("profile", &request.profile)?;
    authsome_vault::validate_name("connection", &request.connection)?;
    let provider = {
        let (home, name) = (state.home.clone(), request.provider.clone());
        blocking(move || Ok(Catalog::load(&home).require(&name)?.provider.clone())).await?
    };
    let flow = match request.flow.as_deref() {
        Some(word) => parse_flow(word)?,
        None => provider.flow,
    };
    if (flow == Flow::ApiKey) != (provider.auth_type == AuthType::ApiKey) {
        return Err(CliError::new(
            Kind::Usage,
            format!("flow '{}' does not fit {} ({})", flow.as_str(), provider.name, provider.auth_type.as_str()),
        )
        .into());
    }
    let mut session = Session::new(&request.profile, provider.clone(), &request.connection, flow);
    session.scopes = match request.scopes {
        Some(scopes) => scopes,
        None => auth::requested_scopes(&provider, None),
    };
    session.base_url = request.base_url.as_deref().map(auth::check_base_url).transpose()?;
    match flow {
        Flow::ApiKey => session.need = Need::ApiKey,
        Flow::Pkce => match stored_client(&state.home, &request.profile, &provider).await? {
            Some(client) => begin_authorization(&state, &mut session, client)?,
            None => session.need = Need::ClientCredentials,
        },
        Flow::DcrPkce => {
            let client = dcr_client(&state, &session).await?;
            begin_authorization(&state, &mut session, client)?;
        }
        Flow::DeviceCode => start_device(&state, &mut session).await?,
    }
    state.audit(
        &session.profile,
        AuditEvent::new("login")
            .provider(&provider.name)
            .connection(&session.connection)
            .field("flow", flow.as_str())
            .field("status", "started"),
    );
    let doc = session.to_json(&state.base);
    state.sessions.insert(session);
    Ok((StatusCode::CREATED, Json(doc)))
}

pub(super) async fn get_session(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .sessions
        .with(&id, |s| Json(s.to_json(&state.base)))
        .ok_or_else(|| CliError::new(Kind::ConnectionNotFound, format!("no login session '{id}'")).into())
}

/// The provider's stored OAuth client, if any.
async fn stored_client(home: &Home, profile: &str, provider: &Provider) -> Result<Option<ClientCredentials>, CliError> {
    let (home, profile, provider) = (home.clone(), profile.to_string(), provider.clone());
    blocking(move || {
        let vault = Vault::open(&home, &profile)?;
        let record = vault.client_with_secret(&NoPrompt, &provider.name)?;
        Ok(record.and_then(|r| ClientCredentials::from_record(&provider, &r)))
    })
    .await
}

/// Store `record` as the provider's OAuth client in `profile`.
async fn save_client(home: &Home, profile: &str, provider: &str, record: ClientRecord) -> Result<(), CliError> {
    let (home, profile, provider) = (home.clone(), profile.to_string(), provider.to_string());
    blocking(move || {
        let mut vault = Vault::open(&home, &profile)?;
        let (store, key) = vault.writer(&NoPrompt, CreateOptions::default())?;
        store.put_client(key, &provider, &record)?;
        Ok(())
    })
    .await
}

fn begin_authorization(state: &AppState, session: &mut Session, client: ClientCredentials) -> Result<(), CliError> {
    let endpoints = Endpoints::resolve(&session.provider, session.base_url.as_deref())?;
    let authorization =
        code::authorize(&session.provider, &endpoints, &client.id, &state.redirect_uri(), &session.scopes)?;
    session.authorization = Some(authorization);
    session.client = Some(client);
    session.need = Need::Nothing;
    Ok(())
}

/// The DCR client for this login: the stored registration when it fits our redirect URI,
/// else exactly one new registration (discovering the endpoint if the provider names none).
async fn dcr_client(state: &AppState, session: &Session) -> Result<ClientCredentials, CliError> {
    let provider = &session.provider;
    let redirect_uri = state.redirect_uri();
    let stored = {
        let (home, profile, name) = (state.home.clone(), session.profile.clone(), provider.name.clone());
        blocking(move || Ok(Vault::open(&home, &profile)?.client_with_secret(&NoPrompt, &name)?)).await?
    };
    if let Some(record) = stored.filter(|r| dcr::registration_fits(r, &redirect_uri))
        && let Some(client) = ClientCredentials::from_record(provider, &record)
    {
        return Ok(client);
    }
    let endpoints = Endpoints::resolve(provider, session.base_url.as_deref())?;
    let http = auth::http::client()?;
    let endpoint = match endpoints.registration {
        Some(endpoint) => endpoint,
        None => {
            let authorization = endpoints.authorization.as_deref().unwrap_or(&endpoints.token);
            dcr::discover_registration(&http, authorization).await?
        }
    };
    let method = auth::spec(provider)?.token_auth_method;
    let body = dcr::registration_body(provider, &redirect_uri, &auth::join_scopes(provider, &session.scopes), method);
    let record = dcr::register(&http, &endpoint, &body).await?;
    save_client(&state.home, &session.profile, &provider.name, record.clone()).await?;
    ClientCredentials::from_record(provider, &record)
        .ok_or_else(|| CliError::new(Kind::AuthenticationFailed, "the registered client has no id"))
}

async fn start_device(state: &Arc<AppState>, session: &mut Session) -> Result<(), CliError> {
    let provider = session.provider.clone();
    let client = stored_client(&state.home, &session.profile, &provider).await?.ok_or_else(|| {
        CliError::new(Kind::CredentialMissing, format!("no OAuth client is stored for {}", provider.name)).hint(
            format!(
                "pass --client-id for the first login: `authsome login {} --flow device_code --client-id ID`",
                provider.name
            ),
        )
    })?;
    let endpoints = Endpoints::resolve(&provider, session.base_url.as_deref())?;
    let http = auth::http::client()?;
    let scope = auth::join_scopes(&provider, &session.scopes);
    let authorization = device::start(&http, &endpoints, &client, Some(scope)).await?;
    session.device = Some(DeviceInfo {
        user_code: authorization.user_code.clone(),
        verification_uri: authorization.verification_uri.clone(),
        verification_uri_complete: authorization.verification_uri_complete.clone(),
    });
    session.expires_at = authsome_vault::time::now_seconds() + authorization.expires_in as i64;
    let body = auth::spec(&provider)?.device_token_request;
    let state = state.clone();
    let id = session.id.clone();
    let (profile, connection, scopes, base_url) =
        (session.profile.clone(), session.connection.clone(), session.scopes.clone(), session.base_url.clone());
    tokio::spawn(async move {
        let outcome = match device::poll(&http, &endpoints, &client, body, &authorization).await {
            Ok(token) => {
                let login =
                    Obtained { provider: &provider, connection: &connection, base_url, scopes, client: &client };
                store_token(&state.home, &profile, login, token).await
            }
            Err(e) => Err(e),
        };
        finish(&state, &id, &profile, &provider, &connection, Flow::DeviceCode, outcome);
    });
    Ok(())
}

/// What a finished login obtained its token for, and with which client.
struct Obtained<'a> {
    provider: &'a Provider,
    connection: &'a str,
    base_url: Option<String>,
    scopes: Vec<String>,
    client: &'a ClientCredentials,
}

/// Write a login's token to the vault, recording the client that obtained it.
async fn store_token(
    home: &Home,
    profile: &str,
    login: Obtained<'_>,
    token: auth::token::TokenResponse,
) -> Result<(), CliError> {
    let (meta, secrets) = auth::record_from_token(
        login.provider,
        login.connection,
        login.base_url.as_deref(),
        &login.scopes,
        token,
        login.client,
        authsome_vault::time::now_seconds(),
    );
    let (home, profile) = (home.clone(), profile.to_string());
    blocking(move || {
        let mut vault = Vault::open(&home, &profile)?;
        let (store, key) = vault.writer(&NoPrompt, CreateOptions::default())?;
        store.put_connection(key, &meta, &secrets)?;
        Ok(())
    })
    .await
}

/// Record a login's end in the session and the audit log.
fn finish(
    state: &AppState,
    id: &str,
    profile: &str,
    provider: &Provider,
    connection: &str,
    flow: Flow,
    outcome: Result<(), CliError>,
) {
    let status = if outcome.is_ok() { "success" } else { "failure" };
    let mut event = AuditEvent::new("login")
        .provider(&provider.name)
        .connection(connection)
        .field("flow", flow.as_str())
        .field("status", status);
    if let Err(e) = &outcome {
        event = event.field("error", e.message.clone());
    }
    state.audit(profile, event);
    state.sessions.with(id, |session| match outcome {
        Ok(()) => {
            session.status = Status::Completed;
            session.message = Some(format!("Logged in to {} ({}/{connection}).", provider.display_name, provider.name));
        }
        Err(e) => session.fail(e),
    });
}

/// The cookie that binds a browser to a login session (scoped to the session's path).
const BINDING_COOKIE: &str = "authsome_login";

/// `GET /auth/sessions/{id}/open/{capability}`: the URL a login opens. The first browser gets
/// the binding cookie and is sent on to the form without the capability; anyone else later
/// gets the page for an unknown link.
pub(super) async fn open(
    State(state): State<Arc<AppState>>,
    Path((id, capability)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let cookie = security::cookie(&headers, BINDING_COOKIE);
    let Some(Some(binding)) = state.sessions.with(&id, |s| s.open(&capability, cookie)) else {
        return used_link();
    };
    let path = format!("/auth/sessions/{id}");
    let set = security::binding_cookie(BINDING_COOKIE, &binding, &path, state.base.starts_with("https://"));
    (StatusCode::SEE_OTHER, [(header::SET_COOKIE, set), (header::LOCATION, format!("{path}/input"))]).into_response()
}

fn used_link() -> Response {
    (
        StatusCode::NOT_FOUND,
        pages::message(
            "Unknown login",
            "This login link is unknown, expired, or was already opened in another browser. \
             Start the login again from the command line.",
        ),
    )
        .into_response()
}

fn not_bound() -> Response {
    (
        StatusCode::FORBIDDEN,
        pages::message(
            "Refused",
            "This login belongs to the browser that opened its link first. Start the login again from the command line.",
        ),
    )
        .into_response()
}

/// `GET /auth/sessions/{id}/input`: the form the session still needs, or on to the provider.
/// Only for the browser bound to the session (403 otherwise).
pub(super) async fn form(State(state): State<Arc<AppState>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let action = format!("/auth/sessions/{id}/input");
    let redirect_uri = state.redirect_uri();
    let cookie = security::cookie(&headers, BINDING_COOKIE);
    state
        .sessions
        .with(&id, |s| match (s.status, s.need, &s.authorization) {
            _ if !s.is_bound_to(cookie) => not_bound(),
            (Status::WaitingForUser, Need::ClientCredentials, _) => {
                pages::client_form(&s.provider, &s.connection, &action, &s.csrf, &redirect_uri, None).into_response()
            }
            (Status::WaitingForUser, Need::ApiKey, _) => {
                pages::api_key_form(&s.provider, &s.connection, &action, &s.csrf, None).into_response()
            }
            (Status::WaitingForUser, Need::Nothing, Some(authorization)) => {
                Redirect::to(&authorization.url).into_response()
            }
            (Status::Completed, _, _) => {
                pages::message("Done", s.message.as_deref().unwrap_or("Logged in.")).into_response()
            }
            _ => session_ended(s),
        })
        .unwrap_or_else(unknown_session)
}

fn session_ended(s: &Session) -> Response {
    let text = s.error.as_ref().map(|e| e.message.clone()).unwrap_or_else(|| "This login is over.".into());
    (StatusCode::GONE, pages::message("Login ended", &format!("{text} Start it again from the command line.")))
        .into_response()
}

fn unknown_session() -> Response {
    (
        StatusCode::NOT_FOUND,
        pages::message(
            "Unknown login",
            "This login link is unknown or has expired. Start the login again from the command line.",
        ),
    )
        .into_response()
}

/// `POST /auth/sessions/{id}/input`: the form's answer. The browser must be the bound one
/// and the CSRF token must match (403 otherwise).
pub(super) async fn submit(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let cookie = security::cookie(&headers, BINDING_COOKIE);
    let snapshot = state.sessions.with(&id, |s| {
        let csrf_ok =
            s.is_bound_to(cookie) && fields.get("csrf").is_some_and(|t| auth::pkce::constant_time_eq(t, &s.csrf));
        (csrf_ok, s.status, s.need, s.profile.clone(), s.provider.clone(), s.connection.clone())
    });
    let Some((csrf_ok, status, need, profile, provider, connection)) = snapshot else { return unknown_session() };
    if !csrf_ok {
        return (StatusCode::FORBIDDEN, pages::message("Refused", "This form was not sent by authsome's own page."))
            .into_response();
    }
    if status != Status::WaitingForUser {
        return state.sessions.with(&id, |s| session_ended(s)).unwrap_or_else(unknown_session);
    }
    let form = FormAnswer { id: &id, profile: &profile, provider: &provider, connection: &connection };
    match need {
        Need::ClientCredentials => submit_client(&state, form, &fields).await,
        Need::ApiKey => submit_api_key(&state, form, &fields).await,
        Need::Nothing => {
            (StatusCode::BAD_REQUEST, pages::message("Nothing to enter", "This login needs no input.")).into_response()
        }
    }
}

/// The login a checked form answer belongs to.
#[derive(Clone, Copy)]
struct FormAnswer<'a> {
    id: &'a str,
    profile: &'a str,
    provider: &'a Provider,
    connection: &'a str,
}

impl FormAnswer<'_> {
    /// Where the form posts to (shown again with a problem).
    fn action(&self) -> String {
        format!("/auth/sessions/{}/input", self.id)
    }
}

/// The client-credentials form: save the client, then send the browser to the provider.
async fn submit_client(state: &Arc<AppState>, form: FormAnswer<'_>, fields: &HashMap<String, String>) -> Response {
    let FormAnswer { id, profile, provider, connection } = form;
    let client_id = fields.get("client_id").map(|s| s.trim().to_string()).unwrap_or_default();
    let secret = fields.get("client_secret").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if client_id.is_empty() || client_id.contains(char::is_control) {
        let csrf = state.sessions.with(id, |s| s.csrf.clone()).unwrap_or_default();
        let page = pages::client_form(
            provider,
            connection,
            &form.action(),
            &csrf,
            &state.redirect_uri(),
            Some("Enter the client ID."),
        );
        return (StatusCode::BAD_REQUEST, page).into_response();
    }
    let record = ClientRecord {
        client_id: Some(client_id),
        client_secret: secret.map(SecretString::from),
        ..ClientRecord::default()
    };
    let saved = save_client(&state.home, profile, &provider.name, record.clone()).await.and_then(|()| {
        ClientCredentials::from_record(provider, &record).ok_or_else(|| CliError::new(Kind::Generic, "no client id"))
    });
    let result = saved.and_then(|client| {
        state
            .sessions
            .with(id, |s| {
                begin_authorization(state, s, client).map(|()| s.authorization.as_ref().map(|a| a.url.clone()))
            })
            .unwrap_or(Ok(None))
    });
    match result {
        Ok(Some(url)) => Redirect::to(&url).into_response(),
        Ok(None) => unknown_session(),
        Err(e) => {
            state.sessions.with(id, |s| s.fail(e));
            state.sessions.with(id, |s| session_ended(s)).unwrap_or_else(unknown_session)
        }
    }
}

/// The API key form: check the key's shape, store it (off the async runtime), end the login.
async fn submit_api_key(state: &Arc<AppState>, form: FormAnswer<'_>, fields: &HashMap<String, String>) -> Response {
    let FormAnswer { id, profile, provider, connection } = form;
    let key = fields.get("api_key").map(|k| k.trim().to_string()).unwrap_or_default();
    let secret = SecretString::from(key.clone());
    let problem = if key.is_empty() || key.contains(char::is_control) {
        Some("Enter the key on one line.".to_string())
    } else {
        auth::api_key::check(provider, &secret).err().map(|e| e.message)
    };
    if let Some(problem) = problem {
        let csrf = state.sessions.with(id, |s| s.csrf.clone()).unwrap_or_default();
        return (
            StatusCode::BAD_REQUEST,
            pages::api_key_form(provider, connection, &form.action(), &csrf, Some(&problem)),
        )
            .into_response();
    }
    let outcome = {
        let (home, profile, provider, connection) =
            (state.home.clone(), profile.to_owned(), provider.clone(), connection.to_owned());
        blocking(move || {
            let mut vault = Vault::open(&home, &profile)?;
            let target = auth::api_key::StoreKey {
                provider: &provider,
                connection: &connection,
                kind: auth::api_key::KeyKind::ApiKey,
                base_url: None,
                replace: true,
            };
            Ok(auth::api_key::store(&mut vault, &NoPrompt, CreateOptions::default(), &target, secret)?)
        })
        .await
    };
    let ok = outcome.is_ok();
    finish(state, id, profile, provider, connection, Flow::ApiKey, outcome);
    if ok {
        pages::message("Saved", &format!("The {} key is stored. You can close this tab.", provider.display_name))
            .into_response()
    } else {
        state.sessions.with(id, |s| session_ended(s)).unwrap_or_else(unknown_session)
    }
}

/// `GET /auth/callback/oauth`: the provider sends the browser back with `code` and `state`
/// (and `iss`, RFC 9207). An unknown or used `state` gets a 400 page and nothing is written.
pub(super) async fn callback(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let taken = params.get("state").and_then(|s| state.sessions.take_by_state(s));
    let Some((id, authorization)) = taken else {
        return (
            StatusCode::BAD_REQUEST,
            pages::message(
                "Login not recognised",
                "This sign-in answer does not match a login in progress (unknown or expired state). Nothing was stored.",
            ),
        )
            .into_response();
    };
    let Some(login) = state.sessions.with(&id, |s| CodeLogin {
        profile: s.profile.clone(),
        provider: s.provider.clone(),
        connection: s.connection.clone(),
        flow: s.flow,
        scopes: s.scopes.clone(),
        base_url: s.base_url.clone(),
        client: s.client.clone(),
    }) else {
        return unknown_session();
    };
    let (profile, provider, connection, flow) =
        (login.profile.clone(), login.provider.clone(), login.connection.clone(), login.flow);
    let outcome = redeem_code(&state, &params, &authorization, login).await;
    let page = match &outcome {
        Ok(()) => (
            StatusCode::OK,
            pages::message(
                "Logged in",
                &format!("authsome is connected to {} ({connection}). You can close this tab.", provider.display_name),
            ),
        ),
        Err(e) => {
            let mut text = e.message.clone();
            for cause in &e.causes {
                text.push_str(&format!(" ({cause})"));
            }
            (StatusCode::BAD_REQUEST, pages::message("Login failed", &text))
        }
    };
    finish(&state, &id, &profile, &provider, &connection, flow, outcome);
    page.into_response()
}

/// What the OAuth callback needs of its session, copied out of the session lock.
struct CodeLogin {
    profile: String,
    provider: Provider,
    connection: String,
    flow: Flow,
    scopes: Vec<String>,
    base_url: Option<String>,
    client: Option<ClientCredentials>,
}

/// The provider's answer to an authorization request: refuse an error or a foreign issuer,
/// exchange the code for a token, store it.
async fn redeem_code(
    state: &AppState,
    params: &HashMap<String, String>,
    authorization: &Authorization,
    login: CodeLogin,
) -> Result<(), CliError> {
    let CodeLogin { profile, provider, connection, scopes, base_url, client, .. } = login;
    let provider = &provider;
    if let Some(error) = params.get("error") {
        let e = CliError::new(Kind::AuthenticationFailed, format!("{} refused the login", provider.display_name));
        return Err(e.cause(match params.get("error_description") {
            Some(description) => format!("{error}: {description}"),
            None => error.clone(),
        }));
    }
    let endpoints = Endpoints::resolve(provider, base_url.as_deref())?;
    if let (Some(iss), Some(authorization)) = (params.get("iss"), endpoints.authorization.as_deref()) {
        code::check_issuer(iss, authorization)?;
    }
    let code = params
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| CliError::new(Kind::AuthenticationFailed, "the provider sent no authorization code"))?;
    let client = client.ok_or_else(|| CliError::new(Kind::Generic, "the session has no OAuth client"))?;
    let http = auth::http::client()?;
    let token = code::exchange(&http, &endpoints, &client, code, authorization).await.map_err(|e| {
        e.into_cli(Kind::AuthenticationFailed, format!("{} refused the token exchange", provider.display_name))
    })?;
    let login = Obtained { provider, connection: &connection, base_url, scopes, client: &client };
    store_token(&state.home, &profile, login, token).await
}
