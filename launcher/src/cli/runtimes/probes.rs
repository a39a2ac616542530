//! The clients `doctor --sandbox` tries, and the shell script that runs them, all at once, inside
//! one sandbox. Each probe is one HTTPS GET (or a git clone) of `https://<host>/probe/<name>`
//! with the client's defaults: no flag of ours, so it shows what the client does on its own
//! with the environment and files `run --sandbox` gives it (docs/runtimes.md).

/// Exit status of a probe whose interpreter or library is not installed.
pub(super) const MISSING: i32 = 86;

/// The marker line before each probe's status and output.
pub(super) const MARKER: &str = "@@authsome-doctor";

pub(super) struct Probe {
    /// `runtime-client`, e.g. `python-requests`; also the URL path.
    pub(super) name: &'static str,
    /// What `--require` names: `python`, `node`…
    pub(super) runtime: &'static str,
    /// The program that must be on `PATH` for the probe to run.
    program: &'static str,
    /// A file written next to the probe (`{dir}` is the probe directory), and its text.
    file: Option<(&'static str, &'static str)>,
    /// The command; `$URL` is the probe's URL, `$D` the probe directory.
    command: &'static str,
    /// What gives this client the run's CA.
    pub(super) via: &'static str,
    /// What to do when it does not trust it.
    pub(super) fix: &'static str,
}

const PY_URLLIB: &str = "import sys, urllib.request\n\
r = urllib.request.urlopen(sys.argv[1], timeout=20)\n\
print(r.status)\n";

const PY_REQUESTS: &str = "import sys\n\
try:\n    import requests\nexcept ImportError:\n    sys.exit(86)\n\
r = requests.get(sys.argv[1], timeout=20)\n\
print(r.status_code)\n\
sys.exit(0 if r.status_code == 200 else 1)\n";

const PY_HTTPX: &str = "import sys\n\
try:\n    import httpx\nexcept ImportError:\n    sys.exit(86)\n\
r = httpx.get(sys.argv[1], timeout=20)\n\
print(r.status_code)\n\
sys.exit(0 if r.status_code == 200 else 1)\n";

const NODE_HTTPS: &str = "require('https').get(process.argv[2], (r) => { console.log(r.statusCode); \
r.resume(); process.exitCode = r.statusCode === 200 ? 0 : 1; })\
.on('error', (e) => { console.error(e.code || '', e.message); process.exitCode = 1; });\n";

const JS_FETCH: &str = "const url = (typeof Deno !== 'undefined') ? Deno.args[0] : (typeof Bun !== 'undefined' ? Bun.argv[2] : process.argv[2]);\n\
fetch(url).then((r) => { console.log(r.status); if (r.status !== 200) throw new Error('status ' + r.status); })\n\
.catch((e) => { console.error(String(e && e.cause ? e.cause : e)); \
if (typeof Deno !== 'undefined') Deno.exit(1); else process.exit(1); });\n";

const GO_MAIN: &str = "package main\n\
import (\"fmt\"; \"net/http\"; \"os\")\n\
func main() {\n\
\tr, err := http.Get(os.Args[1])\n\
\tif err != nil { fmt.Fprintln(os.Stderr, err); os.Exit(1) }\n\
\tfmt.Println(r.StatusCode)\n\
\tif r.StatusCode != 200 { os.Exit(1) }\n\
}\n";

const RUBY: &str = "require 'net/http'\n\
r = Net::HTTP.get_response(URI(ARGV[0]))\n\
puts r.code\n\
exit(r.code == '200' ? 0 : 1)\n";

const DOTNET: &str = "let r = (new System.Net.Http.HttpClient()).GetAsync(fsi.CommandLineArgs.[1]).Result\n\
printfn \"%d\" (int r.StatusCode)\n\
exit (if int r.StatusCode = 200 then 0 else 1)\n";

/// The JDK client, compiled for Java 8+ (`AuthsomeProbe.java` beside it).
const JAVA_CLASS: &[u8] = include_bytes!("AuthsomeProbe.class");

