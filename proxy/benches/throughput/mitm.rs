//! mitmproxy as a baseline: `mitmdump` with an addon that sets the same header the proxy injects.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Mitm {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) ca: PathBuf,
}

pub(crate) fn start_mitmdump(dir: &Path, upstream_ca: &Path) -> Result<Mitm, String> {
    let Some(mitmdump) = std::env::var_os("MITMDUMP") else {
        return Err("MITMDUMP is not set (e.g. MITMDUMP=/opt/mitm/bin/mitmdump)".into());
    };
    if !Path::new(&mitmdump).exists() {
        return Err(format!("MITMDUMP={} does not exist", mitmdump.to_string_lossy()));
    }
    let addon = dir.join("inject.py");
    std::fs::write(&addon, "def request(flow):\n    flow.request.headers['authorization'] = 'Bearer bench-secret'\n")
        .map_err(|e| e.to_string())?;
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let confdir = dir.join("mitm-conf");
    let child = Command::new(&mitmdump)
        .args(["-q", "--listen-host", "127.0.0.1", "--listen-port", &port.to_string()])
        .arg("--set")
        .arg(format!("confdir={}", confdir.display()))
        .arg("--set")
        .arg(format!("ssl_verify_upstream_trusted_ca={}", upstream_ca.display()))
        .arg("-s")
        .arg(&addon)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start mitmdump: {e}"))?;
    let ca = confdir.join("mitmproxy-ca-cert.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ca.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Mitm { child, port, ca });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("mitmdump did not start listening within 30 s".into())
}
