//! End-to-end proof that every bundled provider puts its credential on the wire the way its
//! vendor documents it. The expectations come from `tests/fixtures/provider-wire.json`, a table
//! written from each vendor's documentation (or its own SDK), never from the definitions under
//! test: a definition with a wrong header, prefix, encoding, parameter or host fails here.
//!
//! For each provider the real `authsome run` proxy talks to a local HTTPS echo standing in for
//! the vendor's host (`AUTHSOME_CONNECT_TO`), and the test asserts what the echo received, that
//! look-alike hosts (`api.vendor.com.evil.test`, `evil-api.vendor.com`) receive nothing even
//! when the proxy intercepts them, and that the child sees the vendor's env names as
//! placeholders. Many providers share one run (one curl per host) to keep the target fast;
//! providers that would contend for a host or an env name go into separate runs.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use authsome_testkit::{Echo, Pki};
use base64::Engine;
use common::{Env, Run};
use serde::Deserialize;
use serde_json::Value;

/// One row of the independent table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    name: String,
    /// A concrete API host from the vendor's docs (a wildcard definition is tried on this one).
    host: String,
    /// A documented API path (matters where the credential is scoped to a path prefix).
    #[serde(default = "root")]
    path: String,
    expect: Expect,
    /// The env names the vendor's SDK or CLI reads for this credential.
    env: Vec<String>,
    /// A key in the vendor's published format (defaults to a plain token).
    #[serde(default)]
    key: Option<String>,
    /// Hosts that must get nothing; defaults to `<host>.evil.test` and `evil-<host>`.
    #[serde(default)]
    lookalikes: Option<Vec<String>>,
    /// The second value of a credential that takes two (`{second}` in `expect`).
    #[serde(default)]
    second: Option<Second>,
    /// A per-tenant or regional API location given at login (`login --base-url`); `host` is its
    /// host. Other tenants' hosts belong in `lookalikes`.
    #[serde(default)]
    base_url: Option<String>,
    /// Where the facts come from.
    #[allow(dead_code)]
    source: String,
}

/// The second value as the vendor documents it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Second {
    /// A value in the vendor's published format.
    value: String,
    /// Whether the vendor treats it as a secret (a placeholder under `run`), or as an
    /// identifier that SDKs also put in URLs and host names (the real value under `run`).
    secret: bool,
    /// The env names the vendor's SDK or CLI reads it from.
    env: Vec<String>,
}

fn root() -> String {
    "/".into()
}

/// How the credential must arrive. `{key}` stands for the stored secret, `{second}` for the
/// second value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Expect {
    /// `name: value`.
    Header { name: String, value: String },
    /// Each `name: value`, every one exactly once.
    Headers(Vec<HeaderExpect>),
    /// `Authorization: Basic base64(user:password)`.
    Basic { user: String, password: String },
    /// `?name=<key>`.
    Query { name: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderExpect {
    name: String,
    value: String,
}

impl Row {
    fn key(&self) -> String {
        self.key.clone().unwrap_or_else(|| {
            let tag: String = self.name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            format!("REALKEY{}0123456789abcdef", tag.to_ascii_uppercase())
        })
    }

    /// Fill in `{key}` and `{second}`.
    fn fill(&self, template: &str) -> String {
        let second = self.second.as_ref().map_or("", |s| s.value.as_str());
        template.replace("{key}", &self.key()).replace("{second}", second)
    }

    /// What `login --stdin` reads: the key, and the second value on the next line.
    fn login_input(&self) -> String {
        match &self.second {
            Some(second) => format!("{}\n{}\n", self.key(), second.value),
            None => self.key(),
        }
    }

    /// Values no look-alike host may see (an identifier the child holds anyway is not one).
    fn secrets(&self) -> Vec<String> {
        let second = self.second.iter().filter(|s| s.secret).map(|s| s.value.clone());
        std::iter::once(self.key()).chain(second).collect()
    }

    fn lookalikes(&self) -> Vec<String> {
        self.lookalikes
            .clone()
            .unwrap_or_else(|| vec![format!("{}.evil.test", self.host), format!("evil-{}", self.host)])
    }
}

fn table() -> Vec<Row> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/provider-wire.json");
    let text = std::fs::read_to_string(path).expect("read the wire table");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The bundled providers as `inspect` shows them (name → definition).
fn bundled(env: &Env) -> BTreeMap<String, Value> {
    let list = env.run(&["list", "--json"]).ok().json();
    list["bundled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let inspect = env.run(&["inspect", &name]).ok().json();
            (name, inspect)
        })
        .collect()
}

