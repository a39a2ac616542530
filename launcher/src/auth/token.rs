//! Requests to a provider's token-style endpoints (token, refresh, device authorization,
//! revocation): client authentication, response parsing, and errors that carry the provider's
//! own `error` and `error_description`.

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::ClientCredentials;
use crate::error::{CliError, Kind};
use crate::providers::schema::TokenAuthMethod;

/// A successful token response. `Debug` never shows the tokens.
pub(crate) struct TokenResponse {
    pub(crate) access_token: SecretString,
    pub(crate) token_type: Option<String>,
    /// Seconds from now.
    pub(crate) expires_in: Option<i64>,
    pub(crate) refresh_token: Option<SecretString>,
    /// The granted scope, when the server said (it may differ from the request).
    pub(crate) scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// What went wrong talking to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndpointError {
    /// The server answered with an OAuth error document (RFC 6749 section 5.2).
    OAuth { status: u16, error: String, description: Option<String> },
    /// An HTTP error without an OAuth error document.
    Status { status: u16, body: String },
    /// No answer: connection, TLS or timeout.
    Transport(String),
    /// An answer that is not what the protocol says.
    Malformed(String),
}

impl EndpointError {
    /// The provider's own words: `invalid_grant: grant request is invalid`.
    pub(crate) fn provider_message(&self) -> String {
        match self {
            EndpointError::OAuth { error, description: Some(d), .. } => format!("{error}: {d}"),
            EndpointError::OAuth { error, description: None, .. } => error.clone(),
            EndpointError::Status { status, body } if body.is_empty() => format!("HTTP {status}"),
            EndpointError::Status { status, body } => format!("HTTP {status}: {body}"),
            EndpointError::Transport(text) => text.clone(),
            EndpointError::Malformed(text) => text.clone(),
        }
    }

    /// The OAuth error code, if the server sent one.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            EndpointError::OAuth { error, .. } => Some(error),
            _ => None,
        }
    }

    /// A CLI error: `what` failed, caused by the provider's message.
    /// An error for the user. No answer at all (network, TLS, timeout) is not an
    /// authentication failure: it exits 1 with the cause, whatever `kind` the caller meant.
    pub(crate) fn into_cli(self, kind: Kind, what: impl Into<String>) -> CliError {
        let kind = if matches!(self, EndpointError::Transport(_)) { Kind::Generic } else { kind };
        let hint = match &self {
            EndpointError::OAuth { error, .. } if error == "invalid_client" || error == "unauthorized_client" => {
                Some("check the OAuth client id and secret (log in again with --force to enter them anew)")
            }
            EndpointError::Transport(_) => Some("check the network, and AUTHSOME_EXTRA_ROOTS for a private CA"),
            _ => None,
        };
        let mut err = CliError::new(kind, what).cause(self.provider_message());
        if let Some(hint) = hint {
            err = err.hint(hint);
        }
        err
    }
}

/// Add client authentication to a request's form parameters; returns the `Authorization`
/// header value for `client_secret_basic`. Basic encodes the form-urlencoded id and secret
/// (RFC 6749 section 2.3.1); a client without a secret is public and sends only its id.
pub(crate) fn client_auth(params: &mut Vec<(String, String)>, client: &ClientCredentials) -> Option<String> {
    match (&client.secret, client.method) {
        (Some(secret), TokenAuthMethod::ClientSecretBasic) => {
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(&client.id), encode(secret.expose_secret()));
            Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
        }
        (Some(secret), TokenAuthMethod::ClientSecretPost) => {
            params.push(("client_id".into(), client.id.clone()));
            params.push(("client_secret".into(), secret.expose_secret().to_string()));
            None
        }
        _ => {
            params.push(("client_id".into(), client.id.clone()));
            None
        }
    }
}

/// POST a form with client authentication and read the JSON answer. An OAuth error document
/// is an error whatever the status (GitHub answers errors with 200).
pub(crate) async fn post_form(
    http: &reqwest::Client,
    url: &str,
    client: &ClientCredentials,
    mut params: Vec<(String, String)>,
) -> Result<Value, EndpointError> {
    let basic = client_auth(&mut params, client);
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish();
    let mut request = http
        .post(url)
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(value) = basic {
        request = request.header("authorization", value);
    }
    read_json(request.send().await).await
}

/// POST a JSON body (device polls of providers with `device_token_request: json`).
pub(crate) async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value, EndpointError> {
    let request = http.post(url).header("accept", "application/json").json(body);
    read_json(request.send().await).await
}

async fn read_json(sent: Result<reqwest::Response, reqwest::Error>) -> Result<Value, EndpointError> {
    let response = sent.map_err(|e| EndpointError::Transport(super::http::describe(&e)))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| EndpointError::Transport(super::http::describe(&e)))?;
    interpret(status, &bytes)
}

