//! The proxy's `CredentialSource` over the vault. Secrets are loaded when the run starts and
//! kept rendered (headers / query values) in memory, so the per-request path is a map lookup.
//! A credential is re-read from the vault (where the refresh logic runs) when it is close to
//! expiry, or once after the upstream answered 401.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use authsome_proxy::{CredentialSource, Injection, ResolveError, ResolveRequest};
use authsome_vault::{ConnectionMeta, Secrets};
use http::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::providers::Provider;

/// One connection's credential, ready for the wire.
#[derive(Clone)]
struct Ready {
    headers: Vec<(HeaderName, HeaderValue)>,
    query: Vec<(String, String)>,
    secret: SecretString,
    /// The second value of a two-value credential when it is a secret: masked out of responses.
    other_secrets: Vec<SecretString>,
    /// Unix seconds after which it must be re-read (refresh margin applied), if it expires.
    reread_after: Option<i64>,
}

/// Loads a connection's current secrets (and metadata) from the vault, refreshing OAuth tokens
/// that are close to expiry, or unconditionally when `force` is set. Runs on a blocking thread.
pub(crate) type Loader = dyn Fn(&Provider, &str, bool) -> Result<(ConnectionMeta, Secrets), LoadError> + Send + Sync;

/// Why a [`Loader`] could not produce a credential. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LoadError {
    /// The connection is gone from the vault (logged out during the run).
    #[error("not connected")]
    NotConnected,
    /// The credential has expired and could not be refreshed.
    #[error("expired")]
    Expired,
    /// Anything else: the vault or the refresh failed.
    #[error("{0}")]
    Failed(String),
}

pub(crate) struct VaultSource {
    /// By the proxy's owner label (`routes.rs`): one provider may have several owners, one per
    /// place its connections point to.
    providers: HashMap<String, Provider>,
    /// The connection used for a provider when the request carries no placeholder.
    chosen: HashMap<String, String>,
    cache: RwLock<HashMap<String, HashMap<String, Ready>>>,
    loader: Arc<Loader>,
}

impl VaultSource {
    pub(crate) fn new(
        providers: HashMap<String, Provider>,
        chosen: HashMap<String, String>,
        loader: Arc<Loader>,
    ) -> Self {
        Self { providers, chosen, cache: RwLock::new(HashMap::new()), loader }
    }

    /// Seed the cache with what the run loaded at start.
    pub(crate) fn prime(
        &self,
        provider: &str,
        connection: &str,
        meta: &ConnectionMeta,
        secrets: &Secrets,
    ) -> Result<(), String> {
        let p = self.providers.get(provider).ok_or("unknown provider")?;
        let ready = render(p, meta, secrets)?;
        self.cache
            .write()
            .expect("cache lock")
            .entry(provider.to_string())
            .or_default()
            .insert(connection.to_string(), ready);
        Ok(())
    }
}

fn render(provider: &Provider, meta: &ConnectionMeta, secrets: &Secrets) -> Result<Ready, String> {
    let secret = match provider.primary_field() {
        "api_key" => secrets.api_key.clone().or_else(|| secrets.access_token.clone()),
        _ => secrets.access_token.clone().or_else(|| secrets.api_key.clone()),
    }
    .ok_or("the connection holds no credential")?;
    let second = match &provider.second_value {
        Some(second) => Some(
            secrets
                .extra
                .get(&second.field)
                .cloned()
                .ok_or_else(|| format!("the connection holds no {}", second.label))?,
        ),
        None => None,
    };
    let rendered = crate::inject::render(provider, &secret, second.as_ref());
    let mut headers = Vec::with_capacity(rendered.headers.len());
    for (name, value) in rendered.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| "invalid header name")?;
        let mut value =
            HeaderValue::from_str(value.expose_secret()).map_err(|_| "the credential is not a valid header value")?;
        value.set_sensitive(true);
        headers.push((name, value));
    }
    let query = rendered.query.into_iter().map(|(k, v)| (k, v.expose_secret().to_string())).collect();
    let reread_after = meta.expires_at.map(|at| at - crate::auth::refresh::margin(meta));
    let other_secrets = match (&provider.second_value, second) {
        (Some(spec), Some(value)) if spec.secret => vec![value],
        _ => Vec::new(),
    };
    Ok(Ready { headers, query, secret, other_secrets, reread_after })
}

