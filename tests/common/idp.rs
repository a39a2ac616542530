//! A real authorization server for the OAuth tests: panva's oidc-provider (npm), configured
//! by `tests/oauth/idp.mjs`, served over TLS for the made-up host `idp.example.test` with a
//! test CA from `authsome_testkit::Pki`. authsome reaches it through `AUTHSOME_CONNECT_TO` and
//! trusts it through `AUTHSOME_EXTRA_ROOTS`. The "browser" is an HTTP client that keeps
//! cookies and submits oidc-provider's plain HTML forms.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const HOST: &str = "idp.example.test";
pub const ISSUER: &str = "https://idp.example.test";
pub const OIDC_PROVIDER: &str = "oidc-provider@9.13.3";
/// The static confidential client (Basic auth at the token endpoint).
pub const CLIENT_ID: &str = "authsome-test";
pub const CLIENT_SECRET: &str = "s3cret: with & odd = chars";

/// Where the npm package lives: `AUTHSOME_TEST_NODE_PREFIX`, else `target/test-deps`
/// (what `.ci/install-deps` fills). Installed here when missing, under a lock, so a plain
/// `cargo test` works on a machine with node and npm.
fn node_prefix() -> PathBuf {
    let prefix = std::env::var_os("AUTHSOME_TEST_NODE_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-deps"));
    let marker = prefix.join("node_modules/oidc-provider/package.json");
    if marker.exists() {
        return prefix;
    }
    std::fs::create_dir_all(&prefix).unwrap();
    let lock = std::fs::File::create(prefix.join(".install.lock")).unwrap();
    lock.lock().unwrap();
    if !marker.exists() {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(OIDC_PROVIDER)
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("npm is needed for the OAuth tests (run `bash .ci/install-deps`): {e}"));
        assert!(status.success(), "npm install {OIDC_PROVIDER} failed");
    }
    prefix
}

/// A test CA and a CA:FALSE leaf for `idp.example.test`, as PEM files in `dir`.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    authsome_testkit::Pki::new(&[HOST]).write_files(dir)
}

pub struct Options {
    pub access_ttl: u64,
    pub slow_down: bool,
    /// Redirect URIs of the static client.
    pub redirect_uris: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self { access_ttl: 3600, slow_down: false, redirect_uris: vec!["http://127.0.0.1/auth/callback/oauth".into()] }
    }
}

