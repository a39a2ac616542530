//! End-to-end checks over the whole bundled catalog: `list --json` and `inspect` show every
//! provider, `docs/providers.md` is what the binary says (regenerate it with
//! `AUTHSOME_BLESS=1 cargo test -p authsome --test catalog`), and the catalog's hygiene rules
//! (no two providers claiming the same host unless declared a variant, https-only OAuth
//! endpoints, no shared user-content domains, the size the catalog promises).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::Env;
use serde_json::Value;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/providers.md");
const CATALOG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/providers/catalog");

/// Pairs of providers that may claim overlapping hosts, and why. The schema has no variant
/// field yet, so the pairs are listed here; anything else overlapping is a catalog bug (with
/// both connected the proxy injects nothing on the shared host, and the user cannot tell why).
const VARIANTS: &[(&str, &str, &str)] = &[
    ("klaviyo", "klaviyo-oauth", "the same API with a private key or an OAuth token"),
    ("gemini", "google", "the Gemini API key on generativelanguage.googleapis.com, inside Google's OAuth hosts"),
    ("zendesk", "zendesk-api-token", "the same subdomain API with an OAuth token or an email + API token"),
];

/// Domains where anyone can run a server of their own: a credential must never be scoped to
/// them (a vendor's own API hosts under its domain are a different matter).
const SHARED_DOMAINS: &[&str] = &[
    "amazonaws.com",
    "s3.amazonaws.com",
    "cloudfront.net",
    "azurewebsites.net",
    "blob.core.windows.net",
    "appspot.com",
    "web.app",
    "firebaseapp.com",
    "github.io",
    "gitlab.io",
    "herokuapp.com",
    "netlify.app",
    "vercel.app",
    "pages.dev",
    "workers.dev",
    "ngrok.io",
    "ngrok-free.app",
];

/// Every bundled provider as `inspect` prints it, in `list --json` order.
fn inspected(env: &Env) -> Vec<Value> {
    let list = env.run(&["list", "--json"]).ok().json();
    list["bundled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| env.run(&["inspect", e["name"].as_str().unwrap()]).ok().json())
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn flows(p: &Value) -> String {
    let mut flows = vec![p["flow"].as_str().unwrap().to_string()];
    let oauth = &p["oauth"];
    if oauth["device_authorization_url"].is_string() && flows[0] != "device_code" {
        flows.push("device_code".into());
    }
    if p["auth_type"] == "oauth2" {
        flows.push("token via --stdin".into());
    }
    flows.join(", ")
}

fn env_names(p: &Value) -> String {
    let mut out = Vec::new();
    if let Some(map) = p["env"].as_object() {
        for names in map.values() {
            out.extend(strings(names).iter().map(|n| format!("`{n}`")));
        }
    }
    // A credential that takes two values: the second one's names, labelled.
    let second = &p["second_value"];
    if let Some(label) = second["label"].as_str() {
        let names: Vec<String> = strings(&second["env"]).iter().map(|n| format!("`{n}`")).collect();
        let kind = if second["secret"] == false { ", not secret" } else { "" };
        out.push(format!("+ {} ({label}{kind})", names.join(" ")));
    }
    out.join(" ")
}

/// The hosts column: the definition's hosts, then where `--base-url` may point.
fn hosts_cell(p: &Value) -> String {
    let listed = strings(&p["hosts"]);
    let mut hosts: Vec<String> = listed.iter().map(|h| format!("`{h}`")).collect();
    if let (Some(prefix), false) = (p["path_prefix"].as_str(), listed.is_empty()) {
        hosts.push(format!("(under `{prefix}`)"));
    }
    let base = &p["base_url"];
    if base.is_object() {
        let mut templates: Vec<String> = strings(&base["hosts"])
            .iter()
            .filter(|t| !listed.contains(t))
            .map(|t| if t == "{host}" { "your own server".to_string() } else { format!("`{t}`") })
            .collect();
        if templates.len() < strings(&base["hosts"]).len() {
            templates.insert(0, "one of these".into());
        }
        let how = if base["required"] == true { "required" } else { "optional" };
        let mut text = format!("base URL ({how}): {}", templates.join(", "));
        if let Some(prefix) = base["path_prefix"].as_str() {
            text.push_str(&format!(" (under `{prefix}`)"));
        }
        hosts.push(text);
    }
    hosts.join(" ")
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn render(providers: &[Value]) -> String {
    let mut out = String::from(
        "# Bundled providers\n\n\
         Generated from `authsome list --json` and `authsome inspect`; do not edit by hand. Regenerate with\n\
         `AUTHSOME_BLESS=1 cargo test -p authsome --test catalog`. Each provider's credential placement is\n\
         proven on the wire by `tests/provider_wire.rs` against `tests/fixtures/provider-wire.json`.\n\n",
    );
    out.push_str(&format!("{} providers.\n\n", providers.len()));
    out.push_str("| name | display name | auth type | hosts | env names | flows |\n|---|---|---|---|---|---|\n");
    for p in providers {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            p["name"].as_str().unwrap(),
            cell(p["display_name"].as_str().unwrap()),
            p["auth_type"].as_str().unwrap(),
            cell(&hosts_cell(p)),
            cell(&env_names(p)),
            flows(p)
        ));
    }
    out
}

#[test]
fn list_and_inspect_show_every_bundled_provider_and_the_doc_is_current() {
    let env = Env::new();
    let providers = inspected(&env);
    let files = std::fs::read_dir(CATALOG_DIR)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(providers.len(), files, "list --json shows a different number of providers than the catalog holds");
    for p in &providers {
        assert_eq!(p["source"], "bundled", "{}", p["name"]);
        // Per-tenant providers list no hosts: every connection names its own (`--base-url`).
        let required = p["base_url"]["required"] == true && !strings(&p["base_url"]["hosts"]).is_empty();
        assert!(!strings(&p["hosts"]).is_empty() || required, "{}", p["name"]);
    }

    let want = render(&providers);
    if std::env::var("AUTHSOME_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(DOC, &want).unwrap();
    }
    let have = std::fs::read_to_string(DOC).unwrap_or_default();
    if have != want {
        let first = have.lines().zip(want.lines()).position(|(a, b)| a != b).unwrap_or(have.lines().count());
        panic!(
            "docs/providers.md is out of date (first difference at line {}: have {:?}, want {:?}); \
             regenerate it with AUTHSOME_BLESS=1 cargo test -p authsome --test catalog",
            first + 1,
            have.lines().nth(first),
            want.lines().nth(first)
        );
    }
}

/// The definitions as checked in (name → JSON).
fn definitions() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(CATALOG_DIR).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        out.insert(stem, doc);
    }
    out
}

