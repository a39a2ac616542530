//! Device authorization grant (RFC 8628): ask for a user code, then poll the token endpoint
//! until the user approves, denies, or the code expires. `slow_down` adds 5 s to the interval;
//! the code's own `expires_in` bounds the wait (no fixed cap: upstream bug 11).

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::token::{EndpointError, TokenResponse, parse_token, post_form, post_json};
use super::{ClientCredentials, Endpoints};
use crate::error::{CliError, Kind};
use crate::providers::schema::DeviceTokenRequest;

pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const DEFAULT_INTERVAL: u64 = 5;
const DEFAULT_EXPIRES_IN: u64 = 900;

/// What the user is asked to do, and the code we poll with.
pub(crate) struct DeviceAuthorization {
    pub(crate) device_code: SecretString,
    pub(crate) user_code: String,
    pub(crate) verification_uri: String,
    pub(crate) verification_uri_complete: Option<String>,
    pub(crate) expires_in: u64,
    pub(crate) interval: u64,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Parse the device authorization response (`verification_url` is Google's spelling).
pub(crate) fn parse_authorization(doc: &Value) -> Result<DeviceAuthorization, EndpointError> {
    let text = |name: &str| doc.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let number = |name: &str| match doc.get(name) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let missing = |what: &str| EndpointError::Malformed(format!("the device authorization response has no {what}"));
    Ok(DeviceAuthorization {
        device_code: SecretString::from(text("device_code").ok_or_else(|| missing("device_code"))?),
        user_code: text("user_code").ok_or_else(|| missing("user_code"))?,
        verification_uri: text("verification_uri")
            .or_else(|| text("verification_url"))
            .ok_or_else(|| missing("verification_uri"))?,
        verification_uri_complete: text("verification_uri_complete"),
        expires_in: number("expires_in").filter(|n| *n > 0).unwrap_or(DEFAULT_EXPIRES_IN),
        interval: number("interval").filter(|n| *n > 0).unwrap_or(DEFAULT_INTERVAL),
    })
}

/// Ask for a device code.
pub(crate) async fn start(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    client: &ClientCredentials,
    scope: Option<String>,
) -> Result<DeviceAuthorization, CliError> {
    let url = endpoints
        .device
        .as_deref()
        .ok_or_else(|| CliError::new(Kind::Usage, "this provider has no device authorization endpoint"))?;
    let mut params = Vec::new();
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        params.push(("scope".to_string(), scope));
    }
    let doc = post_form(http, url, client, params)
        .await
        .map_err(|e| e.into_cli(Kind::AuthenticationFailed, "the device authorization request failed"))?;
    parse_authorization(&doc).map_err(|e| e.into_cli(Kind::AuthenticationFailed, "the device authorization failed"))
}

/// One poll's meaning.
#[derive(Debug)]
pub(crate) enum Step {
    /// The request never got an answer (reset, timeout): worth another poll.
    Retry(EndpointError),
    Done(TokenResponse),
    Pending,
    SlowDown,
    /// The user said no, the code expired, or another error: stop.
    Stop(EndpointError),
}

pub(crate) fn classify(answer: Result<Value, EndpointError>) -> Step {
    match answer {
        Ok(doc) => match parse_token(&doc) {
            Ok(token) => Step::Done(token),
            Err(e) => Step::Stop(e),
        },
        Err(e @ EndpointError::Transport(_)) => Step::Retry(e),
        Err(e) => match e.code() {
            Some("authorization_pending") => Step::Pending,
            Some("slow_down") => Step::SlowDown,
            _ => Step::Stop(e),
        },
    }
}

/// Consecutive polls that may fail in transport before the login gives up.
const MAX_TRANSPORT_RETRIES: u32 = 3;

/// Poll until the user approves, denies, or the code expires.
pub(crate) async fn poll(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    client: &ClientCredentials,
    body: DeviceTokenRequest,
    authorization: &DeviceAuthorization,
) -> Result<TokenResponse, CliError> {
    let deadline = Instant::now() + Duration::from_secs(authorization.expires_in);
    let mut interval = authorization.interval;
    // A network blip must not end a login the user is approving: a few in a row are retried.
    let mut transport_failures = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let answer = match body {
            DeviceTokenRequest::Form => {
                let params = vec![
                    ("grant_type".to_string(), GRANT_TYPE.to_string()),
                    ("device_code".to_string(), authorization.device_code.expose_secret().to_string()),
                ];
                post_form(http, &endpoints.token, client, params).await
            }
            DeviceTokenRequest::Json => {
                post_json(http, &endpoints.token, &json!({"device_code": authorization.device_code.expose_secret()}))
                    .await
            }
        };
        match classify(answer) {
            Step::Done(token) => return Ok(token),
            Step::Pending => transport_failures = 0,
            Step::SlowDown => {
                transport_failures = 0;
                interval += 5;
            }
            Step::Retry(e) if transport_failures < MAX_TRANSPORT_RETRIES => {
                transport_failures += 1;
                tracing::debug!(error = %e.provider_message(), "device poll failed; polling again");
            }
            Step::Retry(e) => {
                return Err(e.into_cli(Kind::AuthenticationFailed, "the device login failed"));
            }
            Step::Stop(e) => {
                let what = match e.code() {
                    Some("access_denied") => "the device login was denied",
                    Some("expired_token") => "the device code expired before the login was approved",
                    _ => "the device login failed",
                };
                let mut err = e.into_cli(Kind::AuthenticationFailed, what);
                if err.hint.is_none() {
                    err = err.hint("start the login again");
                }
                return Err(err);
            }
        }
        if Instant::now() + Duration::from_secs(interval) > deadline {
            return Err(CliError::new(
                Kind::AuthenticationFailed,
                format!("the device code expired after {} s without approval", authorization.expires_in),
            )
            .hint("start the login again and enter the code sooner"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::interpret;

    #[test]
    fn authorization_response() {
        let d = parse_authorization(&json!({
            "device_code": "dc", "user_code": "ABCD-EFGH", "verification_url": "https://x.example/device", "expires_in": "1800"
        }))
        .unwrap();
        assert_eq!(d.verification_uri, "https://x.example/device");
        assert_eq!((d.expires_in, d.interval), (1800, 5));
        assert!(!format!("{d:?}").contains("\"dc\""));
        assert!(parse_authorization(&json!({"device_code": "dc"})).is_err());
    }

    #[test]
    fn poll_answers() {
        let step = |status, body: &str| classify(interpret(status, body.as_bytes()));
        assert!(matches!(step(400, r#"{"error":"authorization_pending"}"#), Step::Pending));
        assert!(matches!(step(400, r#"{"error":"slow_down"}"#), Step::SlowDown));
        assert!(matches!(step(200, r#"{"access_token":"t"}"#), Step::Done(_)));
        match step(400, r#"{"error":"access_denied","error_description":"End-User aborted interaction"}"#) {
            Step::Stop(e) => assert_eq!(e.provider_message(), "access_denied: End-User aborted interaction"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(step(400, r#"{"error":"expired_token"}"#), Step::Stop(_)));
    }
}