pub struct Idp {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    events: PathBuf,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Idp {
    pub fn start(options: Options) -> Self {
        let prefix = node_prefix();
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = make_certs(dir.path());
        let events = dir.path().join("events.jsonl");
        std::fs::write(&events, "").unwrap();
        let clients = json!([{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            // Native: a loopback redirect URI matches on any port (RFC 8252).
            "application_type": "native",
            "redirect_uris": options.redirect_uris,
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }]);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/oauth/idp.mjs");
        // The script imports oidc-provider from the prefix: run it from a copy there (copied
        // then renamed, so parallel tests never read a half-written file).
        let runner = prefix.join("idp.mjs");
        let tmp = prefix.join(format!(".idp.mjs.{}.{}", std::process::id(), dir.path().display().to_string().len()));
        let tmp = tmp.with_extension(format!("{}", rand_suffix()));
        std::fs::copy(&script, &tmp).unwrap();
        std::fs::rename(&tmp, &runner).unwrap();
        let mut child = Command::new("node")
            .arg(&runner)
            .env("IDP_ISSUER", ISSUER)
            .env("IDP_PORT", "0")
            .env("IDP_CERT", &cert)
            .env("IDP_KEY", &key)
            .env("IDP_CLIENTS", clients.to_string())
            .env("IDP_ACCESS_TTL", options.access_ttl.to_string())
            .env("IDP_SLOW_DOWN", if options.slow_down { "1" } else { "0" })
            .env("IDP_EVENTS", &events)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("idp.log")).unwrap())
            .spawn()
            .expect("node is needed for the OAuth tests (run `bash .ci/install-deps`)");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        // Keep draining: oidc-provider prints notices on stdout, and a closed pipe kills it.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("oidc-provider did not start: {line:?}"));
        Self { child, port, dir, ca, events }
    }

    /// Take the server down (as if the provider were unreachable).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The environment authsome needs to reach and trust this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AUTHSOME_EXTRA_ROOTS", self.ca.display().to_string()),
            ("AUTHSOME_CONNECT_TO", format!("{HOST}:443:127.0.0.1:{}", self.port)),
        ]
    }

    /// A provider definition pointing at this server.
    pub fn provider(&self, name: &str, flow: &str, extra: Value) -> Value {
        let mut oauth = json!({
            "authorization_url": format!("{ISSUER}/auth"),
            "token_url": format!("{ISSUER}/token"),
            "revocation_url": format!("{ISSUER}/token/revocation"),
            "device_authorization_url": format!("{ISSUER}/device/auth"),
            "scopes": ["openid", "offline_access", "profile"],
            "authorization_params": {"prompt": "consent"},
            "token_auth_method": "client_secret_basic",
        });
        if let (Some(oauth), Value::Object(extra)) = (oauth.as_object_mut(), extra) {
            for (k, v) in extra {
                if v.is_null() {
                    oauth.remove(&k);
                } else {
                    oauth.insert(k, v);
                }
            }
        }
        json!({
            "schema_version": 1,
            "name": name,
            "display_name": format!("Test IdP ({name})"),
            "auth_type": "oauth2",
            "flow": flow,
            "hosts": ["api.example.test"],
            "inject": {"type": "header", "name": "Authorization", "value": "Bearer {secret}"},
            "env": {"access_token": [format!("{}_TOKEN", name.to_uppercase())], "refresh_token": [format!("{}_REFRESH", name.to_uppercase())]},
            "oauth": oauth,
        })
    }

    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.events).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The server's own log (stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("idp.log")).unwrap_or_default()
    }

    pub fn count(&self, event: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == event).count()
    }

    pub fn count_grant(&self, grant_type: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == "grant" && e["grant_type"] == grant_type).count()
    }

    fn http(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap();
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .resolve(HOST, SocketAddr::from(([127, 0, 0, 1], self.port)))
            .tls_certs_merge([ca])
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }

    /// A browser with its own cookie jar.
    pub fn browser(&self) -> Browser {
        Browser { http: self.http(), rewrite_callback: None }
    }

    /// RFC 7662 introspection with the static client: is `token` active?
    pub async fn active(&self, token: &str) -> bool {
        let doc: Value = self
            .http()
            .post(format!("{ISSUER}/token/introspection"))
            .basic_auth(enc(CLIENT_ID), Some(enc(CLIENT_SECRET)))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        doc["active"] == true
    }

    /// Revoke a token directly (as if the user revoked access at the provider).
    pub async fn revoke(&self, token: &str) {
        let status = self
            .http()
            .post(format!("{ISSUER}/token/revocation"))
            .basic_auth(enc(CLIENT_ID), Some(enc(CLIENT_SECRET)))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success());
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A page the browser landed on.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub url: String,
    pub body: String,
}

pub struct Browser {
    http: reqwest::Client,
    rewrite_callback: Option<fn(&str) -> String>,
}

impl Browser {
    /// A browser that changes the URL of the redirect back to authsome's OAuth callback (to
    /// play an attacker who tampers with the authorization response).
    pub fn rewriting_callback(mut self, rewrite: fn(&str) -> String) -> Self {
        self.rewrite_callback = Some(rewrite);
        self
    }

    /// GET `url` and follow redirects (to the provider, and back to the daemon).
    pub async fn get(&self, url: &str) -> Page {
        self.follow(self.http.get(url), url.to_string()).await
    }