/// Whether `host` is claimed by a definition's host pattern (exact or `*.suffix`).
fn claims(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.strip_suffix(suffix).is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        None => pattern == host,
    }
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// Split the rows into runs in which no two providers claim the same host or env name (with
/// both connected the proxy would rightly refuse to choose, and env names would be renamed).
fn rounds<'a>(rows: &'a [Row], defs: &BTreeMap<String, Value>) -> Vec<Vec<&'a Row>> {
    let mut rounds: Vec<Vec<&Row>> = Vec::new();
    let env_of = |r: &Row| -> BTreeSet<String> {
        let declared = defs[&r.name]["env"].as_object().into_iter().flat_map(|m| m.values().flat_map(strings));
        let second = strings(&defs[&r.name]["second_value"]["env"]);
        let tabled = r.env.iter().chain(r.second.iter().flat_map(|s| &s.env)).cloned();
        declared.chain(second).chain(tabled).collect()
    };
    let conflict = |a: &Row, b: &Row| {
        // A connection with a base URL is routed to that host (the definition may list none).
        let hosts = |r: &Row| {
            let mut hosts = strings(&defs[&r.name]["hosts"]);
            hosts.push(r.host.clone());
            hosts
        };
        // A look-alike of one row that another row's provider rightly claims (another tenant's
        // host, the default site of a regional connection) would receive that credential.
        let names = |r: &Row| std::iter::once(r.host.clone()).chain(r.lookalikes()).collect::<Vec<_>>();
        hosts(a).iter().any(|p| names(b).iter().any(|h| claims(p, h)))
            || hosts(b).iter().any(|p| names(a).iter().any(|h| claims(p, h)))
            || !env_of(a).is_disjoint(&env_of(b))
    };
    for row in rows {
        match rounds.iter_mut().find(|round| round.iter().all(|other| !conflict(row, other))) {
            Some(round) => round.push(row),
            None => rounds.push(vec![row]),
        }
    }
    rounds
}

fn unhex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every header value and the query string an echo received, decoded.
fn everything_received(echo: &Value) -> String {
    let mut all = unhex(echo["query_hex"].as_str().unwrap_or_default());
    for h in echo["headers_hex"].as_array().unwrap_or_else(|| panic!("not an echo: {echo}")) {
        all.push('\n');
        all.push_str(&unhex(h[1].as_str().unwrap()));
    }
    all
}

/// Output lines up to each `@@ <tag>` line, keyed by tag (the body comes first, the tag after it).
fn parse_output(run: &Run) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut body = Vec::new();
    for line in run.stdout.lines() {
        match line.strip_prefix("@@ ") {
            Some(tag) => {
                out.insert(tag.to_string(), body.join("\n").trim().to_string());
                body.clear();
            }
            None => body.push(line),
        }
    }
    out
}

/// One curl process fetching every `(tag, url)` at once (so its start-up and trust store are paid
/// once and the proxy's per-connection latency overlaps), then printing each response body
/// followed by `@@ <tag>`.
fn curl_script(requests: &[(String, String)]) -> String {
    let mut script = String::from("d=$(mktemp -d)\ncurl -sS --parallel --parallel-max 8 --max-time 120");
    for (i, (_, url)) in requests.iter().enumerate() {
        script.push_str(&format!(" -o \"$d/{i}\" '{url}'"));
    }
    script.push('\n');
    for (i, (tag, _)) in requests.iter().enumerate() {
        script.push_str(&format!("cat \"$d/{i}\"; printf '\\n@@ {tag}\\n'\n"));
    }
    script.push_str("rm -r \"$d\"\n");
    script
}

