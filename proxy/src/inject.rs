//! Placeholder search and credential application on request heads. Pure functions over
//! `http` types: no I/O, table-tested.
//!
//! Placeholders are looked for in every header value, the path and the query (never the
//! body). Each one found records where it stood; [`misplaced`] refuses one that stands
//! anywhere but a location the chosen injection declares (see `Injection`), and [`apply`]
//! swaps placeholders only in declared locations.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use secrecy::ExposeSecret;

use crate::credential::Injection;
use crate::matching::{Owner, Placeholder, RouteTable, find};

/// Where in a request a placeholder stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Header(HeaderName),
    /// In the value of this query parameter (the raw name, as sent).
    Query(String),
    Path,
    /// In the name of a query parameter.
    QueryName,
}

impl Location {
    /// For the leak guard's and the misplacement refusal's reason: `header x-echo`, …
    pub(crate) fn describe(&self) -> String {
        match self {
            Location::Header(name) => format!("header {name}"),
            Location::Query(name) => format!("query parameter {name}"),
            Location::Path => "path".to_owned(),
            Location::QueryName => "query".to_owned(),
        }
    }

    /// A coarse word that never names a client-chosen header (audit field).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Location::Header(_) => "header",
            Location::Query(_) | Location::QueryName => "query",
            Location::Path => "path",
        }
    }
}

/// A placeholder found in a request, and where.
#[derive(Debug, Clone)]
pub(crate) struct Found<'a> {
    pub placeholder: &'a Placeholder,
    pub location: Location,
}

/// Every placeholder in header values, the path and the query string (bodies are never
/// searched).
pub(crate) fn find_placeholders<'a>(
    routes: &'a RouteTable,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
) -> Vec<Found<'a>> {
    let mut found = Vec::new();
    if !routes.has_placeholders() {
        return found;
    }
    for (name, value) in headers {
        for placeholder in routes.placeholders_in(value.as_bytes()) {
            found.push(Found { placeholder, location: Location::Header(name.clone()) });
        }
    }
    for placeholder in routes.placeholders_in(path.as_bytes()) {
        found.push(Found { placeholder, location: Location::Path });
    }
    let Some(query) = query else {
        return found;
    };
    for placeholder in routes.placeholders_in(query.as_bytes()) {
        let mut any = false;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if contains(name, &placeholder.value) {
                found.push(Found { placeholder, location: Location::QueryName });
                any = true;
            }
            if contains(value, &placeholder.value) {
                found.push(Found { placeholder, location: Location::Query(name.to_owned()) });
                any = true;
            }
        }
        if !any {
            // Spans a separator: it stands in no single parameter.
            found.push(Found { placeholder, location: Location::QueryName });
        }
    }
    found
}

fn contains(haystack: &str, needle: &str) -> bool {
    find(haystack.as_bytes(), needle.as_bytes()).is_some()
}

/// The first placeholder standing outside the locations `injection` declares.
pub(crate) fn misplaced<'f, 'a>(found: &'f [Found<'a>], injection: &Injection) -> Option<&'f Found<'a>> {
    found.iter().find(|f| match &f.location {
        Location::Header(name) => !injection.declares_header(name),
        Location::Query(name) => !injection.declares_query(name),
        Location::Path | Location::QueryName => true,
    })
}