pub(super) const PROBES: &[Probe] = &[
    Probe {
        name: "curl",
        runtime: "curl",
        program: "curl",
        file: None,
        command: "curl -sS -o /dev/null -w '%{http_code}\\n' --fail \"$URL\"",
        via: "CURL_CA_BUNDLE, and the run's bundle over /etc/ssl/certs/ca-certificates.crt",
        fix: "point CURL_CA_BUNDLE (or --cacert) at the run's bundle, or drop a --cacert/--capath that replaces it",
    },
    Probe {
        name: "python-urllib",
        runtime: "python",
        program: "python3",
        file: Some(("urllib_probe.py", PY_URLLIB)),
        command: "python3 \"$D/urllib_probe.py\" \"$URL\"",
        via: "SSL_CERT_FILE / SSL_CERT_DIR (OpenSSL's defaults)",
        fix: "a custom ssl.SSLContext must load the defaults (ssl.create_default_context()) or SSL_CERT_FILE",
    },
    Probe {
        name: "python-requests",
        runtime: "python",
        program: "python3",
        file: Some(("requests_probe.py", PY_REQUESTS)),
        command: "python3 \"$D/requests_probe.py\" \"$URL\"",
        via: "REQUESTS_CA_BUNDLE (requests ignores the system store: certifi)",
        fix: "do not pass verify=<certifi path>; leave verify=True so REQUESTS_CA_BUNDLE applies",
    },
    Probe {
        name: "python-httpx",
        runtime: "python",
        program: "python3",
        file: Some(("httpx_probe.py", PY_HTTPX)),
        command: "python3 \"$D/httpx_probe.py\" \"$URL\"",
        via: "SSL_CERT_FILE (httpx with trust_env, its default)",
        fix: "keep trust_env=True, or pass verify=ssl.create_default_context(cafile=os.environ['SSL_CERT_FILE'])",
    },
    Probe {
        name: "node-https",
        runtime: "node",
        program: "node",
        file: Some(("https.cjs", NODE_HTTPS)),
        command: "node \"$D/https.cjs\" \"$URL\"",
        via: "NODE_EXTRA_CA_CERTS",
        fix: "a `ca:` option replaces Node's roots: add the contents of NODE_EXTRA_CA_CERTS to it",
    },
    Probe {
        name: "node-fetch",
        runtime: "node",
        program: "node",
        file: Some(("fetch.cjs", JS_FETCH)),
        command: "node \"$D/fetch.cjs\" \"$URL\"",
        via: "NODE_EXTRA_CA_CERTS",
        fix: "an undici Agent with its own `connect.ca` replaces Node's roots: add NODE_EXTRA_CA_CERTS to it",
    },
    Probe {
        name: "git",
        runtime: "git",
        program: "git",
        file: None,
        command: "GIT_TERMINAL_PROMPT=0 git clone -q \"${URL%/probe/git}/git/repo.git\" \"$D/clone\" && echo 200",
        via: "GIT_SSL_CAINFO",
        fix: "unset http.sslCAInfo / http.sslCAPath in your git config, or set them to the run's bundle",
    },
    Probe {
        name: "go",
        runtime: "go",
        program: "go",
        file: Some(("main.go", GO_MAIN)),
        command: "cd \"$D\" && go run main.go \"$URL\"",
        via: "SSL_CERT_FILE / SSL_CERT_DIR (crypto/x509)",
        fix: "a tls.Config with its own RootCAs replaces the system pool: start from x509.SystemCertPool()",
    },
    Probe {
        name: "java",
        runtime: "java",
        program: "java",
        file: None,
        command: "base64 -d \"$D/AuthsomeProbe.b64\" > \"$D/AuthsomeProbe.class\" && java -cp \"$D\" AuthsomeProbe \"$URL\"",
        via: "JAVA_TOOL_OPTIONS (-Djavax.net.ssl.trustStore, PKCS#12), and the JDK's cacerts",
        fix: "a -Djavax.net.ssl.trustStore of your own replaces ours: import the run's CA (NODE_EXTRA_CA_CERTS) into it",
    },
    Probe {
        name: "deno",
        runtime: "deno",
        program: "deno",
        file: Some(("fetch.mjs", JS_FETCH)),
        command: "deno run --allow-net --allow-env --quiet \"$D/fetch.mjs\" \"$URL\"",
        via: "DENO_CERT",
        fix: "--cert or DENO_TLS_CA_STORE settings of your own replace it: keep DENO_CERT",
    },
    Probe {
        name: "bun",
        runtime: "bun",
        program: "bun",
        file: Some(("fetch-bun.mjs", JS_FETCH)),
        command: "bun \"$D/fetch-bun.mjs\" \"$URL\"",
        via: "NODE_EXTRA_CA_CERTS",
        fix: "a `tls.ca` option replaces Bun's roots: add NODE_EXTRA_CA_CERTS to it",
    },
    Probe {
        name: "dotnet",
        runtime: "dotnet",
        program: "dotnet",
        file: Some(("probe.fsx", DOTNET)),
        command: "DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 dotnet fsi \"$D/probe.fsx\" \"$URL\"",
        via: "SSL_CERT_FILE / SSL_CERT_DIR (.NET reads OpenSSL's variables)",
        fix: "a ServerCertificateCustomValidationCallback or custom X509Chain policy bypasses them: use the defaults",
    },
    Probe {
        name: "ruby",
        runtime: "ruby",
        program: "ruby",
        file: Some(("probe.rb", RUBY)),
        command: "ruby \"$D/probe.rb\" \"$URL\"",
        via: "SSL_CERT_FILE / SSL_CERT_DIR (OpenSSL's defaults)",
        fix: "an http.ca_file / cert_store of your own replaces them: use OpenSSL::X509::Store#set_default_paths",
    },
];

