//! Routes by connection: which hosts each connection's credential goes to.
//!
//! A provider's connections are grouped by where they point. Connections without a base URL
//! share the definition's hosts under the provider's name as the proxy's owner label. A
//! connection with a base URL (GitHub Enterprise, a Datadog site, an Azure OpenAI resource)
//! gets the one host of that URL, under its own owner label `provider@host`, so its token is
//! never injected on the public service's hosts and the public service's token never on its.
//! A placeholder is bound to its group's owner: sent to another group's host, the proxy's leak
//! guard refuses it.

use authsome_proxy::{HostPattern, Owner, Route};
use authsome_vault::ConnectionMeta;

use crate::error::{CliError, CliResult, Kind};
use crate::providers::Provider;
use crate::providers::base_url::{self, Location};

/// Connections of one provider that share a location.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) owner: Owner,
    pub(crate) location: Location,
    /// The base URL its OAuth endpoints are filled with (None: the definition's default).
    pub(crate) base_url: Option<String>,
    /// Connection names, sorted.
    pub(crate) connections: Vec<String>,
}

/// A connection that gets no route, and why (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unrouted {
    pub(crate) connection: String,
    pub(crate) reason: String,
}

/// Group `connections` (all of `provider`) by location.
pub(crate) fn group(provider: &Provider, connections: &[&ConnectionMeta]) -> (Vec<Group>, Vec<Unrouted>) {
    let mut groups: Vec<Group> = Vec::new();
    let mut unrouted = Vec::new();
    for meta in connections {
        let location = match base_url::location(provider, meta.base_url.as_deref()) {
            Ok(location) => location,
            Err(reason) => {
                unrouted.push(Unrouted { connection: meta.name.clone(), reason });
                continue;
            }
        };
        if let Some(group) = groups.iter_mut().find(|g| g.location == location) {
            group.connections.push(meta.name.clone());
            continue;
        }
        let owner = if location.own {
            let host = location.hosts.first().map(String::as_str).unwrap_or_default();
            Owner(format!("{}@{host}{}", provider.name, location.path_prefix.as_deref().unwrap_or_default()))
        } else {
            Owner(provider.name.clone())
        };
        let base_url = location.own.then(|| meta.base_url.clone()).flatten();
        groups.push(Group { owner, location, base_url, connections: vec![meta.name.clone()] });
    }
    // A host that a connection's base URL names belongs to that connection: the definition's
    // own list of that exact name (Datadog lists every site) would otherwise tie with it and
    // leave the host without a credential. A wildcard needs nothing: exact beats wildcard.
    let claimed: Vec<String> =
        groups.iter().filter(|g| g.location.own).flat_map(|g| g.location.hosts.clone()).collect();
    for group in &mut groups {
        group.connections.sort();
        if !group.location.own {
            group.location.hosts.retain(|host| !claimed.contains(host));
        }
    }
    (groups, unrouted)
}

/// A group's injection route: its hosts and path prefix; the provider's own OAuth endpoints
/// on those hosts never get a header.
pub(crate) fn route(provider: &Provider, group: &Group) -> CliResult<Route> {
    let hosts = group
        .location
        .hosts
        .iter()
        .map(|h| h.parse::<HostPattern>().map_err(|e| CliError::new(Kind::RunFailed, e.to_string())))
        .collect::<CliResult<Vec<_>>>()?;
    let mut excluded_paths = Vec::new();
    if let Some(oauth) = &provider.oauth {
        let urls = [
            Some(&oauth.token_url),
            oauth.authorization_url.as_ref(),
            oauth.revocation_url.as_ref(),
            oauth.device_authorization_url.as_ref(),
            oauth.registration_endpoint.as_ref(),
            oauth.refresh_url.as_ref(),
        ];
        for url in urls.into_iter().flatten() {
            let url = provider.oauth_url(url, group.base_url.as_deref());
            let rest = url.strip_prefix("https://").unwrap_or(&url);
            let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
            let host = host.split(':').next().unwrap_or(host);
            if hosts.iter().any(|pattern| pattern.matches(host)) {
                excluded_paths.push(path.split('?').next().unwrap_or(&path).to_string());
            }
        }
    }
    Ok(Route { owner: group.owner.clone(), hosts, path_prefix: group.location.path_prefix.clone(), excluded_paths })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;
    use authsome_vault::{AuthType, SecretSource};

    fn meta(name: &str, base_url: Option<&str>) -> ConnectionMeta {
        let mut m = ConnectionMeta::new("github", name, AuthType::OAuth2, SecretSource::PastedToken);
        m.base_url = base_url.map(str::to_string);
        m
    }

    #[test]
    fn a_base_url_connection_owns_its_host_only() {
        let github = Catalog::bundled_only().get("github").unwrap().provider.clone();
        let (public, ghe, other, same) = (
            meta("default", None),
            meta("ghe", Some("https://ghe.example.com")),
            meta("ghe2", Some("https://ghe.example.com/")),
            meta("dotcom", Some("https://github.com")),
        );
        let (groups, unrouted) = group(&github, &[&public, &ghe, &other, &same]);
        assert!(unrouted.is_empty());
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[0].owner, Owner("github".into()));
        assert_eq!(groups[0].connections, vec!["default", "dotcom"]);
        assert_eq!(groups[1].owner, Owner("github@ghe.example.com/api".into()));
        assert_eq!(groups[1].connections, vec!["ghe", "ghe2"]);
        let route = route(&github, &groups[1]).unwrap();
        assert_eq!(route.hosts, vec![HostPattern::Exact("ghe.example.com".into())]);
        assert_eq!(route.path_prefix.as_deref(), Some("/api"));
        // The enterprise server's own OAuth endpoints are on that host: never injected.
        assert!(route.excluded_paths.contains(&"/login/oauth/access_token".to_string()), "{route:?}");
    }

    /// A site the definition lists and a connection names goes to that connection alone.
    #[test]
    fn a_named_site_leaves_the_definitions_list() {
        let datadog = Catalog::bundled_only().get("datadog").unwrap().provider.clone();
        let mut us = meta("default", None);
        us.provider = "datadog".into();
        let mut eu = meta("eu", Some("https://api.datadoghq.eu"));
        eu.provider = "datadog".into();
        let (groups, _) = group(&datadog, &[&us, &eu]);
        assert!(!groups[0].location.hosts.contains(&"api.datadoghq.eu".to_string()));
        assert!(groups[0].location.hosts.contains(&"api.datadoghq.com".to_string()));
        assert_eq!(groups[1].location.hosts, vec!["api.datadoghq.eu"]);
    }
}