/// The owner that placeholders in the request name, when they all name the same one.
pub(crate) fn single_owner<'a>(found: &[Found<'a>]) -> Option<&'a Owner> {
    let first = &found.first()?.placeholder.owner;
    found.iter().all(|f| &f.placeholder.owner == first).then_some(first)
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    let mut at = find(haystack, needle)?;
    let mut out = Vec::with_capacity(haystack.len() + with.len());
    let mut rest = haystack;
    loop {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
        match find(rest, needle) {
            Some(next) => at = next,
            None => {
                out.extend_from_slice(rest);
                return Some(out);
            }
        }
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub(crate) fn encode_query_component(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

/// Put `injection` on a request head: swap the bound placeholders for the secret in the
/// declared client headers and query parameters, then set the injection's headers (replacing
/// same-named client headers) and query parameters. Returns the new path-and-query when it
/// changed. Placeholders elsewhere are left alone (the engine refuses such requests first).
pub(crate) fn apply(
    headers: &mut HeaderMap,
    path_and_query: Option<&PathAndQuery>,
    injection: &Injection,
    bound: &[&str],
) -> Option<PathAndQuery> {
    let secret = injection.secret.expose_secret();
    if !bound.is_empty() {
        for name in &injection.client_headers {
            let values = headers.get_all(name);
            if !values.iter().any(|v| bound.iter().any(|p| find(v.as_bytes(), p.as_bytes()).is_some())) {
                continue;
            }
            let new_values: Vec<HeaderValue> = values
                .iter()
                .map(|v| {
                    let mut bytes = v.as_bytes().to_vec();
                    for p in bound {
                        if let Some(swapped) = replace_all(&bytes, p.as_bytes(), secret.as_bytes()) {
                            bytes = swapped;
                        }
                    }
                    HeaderValue::from_bytes(&bytes).map(|mut v| {
                        v.set_sensitive(true);
                        v
                    })
                })
                .filter_map(Result::ok)
                .collect();
            headers.remove(name);
            for v in new_values {
                headers.append(name.clone(), v);
            }
        }
    }
    for (name, value) in &injection.headers {
        let mut value = value.clone();
        value.set_sensitive(true);
        headers.insert(name.clone(), value);
    }
    let query = path_and_query.and_then(PathAndQuery::query);
    let needs_swap =
        !bound.is_empty() && query.is_some_and(|q| bound.iter().any(|p| find(q.as_bytes(), p.as_bytes()).is_some()));
    if injection.query.is_empty() && !needs_swap {
        return None;
    }
    let path = path_and_query.map_or("/", PathAndQuery::path);
    let mut query = query.unwrap_or("").to_owned();
    if needs_swap {
        let encoded = encode_query_component(secret);
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if injection.declares_query(name) => {
                    let mut value = value.to_owned();
                    for p in bound {
                        if let Some(swapped) = replace_all(value.as_bytes(), p.as_bytes(), encoded.as_bytes()) {
                            value = String::from_utf8(swapped).unwrap_or_default();
                        }
                    }
                    format!("{name}={value}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        query = pairs.join("&");
    }
    let query = set_query_params(&query, &injection.query);
    let joined = if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") };
    PathAndQuery::try_from(joined).ok()
}

/// Replace (first occurrence, dropping duplicates) or append each parameter.
fn set_query_params(query: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return query.to_owned();
    }
    let encoded: Vec<(String, String)> =
        params.iter().map(|(n, v)| (encode_query_component(n), encode_query_component(v))).collect();
    let mut done = vec![false; encoded.len()];
    let mut out: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        match encoded.iter().position(|(n, _)| n == name) {
            Some(i) if done[i] => {}
            Some(i) => {
                done[i] = true;
                out.push(format!("{}={}", encoded[i].0, encoded[i].1));
            }
            None => out.push(pair.to_owned()),
        }
    }
    for (i, (n, v)) in encoded.iter().enumerate() {
        if !done[i] {
            out.push(format!("{n}={v}"));
        }
    }
    out.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn injection(headers: &[(&str, &str)], query: &[(&str, &str)], secret: &str) -> Injection {
        Injection::new(SecretString::from(secret.to_owned()))
            .with_headers(headers.iter().map(|(n, v)| (n.parse().unwrap(), v.parse().unwrap())).collect())
            .with_query(query.iter().map(|(n, v)| ((*n).into(), (*v).into())).collect())
    }

    fn table() -> RouteTable {
        RouteTable::new(
            vec![],
            vec![
                Placeholder { value: "ph_AAA".into(), owner: Owner::from("a"), connection: "work".into() },
                Placeholder { value: "ph_BBB".into(), owner: Owner::from("b"), connection: "default".into() },
            ],
        )
    }

    #[test]
    fn finds_placeholders_in_headers_path_and_query() {
        let table = table();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "token ph_AAA".parse().unwrap());
        headers.insert("x-other", "nothing".parse().unwrap());
        let found = find_placeholders(&table, &headers, "/v1/ph_AAA", Some("key=ph_BBB&x=1&ph_AAA=2"));
        let mut got: Vec<_> = found.iter().map(|f| (f.placeholder.owner.0.as_str(), f.location.describe())).collect();
        // Placeholders are kept in a map: the order among them is not fixed.
        got.sort();
        assert_eq!(
            got,
            [
                ("a", "header authorization".to_owned()),
                ("a", "path".to_owned()),
                ("a", "query".to_owned()),
                ("b", "query parameter key".to_owned())
            ]
        );
        assert!(single_owner(&found).is_none());
        assert_eq!(single_owner(&found[..1]).unwrap().0, "a");
    }

    #[test]
    fn only_declared_locations_are_accepted() {
        let table = table();
        let inj = injection(&[("x-api-key", "S")], &[("api_key", "S")], "S")
            .with_client_headers(vec!["authorization".parse().unwrap()])
            .with_client_query(vec!["the key".into()]);
        let check = |header: (&str, &str), path: &str, query: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header.0.parse::<HeaderName>().unwrap(), header.1.parse().unwrap());
            let found = find_placeholders(&table, &headers, path, query);
            misplaced(&found, &inj).map(|f| f.location.describe())
        };
        assert_eq!(check(("authorization", "token ph_AAA"), "/", None), None);
        assert_eq!(check(("x-api-key", "ph_AAA"), "/", Some("api_key=ph_AAA&the%20key=ph_AAA")), None);
        assert_eq!(check(("x-echo", "ph_AAA"), "/", None).as_deref(), Some("header x-echo"));
        assert_eq!(check(("x-api-key", "ph_AAA"), "/echo/ph_AAA", None).as_deref(), Some("path"));
        assert_eq!(check(("x-a", "b"), "/", Some("ref=ph_BBB")).as_deref(), Some("query parameter ref"));
        assert_eq!(check(("x-a", "b"), "/", Some("ph_BBB=1")).as_deref(), Some("query"));
    }

    #[test]
    fn applies_headers_swaps_and_query_in_declared_places_only() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "token ph_AAA".parse().unwrap());
        headers.insert("x-api-key", "client-value".parse().unwrap());
        headers.append("x-multi", "a ph_AAA b ph_AAA".parse().unwrap());
        headers.append("x-multi", "plain".parse().unwrap());
        let pq: PathAndQuery = "/v1/x?key=ph_AAA&keep=1&api_key=old&api_key=dup&other=ph_AAA".parse().unwrap();
        let inj = injection(&[("x-api-key", "S3CRET")], &[("api_key", "s e/c"), ("new", "1")], "S3CRET")
            .with_client_headers(vec!["authorization".parse().unwrap(), "x-multi".parse().unwrap()])
            .with_client_query(vec!["key".into()]);
        let new_pq = apply(&mut headers, Some(&pq), &inj, &["ph_AAA"]).unwrap();
        assert_eq!(headers["authorization"], "token S3CRET");
        assert!(headers["authorization"].is_sensitive());
        assert_eq!(headers["x-api-key"], "S3CRET");
        let multi: Vec<_> = headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a S3CRET b S3CRET", "plain"]);
        assert_eq!(new_pq.as_str(), "/v1/x?key=S3CRET&keep=1&api_key=s%20e%2Fc&other=ph_AAA&new=1");
    }

    #[test]
    fn nothing_to_rewrite_keeps_the_uri() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer client".parse().unwrap());
        let pq: PathAndQuery = "/x?a=1".parse().unwrap();
        let inj = injection(&[("authorization", "Bearer real")], &[], "real");
        assert!(apply(&mut headers, Some(&pq), &inj, &[]).is_none());
        assert_eq!(headers.get_all("authorization").iter().count(), 1);
        assert_eq!(headers["authorization"], "Bearer real");
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query_component("a b&c=d~_.-"), "a%20b%26c%3Dd~_.-");
        assert_eq!(set_query_params("", &[("k".into(), "v".into())]), "k=v");
    }
}