fn check_round(rows: &[&Row], failures: &mut Vec<String>) {
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        names.push(row.host.clone());
        names.extend(row.lookalikes());
    }
    names.sort();
    names.dedup();
    // A few names per upstream certificate: every handshake checks the whole name list, so one
    // certificate naming hundreds of hosts would make the run quadratic.
    let home = Env::new();
    let mut upstreams = Vec::new();
    let mut cas = String::new();
    let mut connect_to = Vec::new();
    for group in names.chunks(8) {
        let refs: Vec<&str> = group.iter().map(String::as_str).collect();
        let pki = Pki::new(&refs);
        let echo = Echo::https(&pki);
        cas.push_str(&pki.ca_pem);
        connect_to.extend(group.iter().map(|h| format!("{h}:443:127.0.0.1:{}", echo.port())));
        upstreams.push(echo);
    }
    let ca = home.cwd.path().join("upstream-cas.pem");
    std::fs::write(&ca, cas).unwrap();
    let env = home.set("AUTHSOME_CONNECT_TO", &connect_to.join(",")).set("AUTHSOME_EXTRA_ROOTS", ca.to_str().unwrap());
    for row in rows {
        let mut args = vec!["login", &row.name, "--stdin"];
        if let Some(url) = &row.base_url {
            args.extend(["--base-url", url]);
        }
        let login = env.run_stdin(&args, &row.login_input());
        if login.code != 0 {
            failures.push(format!("{}: login failed: {}", row.name, login.stderr.trim()));
        }
    }

    // The vendor's hosts get the credential; the child holds placeholders only.
    let requests: Vec<(String, String)> =
        rows.iter().map(|r| (r.name.clone(), format!("https://{}{}", r.host, r.path))).collect();
    let mut script = curl_script(&requests);
    for row in rows {
        for var in row.env.iter().chain(row.second.iter().flat_map(|s| &s.env)) {
            script.push_str(&format!("printf '%s\\n@@ env {var}\\n' \"${{{var}:-<unset>}}\"\n"));
        }
    }
    let run = env.run(&["run", "--", "sh", "-c", &script]);
    let out = parse_output(&run);
    for row in rows {
        let key = row.key();
        let Some(body) = out.get(&row.name) else {
            failures.push(format!("{}: no response (stderr: {})", row.name, run.stderr.trim()));
            continue;
        };
        let Ok(echo) = serde_json::from_str::<Value>(body) else {
            // curl names the host in its error (`... in connection to api.vendor.com:443`).
            let why: Vec<&str> =
                run.stderr.split(['\r', '\n']).filter(|l| l.contains("curl: (") && l.contains(&row.host)).collect();
            failures.push(format!("{}: no echo came back through the proxy: '{body}' {why:?}", row.name));
            continue;
        };
        match &row.expect {
            Expect::Header { name, value } => {
                let want = row.fill(value);
                let got = common::seen(&echo, name);
                if got != vec![want.clone()] {
                    failures.push(format!("{}: header {name}: want [{want}], got {got:?}", row.name));
                }
            }
            Expect::Headers(headers) => {
                for HeaderExpect { name, value } in headers {
                    let want = row.fill(value);
                    let got = common::seen(&echo, name);
                    if got != vec![want.clone()] {
                        failures.push(format!("{}: header {name}: want [{want}], got {got:?}", row.name));
                    }
                }
            }
            Expect::Basic { user, password } => {
                let pair = format!("{}:{}", row.fill(user), row.fill(password));
                let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
                let got = common::seen(&echo, "authorization");
                if got != vec![want.clone()] {
                    failures.push(format!("{}: authorization: want [{want}], got {got:?}", row.name));
                }
            }
            Expect::Query { name } => {
                let query = common::seen_query(&echo);
                let want = format!("{name}={key}");
                if !query.split('&').any(|pair| pair == want) {
                    failures.push(format!("{}: query: want {want}, got '{query}'", row.name));
                }
            }
        }
        for var in &row.env {
            match out.get(&format!("env {var}")) {
                Some(v) if v.contains("authsome_") && !v.contains(&key) => {}
                other => failures.push(format!("{}: env {var} is not a placeholder: {other:?}", row.name)),
            }
        }
        if let Some(second) = &row.second {
            for var in &second.env {
                let got = out.get(&format!("env {var}"));
                let ok = match got {
                    Some(v) if second.secret => v.contains("authsome_") && !v.contains(&second.value),
                    Some(v) => *v == second.value,
                    None => false,
                };
                if !ok {
                    let want = if second.secret { "a placeholder" } else { "the real identifier" };
                    failures.push(format!("{}: env {var} is not {want}: {got:?}", row.name));
                }
            }
        }
    }

    // Look-alike hosts get nothing, even when the proxy intercepts them.
    let requests: Vec<(String, String)> = rows
        .iter()
        .flat_map(|r| r.lookalikes().into_iter().map(move |h| (h.clone(), format!("https://{h}{}", r.path))))
        .collect();
    let script = curl_script(&requests);
    let run = env.run(&["run", "--inspect-all", "--", "sh", "-c", &script]);
    let out = parse_output(&run);
    for row in rows {
        for host in row.lookalikes() {
            let received = out.get(&host).and_then(|b| serde_json::from_str::<Value>(b).ok());
            match received {
                Some(echo) => {
                    // No credential of this round at all, not only the look-alike's vendor's.
                    let received = everything_received(&echo);
                    for owner in rows.iter().filter(|r| r.secrets().iter().any(|s| received.contains(s))) {
                        failures
                            .push(format!("{}: the look-alike {host} received {}'s credential", row.name, owner.name));
                    }
                }
                None => failures.push(format!("{}: no echo from look-alike {host}: {:?}", row.name, out.get(&host))),
            }
        }
    }
}

#[test]
fn every_bundled_provider_puts_its_credential_on_the_wire_as_documented() {
    let rows = table();
    let defs = bundled(&Env::new());
    let listed: BTreeSet<&String> = defs.keys().collect();
    let tabled: BTreeSet<&String> = rows.iter().map(|r| &r.name).collect();
    assert_eq!(rows.len(), tabled.len(), "a provider appears twice in the wire table");
    let untested: Vec<&&String> = listed.difference(&tabled).collect();
    let unknown: Vec<&&String> = tabled.difference(&listed).collect();
    assert!(untested.is_empty(), "bundled providers without a row in the wire table: {untested:?}");
    assert!(unknown.is_empty(), "wire-table rows for providers that are not bundled: {unknown:?}");

    let mut failures = Vec::new();
    for round in rounds(&rows, &defs) {
        check_round(&round, &mut failures);
    }
    assert!(failures.is_empty(), "{} wire failures:\n{}", failures.len(), failures.join("\n"));
}