/// The script `sh -c` runs inside the sandbox: write the probes' files, start every probe
/// whose program is installed at once (each bounded by `timeout` where there is one), wait,
/// then print each one's exit status and its output (base64, at most 2 KB).
pub(super) fn script(host: &str) -> String {
    use base64::Engine as _;
    let mut s = String::from(
        "D=$(mktemp -d 2>/dev/null || { mkdir -p /tmp/authsome-doctor && echo /tmp/authsome-doctor; })\n\
         T=; command -v timeout >/dev/null 2>&1 && T='timeout 60'\n",
    );
    s.push_str(&format!(
        "printf '%s' '{}' > \"$D/AuthsomeProbe.b64\"\n",
        base64::engine::general_purpose::STANDARD.encode(JAVA_CLASS)
    ));
    for probe in PROBES {
        if let Some((name, text)) = probe.file {
            s.push_str(&format!("cat > \"$D/{name}\" <<'AUTHSOME_EOF'\n{text}AUTHSOME_EOF\n"));
        }
    }
    for probe in PROBES {
        let url = format!("https://{host}/probe/{}", probe.name);
        s.push_str(&format!(
            "if command -v {program} >/dev/null 2>&1; then ( URL='{url}'; export URL D; $T sh -c '{command}' \
             >\"$D/{name}.out\" 2>&1; echo $? >\"$D/{name}.rc\" ) & else echo {MISSING} >\"$D/{name}.rc\"; : \
             >\"$D/{name}.out\"; fi\n",
            program = probe.program,
            command = probe.command.replace('\'', "'\\''"),
            name = probe.name,
        ));
    }
    s.push_str("wait\n");
    for probe in PROBES {
        s.push_str(&format!(
            "printf '{MARKER} {name} %s\\n' \"$(cat \"$D/{name}.rc\")\"; head -c 2048 \"$D/{name}.out\" | base64 | tr -d '\\n'; echo\n",
            name = probe.name
        ));
    }
    s
}

/// One probe's exit status and output, from the script's stdout.
pub(super) fn parse(stdout: &str) -> Vec<(String, i32, String)> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut lines = stdout.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix(MARKER) else { continue };
        let mut parts = rest.split_whitespace();
        let (Some(name), code) = (parts.next(), parts.next().and_then(|c| c.parse().ok()).unwrap_or(-1)) else {
            continue;
        };
        let output = lines
            .next()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        out.push((name.to_string(), code, output));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script runs as it is in a plain shell; with only the shell's tools on `PATH`, every
    /// probe is reported, as not installed.
    #[test]
    fn the_script_reports_every_probe() {
        let bin = tempfile::tempdir().unwrap();
        for tool in ["sh", "mktemp", "mkdir", "cat", "head", "base64", "tr", "timeout"] {
            let found = ["/usr/bin", "/bin"].iter().map(|d| std::path::Path::new(d).join(tool)).find(|p| p.exists());
            std::os::unix::fs::symlink(found.expect(tool), bin.path().join(tool)).unwrap();
        }
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script("doctor.invalid"))
            .env_clear()
            .env("PATH", bin.path())
            .output()
            .unwrap();
        let results = parse(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(results.len(), PROBES.len(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(results.iter().all(|(_, code, _)| *code == MISSING), "{results:?}");
        let names: Vec<&str> = results.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, PROBES.iter().map(|p| p.name).collect::<Vec<_>>());
    }

    #[test]
    fn names_are_unique_and_runtimes_group_them() {
        for (i, p) in PROBES.iter().enumerate() {
            assert!(PROBES[..i].iter().all(|q| q.name != p.name), "{}", p.name);
            assert!(p.name.starts_with(p.runtime), "{}", p.name);
        }
    }
}