/// Whether two host patterns (exact or `*.suffix`) can match the same host.
fn overlap(a: &str, b: &str) -> bool {
    let under = |host: &str, suffix: &str| host.len() > suffix.len() && host.ends_with(&format!(".{suffix}"));
    match (a.strip_prefix("*."), b.strip_prefix("*.")) {
        (None, None) => a == b,
        (Some(sa), None) => under(b, sa),
        (None, Some(sb)) => under(a, sb),
        (Some(sa), Some(sb)) => sa == sb || under(sa, sb) || under(sb, sa),
    }
}

/// The hosts a provider's connections can be routed to: its hosts, and the hosts its base-URL
/// templates allow (`{tenant}.suffix` as `*.suffix`, a superset; `{host}`, a server of the user's
/// own naming, claims nothing here).
fn claimed(def: &Value) -> Vec<String> {
    let mut hosts = strings(&def["hosts"]);
    for template in strings(&def["base_url"]["hosts"]) {
        match template.strip_prefix('{').and_then(|rest| rest.split_once("}.")) {
            Some((_, suffix)) => hosts.push(format!("*.{suffix}")),
            None if template == "{host}" => {}
            None => hosts.push(template),
        }
    }
    hosts
}

#[test]
fn no_two_providers_claim_the_same_host_unless_declared_variants() {
    let defs = definitions();
    let declared = |a: &str, b: &str| VARIANTS.iter().any(|(x, y, _)| (*x == a && *y == b) || (*x == b && *y == a));
    let mut clashes = Vec::new();
    let names: Vec<&String> = defs.keys().collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let (ha, hb) = (claimed(&defs[*a]), claimed(&defs[*b]));
            let same_path = defs[*a]["path_prefix"] == defs[*b]["path_prefix"]
                || defs[*a]["path_prefix"].is_null()
                || defs[*b]["path_prefix"].is_null();
            for x in &ha {
                for y in &hb {
                    if overlap(x, y) && same_path && !declared(a, b) {
                        clashes.push(format!("{a} ({x}) and {b} ({y})"));
                    }
                }
            }
        }
    }
    assert!(clashes.is_empty(), "overlapping hosts:\n{}", clashes.join("\n"));
    for (a, b, _) in VARIANTS {
        assert!(defs.contains_key(*a) && defs.contains_key(*b), "stale variant pair {a}/{b}");
    }
    // The rule itself: label boundaries, not substrings.
    assert!(overlap("*.googleapis.com", "gmail.googleapis.com"));
    assert!(!overlap("*.googleapis.com", "googleapis.com"));
    assert!(!overlap("api.x.com", "api.x.com.evil.test"));
    assert!(overlap("*.api.mailchimp.com", "*.mailchimp.com"));
}

#[test]
fn every_oauth_url_is_https_and_no_host_is_a_shared_domain() {
    let mut problems = Vec::new();
    for (name, def) in definitions() {
        if let Some(oauth) = def["oauth"].as_object() {
            let base = oauth.get("base_url").and_then(Value::as_str).unwrap_or("");
            for (field, value) in oauth {
                let Some(url) = value.as_str() else { continue };
                let url = url.replace("{base_url}", base);
                if (field.ends_with("_url") || field.ends_with("_endpoint")) && !url.starts_with("https://") {
                    problems.push(format!("{name}: oauth.{field} '{url}' is not https"));
                }
            }
        }
        if let Some(url) = def["docs_url"].as_str()
            && !url.starts_with("https://")
        {
            problems.push(format!("{name}: docs_url '{url}' is not https"));
        }
        if def["docs_url"].is_null() {
            problems.push(format!("{name}: no docs_url naming where its facts come from"));
        }
        for host in strings(&def["hosts"]) {
            let bare = host.strip_prefix("*.").unwrap_or(&host);
            if SHARED_DOMAINS
                .iter()
                .any(|d| bare == *d || bare.ends_with(&format!(".{d}")) || d.ends_with(&format!(".{bare}")))
            {
                problems.push(format!("{name}: host '{host}' is (under) a shared user-content domain"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_catalog_holds_at_least_150_distinct_providers() {
    let defs = definitions();
    assert!(defs.len() >= 150, "{} providers bundled", defs.len());
    // No alias counted twice: two definitions with the same hosts, credential placement and
    // login are one provider under two names.
    let mut seen = BTreeMap::new();
    for (name, def) in &defs {
        let key = (
            def["hosts"].to_string(),
            def["path_prefix"].to_string(),
            def["inject"].to_string(),
            def["auth_type"].to_string(),
        );
        if let Some(other) = seen.insert(key, name.clone()) {
            panic!("{name} and {other} are the same provider under two names");
        }
    }
    assert!(Path::new(DOC).is_file(), "docs/providers.md is missing");
}