impl CredentialSource for VaultSource {
    async fn resolve(&self, req: &ResolveRequest) -> Result<Injection, ResolveError> {
        let owner = &req.owner;
        let provider = self
            .providers
            .get(&owner.0)
            .ok_or_else(|| ResolveError::NotConnected { owner: owner.clone(), connection: req.connection.clone() })?;
        let connection = match req.connection.as_deref().or_else(|| self.chosen.get(&owner.0).map(String::as_str)) {
            Some(c) => c.to_string(),
            None => return Err(ResolveError::NotConnected { owner: owner.clone(), connection: None }),
        };
        if !req.force_refresh {
            let now = authsome_vault::time::now_seconds();
            let cache = self.cache.read().expect("cache lock");
            if let Some(ready) = cache.get(&owner.0).and_then(|m| m.get(&connection))
                && ready.reread_after.is_none_or(|at| now < at)
            {
                return Ok(injection(ready));
            }
        }
        let loader = self.loader.clone();
        let p = provider.clone();
        let name = connection.clone();
        let force = req.force_refresh;
        let loaded = tokio::task::spawn_blocking(move || loader(&p, &name, force))
            .await
            .map_err(|e| ResolveError::Failed { owner: owner.clone(), reason: e.to_string() })?;
        let (meta, secrets) = loaded.map_err(|e| match e {
            LoadError::NotConnected => {
                ResolveError::NotConnected { owner: owner.clone(), connection: Some(connection.clone()) }
            }
            LoadError::Expired => ResolveError::Expired { owner: owner.clone() },
            LoadError::Failed(reason) => ResolveError::Failed { owner: owner.clone(), reason },
        })?;
        let ready = render(provider, &meta, &secrets)
            .map_err(|reason| ResolveError::Failed { owner: owner.clone(), reason })?;
        let out = injection(&ready);
        self.cache.write().expect("cache lock").entry(owner.0.clone()).or_default().insert(connection, ready);
        Ok(out)
    }
}

fn injection(ready: &Ready) -> Injection {
    // The declared credential locations are the injection's own header and query names: a
    // placeholder anywhere else is refused by the proxy.
    Injection {
        headers: ready.headers.clone(),
        query: ready.query.clone(),
        secret: ready.secret.clone(),
        client_headers: Vec::new(),
        client_query: Vec::new(),
        other_secrets: ready.other_secrets.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;
    use authsome_vault::{AuthType, SecretSource};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn meta(expires_in: Option<i64>) -> ConnectionMeta {
        let mut m = ConnectionMeta::new("openai", "default", AuthType::ApiKey, SecretSource::ApiKey);
        m.expires_at = expires_in.map(|s| authsome_vault::time::now_seconds() + s);
        m
    }

    #[tokio::test]
    async fn cached_until_near_expiry_and_reloaded_after_401() {
        let openai = Catalog::bundled_only().get("openai").unwrap().provider.clone();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let loader: Arc<Loader> = Arc::new(move |_p: &Provider, _c: &str, force: bool| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let key = if force { format!("sk-forced{n}") } else { format!("sk-loaded{n}") };
            Ok((meta(Some(3_600)), Secrets { api_key: Some(key.into()), ..Default::default() }))
        });
        let source = VaultSource::new(
            [("openai".to_string(), openai)].into_iter().collect(),
            [("openai".to_string(), "default".to_string())].into_iter().collect(),
            loader,
        );
        source
            .prime(
                "openai",
                "default",
                &meta(None),
                &Secrets { api_key: Some("sk-primed".into()), ..Default::default() },
            )
            .unwrap();
        let req = |force| ResolveRequest {
            owner: "openai".into(),
            connection: None,
            host: "api.openai.com".into(),
            path: "/".into(),
            force_refresh: force,
        };
        let first = source.resolve(&req(false)).await.unwrap();
        assert_eq!(first.headers[0].1.to_str().unwrap(), "Bearer sk-primed");
        assert!(first.headers[0].1.is_sensitive());
        assert_eq!(calls.load(Ordering::SeqCst), 0, "served from the cache");
        let forced = source.resolve(&req(true)).await.unwrap();
        assert_eq!(forced.secret.expose_secret(), "sk-forced0");
        assert_eq!(source.resolve(&req(false)).await.unwrap().secret.expose_secret(), "sk-forced0");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A credential inside its refresh margin is re-read on use.
        let mut near_expiry = meta(Some(10));
        near_expiry.obtained_at -= 3_600 * 1_000_000;
        source
            .prime("openai", "default", &near_expiry, &Secrets { api_key: Some("sk-old".into()), ..Default::default() })
            .unwrap();
        assert_eq!(source.resolve(&req(false)).await.unwrap().secret.expose_secret(), "sk-loaded1");
        let missing = source
            .resolve(&ResolveRequest {
                owner: "nobody".into(),
                connection: None,
                host: "x".into(),
                path: "/".into(),
                force_refresh: false,
            })
            .await;
        assert!(matches!(missing, Err(ResolveError::NotConnected { .. })));
    }
}
