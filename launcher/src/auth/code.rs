//! Authorization code grant with PKCE (RFC 6749 section 4.1, RFC 7636 S256) and `state`:
//! building the authorization URL and exchanging the code. The callback itself is served by
//! the daemon, which matches `state` before anything here runs.

use secrecy::{ExposeSecret, SecretString};

use super::token::{EndpointError, TokenResponse, token_request};
use super::{ClientCredentials, Endpoints, join_scopes, pkce};
use crate::error::{CliError, Kind};
use crate::providers::Provider;

/// A started authorization: the URL to open and what the callback must match.
pub(crate) struct Authorization {
    pub(crate) url: String,
    pub(crate) state: String,
    pub(crate) verifier: SecretString,
    pub(crate) redirect_uri: String,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization").field("redirect_uri", &self.redirect_uri).finish_non_exhaustive()
    }
}

/// Build the authorization URL: `response_type=code`, client id, redirect URI, scope joined
/// with the provider's separator, `state`, the S256 challenge, then the provider's extra
/// parameters (Google's `access_type=offline`, `prompt=consent`).
pub(crate) fn authorize(
    provider: &Provider,
    endpoints: &Endpoints,
    client_id: &str,
    redirect_uri: &str,
    scopes: &[String],
) -> Result<Authorization, CliError> {
    let base = endpoints.authorization.as_deref().ok_or_else(|| {
        CliError::new(Kind::Usage, format!("{} has no authorization URL for a browser login", provider.display_name))
            .hint(format!("try `authsome login {} --flow device_code`", provider.name))
    })?;
    let mut url = url::Url::parse(base)
        .map_err(|e| CliError::new(Kind::Generic, format!("bad authorization URL '{base}': {e}")))?;
    let state = pkce::random_token(32);
    let (verifier, challenge) = pkce::new_verifier();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri);
        if !scopes.is_empty() {
            query.append_pair("scope", &join_scopes(provider, scopes));
        }
        query
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(spec) = &provider.oauth {
            for (name, value) in &spec.authorization_params {
                query.append_pair(name, value);
            }
        }
    }
    Ok(Authorization {
        url: url.into(),
        state,
        verifier: SecretString::from(verifier),
        redirect_uri: redirect_uri.to_string(),
    })
}

/// Exchange an authorization code for tokens.
pub(crate) async fn exchange(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    client: &ClientCredentials,
    code: &str,
    authorization: &Authorization,
) -> Result<TokenResponse, EndpointError> {
    let params = vec![
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".to_string(), code.to_string()),
        ("redirect_uri".to_string(), authorization.redirect_uri.clone()),
        ("code_verifier".to_string(), authorization.verifier.expose_secret().to_string()),
    ];
    token_request(http, &endpoints.token, client, params).await
}

/// RFC 9207 mix-up defence: an authorization response's `iss` must name the server this login
/// was sent to. authsome knows that server by its authorization endpoint, so `iss` must be an
/// https URL of the same origin (the issuer of every server we know lives there). A response
/// without `iss` is accepted: most providers do not send one.
pub(crate) fn check_issuer(iss: &str, authorization_endpoint: &str) -> Result<(), CliError> {
    let origin = |u: &str| url::Url::parse(u).ok().filter(|u| u.scheme() == "https").map(|u| u.origin());
    match (origin(iss), origin(authorization_endpoint)) {
        (Some(got), Some(expected)) if got == expected => Ok(()),
        _ => Err(CliError::new(
            Kind::AuthenticationFailed,
            format!("the sign-in answer names another authorization server ({iss}), not the one this login used"),
        )
        .hint("start the login again; if it repeats, another site may be trying to slip its answer into this login")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn issuer_must_be_the_authorization_servers_origin() {
        let auth = "https://idp.example.test/oauth/auth";
        assert!(check_issuer("https://idp.example.test", auth).is_ok());
        assert!(check_issuer("https://idp.example.test/tenant/v2.0", auth).is_ok());
        assert!(check_issuer("https://evil.example.test", auth).is_err());
        assert!(check_issuer("http://idp.example.test", auth).is_err());
        assert!(check_issuer("https://idp.example.test:8443", auth).is_err());
        assert!(check_issuer("not a url", auth).is_err());
    }

    use super::*;
    use crate::providers::Catalog;

    #[test]
    fn authorization_url_carries_pkce_state_and_extras() {
        let google = Catalog::bundled_only().get("google").unwrap().provider.clone();
        let endpoints = Endpoints::resolve(&google, None).unwrap();
        let auth = authorize(
            &google,
            &endpoints,
            "id 1",
            "http://127.0.0.1:7998/auth/callback/oauth",
            &["openid".into(), "email".into()],
        )
        .unwrap();
        let url = url::Url::parse(&auth.url).unwrap();
        let q: std::collections::BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(url.host_str(), Some("accounts.google.com"));
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "id 1");
        assert_eq!(q["scope"], "openid email");
        assert_eq!(q["state"], auth.state);
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], pkce::challenge(auth.verifier.expose_secret()));
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:7998/auth/callback/oauth");
        assert_eq!(auth.state.len(), 43);
    }
}