    async fn follow(&self, mut request: reqwest::RequestBuilder, mut url: String) -> Page {
        for _ in 0..20 {
            let response = request.send().await.unwrap_or_else(|e| panic!("browser: {url}: {e}"));
            let status = response.status().as_u16();
            if (300..400).contains(&status) {
                let location = response.headers()["location"].to_str().unwrap().to_string();
                url = url::Url::parse(&url).unwrap().join(&location).unwrap().to_string();
                if let Some(rewrite) = self.rewrite_callback.filter(|_| url.contains("/auth/callback/oauth")) {
                    url = rewrite(&url);
                }
                request = self.http.get(&url);
                continue;
            }
            return Page { status, url, body: response.text().await.unwrap() };
        }
        panic!("too many redirects");
    }

    /// Submit the page's first form with these fields changed, and follow redirects.
    pub async fn submit(&self, page: &Page, fields: &[(&str, &str)]) -> Page {
        let (action, mut values) =
            parse_form(&page.body).unwrap_or_else(|| panic!("no form on {}:\n{}", page.url, page.body));
        for (name, value) in fields {
            values.retain(|(n, _)| n != name);
            values.push((name.to_string(), value.to_string()));
        }
        let target = url::Url::parse(&page.url).unwrap().join(&action).unwrap().to_string();
        let request = self.http.post(&target).form(&values);
        self.follow(request, target).await
    }

    /// The whole user side of an authorization-code login at oidc-provider: sign in, consent,
    /// and back to the daemon's callback. Returns the callback's page.
    pub async fn authorize(&self, url: &str) -> Page {
        let mut page = self.get(url).await;
        for _ in 0..4 {
            if page.body.contains("name=\"login\"") {
                page = self.submit(&page, &[("login", "alice"), ("password", "pw")]).await;
            } else if page.body.contains("value=\"consent\"") {
                page = self.submit(&page, &[]).await;
            } else {
                break;
            }
        }
        page
    }

    /// The user side of a device login: enter the code, confirm, sign in, consent.
    pub async fn approve_device(&self, verification_uri: &str, user_code: &str) -> Page {
        let page = self.get(verification_uri).await;
        let page = self.submit(&page, &[("user_code", user_code)]).await;
        assert!(page.body.contains("op.deviceConfirmForm"), "no confirm form: {}", page.body);
        let page = self.submit(&page, &[]).await;
        let page = self.authorize_page(page).await;
        assert!(page.body.to_lowercase().contains("sign-in success") || page.status == 200, "{}", page.body);
        page
    }

    async fn authorize_page(&self, mut page: Page) -> Page {
        for _ in 0..4 {
            if page.body.contains("name=\"login\"") {
                page = self.submit(&page, &[("login", "alice"), ("password", "pw")]).await;
            } else if page.body.contains("value=\"consent\"") {
                page = self.submit(&page, &[]).await;
            } else {
                break;
            }
        }
        page
    }
}

/// The first `<form>`'s action and its inputs' names and values (enough for oidc-provider's
/// and authsome's own pages).
pub fn parse_form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let end = html[start..].find("</form>").map(|e| start + e).unwrap_or(html.len());
    let form = &html[start..end];
    let tag_end = form.find('>')?;
    let action = attr(&form[..tag_end], "action").unwrap_or_default();
    let mut values = Vec::new();
    let mut rest = form;
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..];
        let close = tag.find('>').unwrap_or(tag.len());
        let tag_text = &tag[..close];
        if let Some(name) = attr(tag_text, "name") {
            values.push((name, attr(tag_text, "value").unwrap_or_default()));
        }
        rest = &tag[close..];
    }
    Some((unescape(&action), values.into_iter().map(|(n, v)| (n, unescape(&v))).collect()))
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let mut from = 0;
    while let Some(i) = tag[from..].find(&needle) {
        let at = from + i;
        // A whole attribute name, not the end of another (`data-name=`).
        if at == 0 || tag.as_bytes()[at - 1].is_ascii_whitespace() {
            let value_start = at + needle.len();
            let value_end = tag[value_start..].find('"')? + value_start;
            return Some(tag[value_start..value_end].to_string());
        }
        from = at + needle.len();
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Wait for `f` to hold, up to `timeout`.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A free loopback port (bound and released; the daemon binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A current-thread runtime for the async helpers.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}