/// Status and body → JSON document or error (pure; tested).
pub(crate) fn interpret(status: u16, body: &[u8]) -> Result<Value, EndpointError> {
    let doc: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(error) = doc.as_ref().and_then(|d| d.get("error")).and_then(Value::as_str) {
        let description = doc
            .as_ref()
            .and_then(|d| d.get("error_description"))
            .and_then(Value::as_str)
            .map(|s| s.chars().take(500).collect());
        return Err(EndpointError::OAuth { status, error: error.to_string(), description });
    }
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(body);
        let snippet: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
        return Err(EndpointError::Status { status, body: snippet });
    }
    match doc {
        Some(doc) if doc.is_object() => Ok(doc),
        _ if body.is_empty() => Ok(Value::Object(Default::default())),
        _ => Err(EndpointError::Malformed(format!("the answer (HTTP {status}) is not a JSON object"))),
    }
}

/// A token response document → `TokenResponse`.
pub(crate) fn parse_token(doc: &Value) -> Result<TokenResponse, EndpointError> {
    let text = |name: &str| doc.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let access_token = text("access_token")
        .ok_or_else(|| EndpointError::Malformed("the token response has no access_token".into()))?;
    let expires_in = match doc.get("expires_in") {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|secs| *secs > 0);
    Ok(TokenResponse {
        access_token: SecretString::from(access_token),
        token_type: text("token_type"),
        expires_in,
        refresh_token: text("refresh_token").map(SecretString::from),
        scope: text("scope"),
    })
}

/// POST to a token endpoint and parse the token.
pub(crate) async fn token_request(
    http: &reqwest::Client,
    url: &str,
    client: &ClientCredentials,
    params: Vec<(String, String)>,
) -> Result<TokenResponse, EndpointError> {
    parse_token(&post_form(http, url, client, params).await?)
}

/// Split a granted `scope` string: RFC 6749 says spaces; GitHub uses commas.
pub(crate) fn split_scopes(scope: &str) -> Vec<String> {
    scope.split([' ', ',']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(method: TokenAuthMethod, secret: Option<&str>) -> ClientCredentials {
        ClientCredentials {
            id: "my app:1".into(),
            secret: secret.map(SecretString::from),
            method,
            origin: crate::auth::ClientOrigin::Static,
        }
    }

    #[test]
    fn client_authentication_methods() {
        let mut params = Vec::new();
        let header = client_auth(&mut params, &client(TokenAuthMethod::ClientSecretBasic, Some("p&ss:wörd")));
        // RFC 6749 2.3.1: form-urlencode, then Basic.
        let expected = base64::engine::general_purpose::STANDARD.encode("my+app%3A1:p%26ss%3Aw%C3%B6rd");
        assert_eq!(header, Some(format!("Basic {expected}")));
        assert!(params.is_empty());

        let mut params = Vec::new();
        assert_eq!(client_auth(&mut params, &client(TokenAuthMethod::ClientSecretPost, Some("s"))), None);
        assert_eq!(params, vec![("client_id".into(), "my app:1".into()), ("client_secret".into(), "s".into())]);

        // A public client sends its id only, whatever method the provider names.
        for method in [TokenAuthMethod::None, TokenAuthMethod::ClientSecretBasic, TokenAuthMethod::ClientSecretPost] {
            let mut params = Vec::new();
            assert_eq!(client_auth(&mut params, &client(method, None)), None);
            assert_eq!(params, vec![("client_id".into(), "my app:1".into())]);
        }
    }

    #[test]
    fn responses_and_errors() {
        let ok = interpret(200, br#"{"access_token":"at","expires_in":"3600","scope":"a b","token_type":"Bearer"}"#)
            .and_then(|d| parse_token(&d))
            .unwrap();
        assert_eq!(ok.access_token.expose_secret(), "at");
        assert_eq!(ok.expires_in, Some(3600));
        assert_eq!(ok.scope.as_deref(), Some("a b"));
        assert!(!format!("{ok:?}").contains("at\""));

        let err = interpret(400, br#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#);
        assert_eq!(err.clone().unwrap_err().provider_message(), "invalid_grant: grant request is invalid");
        assert_eq!(err.unwrap_err().code(), Some("invalid_grant"));
        // GitHub: errors with 200.
        assert_eq!(
            interpret(200, br#"{"error":"bad_verification_code"}"#).unwrap_err().code(),
            Some("bad_verification_code")
        );
        assert_eq!(
            interpret(502, b"<html>Bad gateway</html>").unwrap_err(),
            EndpointError::Status { status: 502, body: "<html>Bad gateway</html>".into() }
        );
        assert!(matches!(interpret(200, b"access_token=x"), Err(EndpointError::Malformed(_))));
        assert!(matches!(parse_token(&serde_json::json!({"token_type": "bearer"})), Err(EndpointError::Malformed(_))));
        assert_eq!(interpret(200, b"").unwrap(), serde_json::json!({}));
    }

    #[test]
    fn scopes_split_on_spaces_and_commas() {
        assert_eq!(split_scopes("repo,read:user"), vec!["repo", "read:user"]);
        assert_eq!(split_scopes(" openid  offline_access "), vec!["openid", "offline_access"]);
    }
}
