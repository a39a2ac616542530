//! The provider schema (format 1): what authsome needs to know to log in to a provider and to
//! put its credential on the wire. Bundled and custom providers share it and its validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub(crate) const SCHEMA_VERSION: u32 = 1;

/// How a provider authenticates: the same type the vault records per connection.
pub(crate) use authsome_vault::AuthType;

/// The login flow used when `--flow` is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Flow {
    ApiKey,
    Pkce,
    DeviceCode,
    DcrPkce,
}

impl Flow {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Flow::ApiKey => "api_key",
            Flow::Pkce => "pkce",
            Flow::DeviceCode => "device_code",
            Flow::DcrPkce => "dcr_pkce",
        }
    }
}

/// Where the credential goes on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Inject {
    /// `name: value`, where `value` holds `{secret}` once (`Bearer {secret}`, `{secret}`, …).
    Header { name: String, value: String },
    /// HTTP Basic: `Authorization: Basic base64(username:password)`; `{secret}` appears in one of them.
    Basic { username: String, password: String },
    /// A query parameter set to the secret.
    Query { name: String },
    /// Several headers: `{secret}` in one of them, the second value (`{field}`) in another
    /// (Datadog's `DD-API-KEY` + `DD-APPLICATION-KEY`).
    Headers { headers: Vec<HeaderTemplate> },
}

/// One header of [`Inject::Headers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeaderTemplate {
    pub(crate) name: String,
    pub(crate) value: String,
}

/// The second value of a credential that takes two (Datadog API key + application key, Twilio
/// account SID + auth token, Algolia application id + API key). The key itself stays the
/// primary value (`api_key`); this one is stored beside it in the same sealed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SecondValue {
    /// Its name in `inject` templates (`{account_sid}`), in `login --stdin` lines and in the record.
    pub(crate) field: String,
    /// What the prompt calls it: "application key".
    pub(crate) label: String,
    /// A secret gets a placeholder under `run`. An identifier that SDKs also put in URL paths or
    /// host names (Twilio's account SID, Algolia's application id) is not a secret: `run` gives
    /// the command its real value, which a placeholder could not stand in for there.
    #[serde(default = "yes")]
    pub(crate) secret: bool,
    /// The variables the vendor's SDK reads it from.
    pub(crate) env: Vec<String>,
    /// A regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hint: Option<String>,
}

/// Environment variable names per credential field (export, scan, and `run` placeholders).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EnvNames {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) api_key: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) access_token: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) refresh_token: Vec<String>,
}

/// API-key capture hints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ApiKeySpec {
    /// A regular expression the whole key must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pattern: Option<String>,
    /// Shown when the key does not match, and on the form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hint: Option<String>,
}

/// Client authentication at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TokenAuthMethod {
    /// `client_id` (and `client_secret` if any) in the form body.
    #[default]
    ClientSecretPost,
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 section 2.3.1).
    ClientSecretBasic,
    /// Public client: `client_id` in the body, no secret.
    None,
}

/// Body format of device-flow token polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeviceTokenRequest {
    #[default]
    Form,
    Json,
}

/// OAuth 2 endpoints and quirks. URLs may contain `{base_url}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OAuthSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) authorization_url: Option<String>,
    pub(crate) token_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) revocation_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) device_authorization_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) registration_endpoint: Option<String>,
    /// A different URL for refresh grants (Figma, Instagram).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_url: Option<String>,
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    #[serde(default = "default_scope_separator")]
    pub(crate) scope_separator: String,
    /// Extra authorization-URL parameters (Google `access_type=offline`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) authorization_params: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) token_auth_method: TokenAuthMethod,
    #[serde(default = "yes")]
    pub(crate) pkce: bool,
    #[serde(default)]
    pub(crate) device_token_request: DeviceTokenRequest,
    /// Default for `{base_url}` (GitHub Enterprise users supply their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) base_url: Option<String>,
}

fn default_scope_separator() -> String {
    " ".into()
}
fn yes() -> bool {
    true
}

/// Where a connection may point instead of the definition's hosts (`login --base-url`):
/// self-hosted products (GitHub Enterprise, GitLab self-managed, Jira Data Center) and regional
/// or per-tenant hosts (Datadog sites, Azure OpenAI resources, Supabase projects). A connection
/// with a base URL is routed to that URL's host alone (`base_url.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BaseUrlSpec {
    /// The hosts a base URL may name: an exact name (`api.datadoghq.eu`), a name whose first
    /// label is a `{placeholder}` standing for exactly one DNS label
    /// (`{resource}.openai.azure.com`), or `{host}` alone: any host the user names (self-hosted).
    pub(crate) hosts: Vec<String>,
    /// The API's path under the base URL: the credential goes only below it (GitHub Enterprise
    /// serves its API under `/api`). Replaces the definition's `path_prefix` for such connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path_prefix: Option<String>,
    /// A base URL to show in hints (`https://github.example.com`).
    pub(crate) example: String,
    /// Every connection must name its host: per-tenant hosts (a Supabase project, an Azure
    /// OpenAI resource) that no list in the definition could hold without taking in every
    /// other tenant's. `hosts` may then be empty; a connection without a base URL gets no route.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) required: bool,
}

/// A provider definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Provider {
    pub(crate) schema_version: u32,
    pub(crate) name: String,
    pub(crate) display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) docs_url: Option<String>,
    pub(crate) auth_type: AuthType,
    pub(crate) flow: Flow,
    /// API hosts: exact names or `*.suffix` wildcards (label boundary).
    pub(crate) hosts: Vec<String>,
    /// Only requests under this path get the credential (segment boundary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path_prefix: Option<String>,
    pub(crate) inject: Inject,
    /// Headers added when the client did not send them (`notion-version`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) default_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) env: EnvNames,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) api_key: Option<ApiKeySpec>,
    /// Prefix of `run` placeholders, so SDKs that check a key's shape accept them (`sk-`, `ghp_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) placeholder_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) oauth: Option<OAuthSpec>,
    /// The second value, for credentials that take two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) second_value: Option<SecondValue>,
    /// Whether, and to which hosts, `login --base-url` may point a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) base_url: Option<BaseUrlSpec>,
}

impl Provider {
    /// Whether a device-code login is possible.
    pub(crate) fn supports_device_flow(&self) -> bool {
        self.oauth.as_ref().is_some_and(|o| o.device_authorization_url.is_some())
    }

    /// The env names a field is exported under.
    pub(crate) fn env_names(&self, field: &str) -> &[String] {
        match field {
            "api_key" => &self.env.api_key,
            "access_token" => &self.env.access_token,
            "refresh_token" => &self.env.refresh_token,
            _ => match &self.second_value {
                Some(second) if second.field == field => &second.env,
                _ => &[],
            },
        }
    }

    /// The primary secret field: `api_key` for API-key providers, else `access_token`.
    pub(crate) fn primary_field(&self) -> &'static str {
        match self.auth_type {
            AuthType::ApiKey => "api_key",
            AuthType::OAuth2 => "access_token",
        }
    }

    /// Substitute `{base_url}` in an OAuth URL (the connection's base URL, else the default).
    pub(crate) fn oauth_url(&self, url: &str, base_url: Option<&str>) -> String {
        let base = base_url.or_else(|| self.oauth.as_ref().and_then(|o| o.base_url.as_deref())).unwrap_or("");
        url.replace("{base_url}", base.trim_end_matches('/'))
    }
}
