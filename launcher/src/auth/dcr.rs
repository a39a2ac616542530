//! Dynamic client registration (RFC 7591) and the metadata discovery that finds the
//! registration endpoint when the provider does not name one: RFC 8414
//! (`/.well-known/oauth-authorization-server`, with the issuer's path appended), then OpenID
//! discovery (`/.well-known/openid-configuration`). A login registers at most one client, and
//! the result is stored in the profile's `provider_clients` (upstream bug 6: two per login).

use authsome_vault::ClientRecord;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::http::describe;
use super::token::{EndpointError, interpret};
use crate::error::{CliError, Kind};
use crate::providers::Provider;
use crate::providers::schema::TokenAuthMethod;

/// Metadata documents to try, best first, for an authorization server whose authorization
/// endpoint is `authorization_url`. The issuer is guessed as the URL's directory.
pub(crate) fn discovery_candidates(authorization_url: &str) -> Vec<String> {
    let Ok(url) = url::Url::parse(authorization_url) else { return Vec::new() };
    let origin = url.origin().ascii_serialization();
    let path = url.path();
    let issuer_path = path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("").trim_end_matches('/');
    let mut out = Vec::new();
    if !issuer_path.is_empty() {
        out.push(format!("{origin}/.well-known/oauth-authorization-server{issuer_path}"));
        out.push(format!("{origin}/.well-known/openid-configuration{issuer_path}"));
        out.push(format!("{origin}{issuer_path}/.well-known/openid-configuration"));
    }
    out.push(format!("{origin}/.well-known/oauth-authorization-server"));
    out.push(format!("{origin}/.well-known/openid-configuration"));
    out
}

/// Find the registration endpoint by discovery.
pub(crate) async fn discover_registration(http: &reqwest::Client, authorization_url: &str) -> Result<String, CliError> {
    let mut tried = Vec::new();
    // Whether any candidate answered at all: when none did, the cause is the network, not the
    // provider (exit 1 with the cause, as every other OAuth request that gets no answer).
    let mut answered = false;
    for candidate in discovery_candidates(authorization_url) {
        let answer = match http.get(&candidate).header("accept", "application/json").send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(body) => {
                        answered = true;
                        interpret(status, &body).map_err(|e| e.provider_message())
                    }
                    Err(e) => Err(describe(&e)),
                }
            }
            Err(e) => Err(describe(&e)),
        };
        match answer {
            Ok(doc) => {
                if let Some(endpoint) = doc.get("registration_endpoint").and_then(Value::as_str) {
                    crate::providers::validate::check_endpoint(endpoint).map_err(|why| {
                        CliError::new(
                            Kind::AuthenticationFailed,
                            format!("discovered registration endpoint '{endpoint}': {why}"),
                        )
                    })?;
                    return Ok(endpoint.to_string());
                }
                tried.push(format!("{candidate}: no registration_endpoint"));
            }
            Err(why) => tried.push(format!("{candidate}: {why}")),
        }
    }
    let mut err = if answered {
        CliError::new(Kind::AuthenticationFailed, "cannot find the provider's client registration endpoint")
            .hint("add oauth.registration_endpoint to the provider definition")
    } else {
        CliError::new(Kind::Generic, "cannot reach the provider to discover its client registration endpoint")
            .hint("check the network, and AUTHSOME_EXTRA_ROOTS for a private CA")
    };
    for line in tried {
        err = err.cause(line);
    }
    Err(err)
}

/// The registration request body (pure; tested).
pub(crate) fn registration_body(
    provider: &Provider,
    redirect_uri: &str,
    scope: &str,
    method: TokenAuthMethod,
) -> Value {
    let method = match method {
        TokenAuthMethod::ClientSecretPost => "client_secret_post",
        TokenAuthMethod::ClientSecretBasic => "client_secret_basic",
        TokenAuthMethod::None => "none",
    };
    let mut body = json!({
        "client_name": format!("authsome-{}", provider.name),
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
        // A loopback redirect is a native app's (RFC 8252); servers may then accept any port.
        "application_type": "native",
    });
    if !scope.is_empty() {
        body["scope"] = scope.into();
    }
    body
}

/// Register a client. The record keeps the server's answer minus its secrets.
pub(crate) async fn register(http: &reqwest::Client, endpoint: &str, body: &Value) -> Result<ClientRecord, CliError> {
    let response =
        http.post(endpoint).header("accept", "application/json").json(body).send().await.map_err(|e| unanswered(&e))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| unanswered(&e))?;
    let mut doc =
        interpret(status, &bytes).map_err(|e| e.into_cli(Kind::AuthenticationFailed, "client registration failed"))?;
    let client_id =
        doc.get("client_id").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
            CliError::new(Kind::AuthenticationFailed, "client registration answered without a client_id")
        })?;
    let secret = doc.get("client_secret").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(map) = doc.as_object_mut() {
        map.remove("client_secret");
        map.remove("registration_access_token");
        map.entry("token_endpoint_auth_method").or_insert_with(|| body["token_endpoint_auth_method"].clone());
    }
    Ok(ClientRecord {
        client_id: Some(client_id),
        client_secret: secret.map(SecretString::from),
        base_url: None,
        scopes: None,
        registration: Some(doc),
    })
}

/// No answer from the registration endpoint: a network failure (exit 1), not a refusal.
fn unanswered(e: &reqwest::Error) -> CliError {
    EndpointError::Transport(describe(e)).into_cli(Kind::AuthenticationFailed, "client registration failed")
}

/// Whether a stored registration can be used for `redirect_uri`.
pub(crate) fn registration_fits(record: &ClientRecord, redirect_uri: &str) -> bool {
    record.client_id.is_some()
        && record
            .registration
            .as_ref()
            .and_then(|r| r.get("redirect_uris"))
            .and_then(Value::as_array)
            .is_some_and(|uris| uris.iter().any(|u| u.as_str() == Some(redirect_uri)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;

    #[test]
    fn candidates_include_the_rfc8414_path_form() {
        assert_eq!(
            discovery_candidates("https://auth.example.com/tenant/a/authorize"),
            vec![
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant/a",
                "https://auth.example.com/.well-known/openid-configuration/tenant/a",
                "https://auth.example.com/tenant/a/.well-known/openid-configuration",
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            discovery_candidates("https://mcp.notion.com/authorize"),
            vec![
                "https://mcp.notion.com/.well-known/oauth-authorization-server",
                "https://mcp.notion.com/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn body_and_reuse() {
        let notion = Catalog::bundled_only().get("notion_dcr").unwrap().provider.clone();
        let body = registration_body(&notion, "http://127.0.0.1:7998/auth/callback/oauth", "", TokenAuthMethod::None);
        assert_eq!(body["client_name"], "authsome-notion_dcr");
        assert_eq!(body["token_endpoint_auth_method"], "none");
        assert_eq!(body["grant_types"], json!(["authorization_code", "refresh_token"]));
        assert!(body.get("scope").is_none());
        let record = ClientRecord {
            client_id: Some("c".into()),
            registration: Some(json!({"redirect_uris": ["http://127.0.0.1:7998/auth/callback/oauth"]})),
            ..Default::default()
        };
        assert!(registration_fits(&record, "http://127.0.0.1:7998/auth/callback/oauth"));
        assert!(!registration_fits(&record, "http://127.0.0.1:8000/auth/callback/oauth"));
    }
}
