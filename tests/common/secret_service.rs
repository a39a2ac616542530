//! A private Secret Service for the `keyring` key backend tests: a D-Bus session bus of its own
//! and a GNOME Keyring daemon on it, with its files in a temporary directory, so tests never
//! touch the developer's keychain. Needs `dbus-daemon`, `gnome-keyring-daemon` and `secret-tool`
//! (`bash .ci/install-deps` installs them).
#![allow(dead_code)] // each test target uses part of it

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "keyring test password";

const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=DIR</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#;

pub struct SecretService {
    dir: tempfile::TempDir,
    bus: Child,
    keyring: Option<Child>,
    pub address: String,
}

impl SecretService {
    /// A session bus with an unlocked GNOME Keyring on it.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["run", "data", "config", "cache"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path().join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        // A session bus that activates nothing: only what a test starts is on it.
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, BUS_CONFIG.replace("DIR", &dir.path().join("run").display().to_string())).unwrap();
        let mut bus = private_env(Command::new("dbus-daemon"), dir.path())
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("dbus-daemon is needed for the keyring tests (run `bash .ci/install-deps`): {e}")
            });
        let mut address = String::new();
        BufReader::new(bus.stdout.take().unwrap()).read_line(&mut address).unwrap();
        let address = address.trim().to_string();
        assert!(address.starts_with("unix:"), "dbus-daemon printed no address");
        let mut service = Self { dir, bus, keyring: None, address };
        service.start_keyring();
        service
    }

    /// Start (again) the keyring daemon, unlocking the login keyring with the test password.
    pub fn start_keyring(&mut self) {
        self.start_keyring_with(true);
    }

    /// Start the keyring daemon with its login keyring left locked (as after a reboot, before
    /// anyone typed the password).
    pub fn start_locked_keyring(&mut self) {
        self.start_keyring_with(false);
    }

    fn start_keyring_with(&mut self, unlock: bool) {
        let mut args = vec!["--foreground", "--components=secrets"];
        if unlock {
            args.push("--unlock");
        }
        let mut child = self
            .command("gnome-keyring-daemon")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("gnome-keyring-daemon is needed for the keyring tests (run `bash .ci/install-deps`): {e}")
            });
        let mut stdin = child.stdin.take().unwrap();
        if unlock {
            stdin.write_all(PASSWORD.as_bytes()).unwrap();
        }
        drop(stdin);
        self.keyring = Some(child);
        // Ready when the service owns its name and the login keyring answers a search.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let probe = self.command("secret-tool").args(["search", "probe", "none"]).output();
            let probe = probe.unwrap_or_else(|e| {
                panic!("secret-tool is needed for the keyring tests (run `bash .ci/install-deps`): {e}")
            });
            let owned = self
                .command("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
                .unwrap_or(false);
            if owned && (probe.status.success() || probe.status.code() == Some(1)) {
                return;
            }
            assert!(Instant::now() < deadline, "gnome-keyring-daemon did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the keyring daemon (the bus stays; nothing is activated in its place).
    pub fn stop_keyring(&mut self) {
        if let Some(mut child) = self.keyring.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A command that talks to this bus and keeps its files in the private directory.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = private_env(Command::new(program), self.dir.path());
        cmd.env("DBUS_SESSION_BUS_ADDRESS", &self.address);
        cmd
    }

    /// `secret-tool search --all application authsome`: the labels and attributes libsecret sees.
    pub fn authsome_items(&self) -> String {
        let out = self.command("secret-tool").args(["search", "--all", "application", "authsome"]).output().unwrap();
        // secret-tool splits its report between stdout and stderr; keep both, without the secret.
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        text.lines().filter(|l| !l.starts_with("secret = ")).collect::<Vec<_>>().join("\n")
    }
}

/// `dbus-monitor` on the test bus: every message, as a same-user process that watches the
/// session bus sees it.
pub struct Monitor {
    child: Child,
    out: std::path::PathBuf,
}

impl SecretService {
    /// Start watching the bus; returns once the monitor sees traffic.
    pub fn monitor(&self) -> Monitor {
        let out = self.dir.path().join(format!("monitor-{}.bin", std::process::id()));
        let file = std::fs::File::create(&out).unwrap();
        let child = self
            .command("dbus-monitor")
            .args(["--address", &self.address, "--binary"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("dbus-monitor is needed for the keyring tests (run `bash .ci/install-deps`): {e}")
            });
        let monitor = Monitor { child, out };
        // A marker call shows the monitor is in place.
        let marker = "authsome-monitor-ready";
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let _ = self
                .command("dbus-send")
                .args(["--session", "--dest=org.freedesktop.DBus", "/", "org.freedesktop.DBus.GetNameOwner"])
                .arg(format!("string:{marker}"))
                .output();
            if contains(&std::fs::read(&monitor.out).unwrap_or_default(), marker.as_bytes()) {
                return monitor;
            }
            assert!(Instant::now() < deadline, "dbus-monitor did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Monitor {
    /// Stop watching; every byte of every message seen.
    pub fn stop(mut self) -> Vec<u8> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read(&self.out).unwrap()
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Point HOME and the XDG directories into `dir`, so gnome-keyring's files and any activated
/// service stay private.
fn private_env(mut cmd: Command, dir: &Path) -> Command {
    cmd.env("HOME", dir)
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"));
    cmd
}

impl Drop for SecretService {
    fn drop(&mut self) {
        self.stop_keyring();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}
