//! What the launcher asks for ([`SandboxSpec`], [`FsPolicy`]), the default hidden paths, and the
//! spec's wire encoding. Pure data: nothing here touches the system.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::codec::{DecodeError, Reader, Writer};
pub use crate::defaults::{
    GIT_DIR_PROTECTED, HOME_SECRETS, HOME_TOOLCHAINS, HOST_SERVICE_SOCKETS, PROTECTED_NAMES, default_hidden_paths,
    default_home_toolchains,
};

/// Everything the helper needs to build one sandbox and start one command in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The command: a path, or a bare name looked up in `env`'s `PATH` inside the sandbox.
    pub program: OsString,
    /// The command's arguments, without `argv[0]` (which is `program`).
    pub args: Vec<OsString>,
    /// The complete, already scrubbed environment of the command (nothing else is inherited).
    pub env: Vec<(OsString, OsString)>,
    /// Working directory of the command. Writable only if it is in `fs.writable` (the launcher
    /// decides: never `$HOME`, an ancestor of it, or `/tmp`); it may be any directory, `/` too.
    pub cwd: PathBuf,
    /// Combined CA bundle (host roots + the run's CA), bound over every distro bundle path.
    pub ca_bundle: PathBuf,
    /// A hashed certificate directory (`<subject hash>.<n>` files) bound read-only over
    /// [`CA_CERT_DIR`] when the host has that directory, before the bundle binds (so it must hold
    /// the bundle paths that lie inside it).
    pub ca_dir: Option<PathBuf>,
    /// A file bound read-only over [`CA_JAVA_STORE`] inside the bound `ca_dir` (which must hold
    /// that name): the run's Java trust store.
    pub ca_store: Option<PathBuf>,
    /// Contents of the sandbox's `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// Contents of the sandbox's `/etc/hosts`, if it should be replaced.
    pub hosts_file: Option<String>,
    /// Extra TCP capture ports; 443 and 80 are always captured.
    pub tcp_ports: Vec<u16>,
    /// Capture UDP port 53 (IPv4 and IPv6).
    pub dns: bool,
    /// A `127.0.0.1:<port>` listener inside the sandbox for clients that honour `HTTP(S)_PROXY`.
    pub inner_proxy_port: Option<u16>,
    /// What the command sees of the host's filesystem.
    pub fs: FsPolicy,
}

/// The filesystem policy (docs/architecture.md, "The sandbox").
///
/// `open: false` (the default): host root read-only; `writable` paths writable, with the
/// [`PROTECTED_NAMES`] inside them (and in the repositories found below them) kept read-only and
/// pinned; `read` paths read-only; `protect` paths read-only wherever they are writable; private
/// `/tmp`, `/var/tmp`, `/dev/shm`, `/run` and minimal `/dev`; `hide` paths behind empty mounts;
/// `home` private or the host's. `open: true`: the host filesystem as it is (only the CA bundle,
/// resolv.conf and hosts are replaced); `hide` and `protect` still apply, `home` does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsPolicy {
    /// The host's tree as it is, writable where the caller may write (the opt-out).
    pub open: bool,
    /// Writable host paths (the launcher puts the cwd here when it may be writable, plus
    /// `--writable`). Naming a protected path (e.g. `<cwd>/.git`) here is the opt-out for it.
    pub writable: Vec<PathBuf>,
    /// Extra read-only host paths (`--read`), visible even inside a private home.
    pub read: Vec<PathBuf>,
    /// Paths behind an empty read-only mount, on top of everything else (so they stay hidden
    /// inside a writable or `--read` path); see [`default_hidden_paths`].
    pub hide: Vec<PathBuf>,
    /// Extra absolute paths kept read-only wherever they are (policy files, authsome's own
    /// files): bound read-only in place when they lie in a writable path. Missing ones are skipped.
    pub protect: Vec<PathBuf>,
    /// What the sandbox shows at the user's home directory.
    pub home: HomePolicy,
}

/// What the sandbox shows at the user's home directory (restricted policy only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HomePolicy {
    /// The host home as the rest of the root (read-only, minus `hide`).
    #[default]
    Host,
    /// A fresh tmpfs at `path` (mode 0700, owned by the caller, discarded after the run) with the
    /// existing `read_only` host paths under it bound back read-only; the cwd (read-only unless
    /// writable), `read` and `writable` paths under it are bound back too. `HOME` stays `path`.
    /// `path` must come from the password database, not from `$HOME`.
    Private {
        /// The home directory, from the password database.
        path: PathBuf,
        /// Host paths under it bound back read-only (toolchains); missing ones are skipped.
        read_only: Vec<PathBuf>,
    },
}

/// Ports captured whatever the spec says.
pub const ALWAYS_CAPTURED_TCP: [u16; 2] = [443, 80];

/// Distro CA bundle paths (Debian/Ubuntu, RHEL/Fedora, Alpine, others); every one that exists gets `ca_bundle`.
pub const CA_BUNDLE_PATHS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/usr/lib/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// The distributions' hashed certificate directory (OpenSSL's default `CApath`).
pub const CA_CERT_DIR: &str = "/etc/ssl/certs";

/// Where Debian's and Ubuntu's JDKs find their `cacerts` (through a link), in [`CA_CERT_DIR`].
pub const CA_JAVA_STORE: &str = "/etc/ssl/certs/java/cacerts";

/// Where commands inside the sandbox find the CA bundle: the first distro bundle path that
/// exists on this host (the helper binds `ca_bundle` over all of them). Point `SSL_CERT_FILE`,
/// `REQUESTS_CA_BUNDLE`, `NODE_EXTRA_CA_CERTS`… here, not at `ca_bundle`, whose directory may be
/// hidden inside. `None` when the host has none of them: the launcher should refuse `--sandbox`.
pub fn sandbox_ca_bundle_path() -> Option<PathBuf> {
    CA_BUNDLE_PATHS.iter().map(PathBuf::from).find(|p| p.is_file())
}

impl SandboxSpec {
    /// A spec for `program args…` in `cwd` with the defaults: restricted filesystem, DNS capture,
    /// no inner proxy, no extra ports, no environment at all.
    pub fn new(program: impl Into<OsString>, cwd: impl Into<PathBuf>, ca_bundle: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: cwd.into(),
            ca_bundle: ca_bundle.into(),
            ca_dir: None,
            ca_store: None,
            resolv_conf: "nameserver 127.0.0.1\n".to_owned(),
            hosts_file: None,
            tcp_ports: Vec::new(),
            dns: true,
            inner_proxy_port: None,
            fs: FsPolicy::default(),
        }
    }

    /// The TCP capture ports, deduplicated, in a stable order (443, 80, then the extras).
    pub fn capture_ports(&self) -> Vec<u16> {
        let mut ports = ALWAYS_CAPTURED_TCP.to_vec();
        for &p in &self.tcp_ports {
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        ports
    }

    /// Checks that need no system access. The helper checks the rest (paths exist, ports bind).
    pub fn validate(&self) -> Result<(), String> {
        if self.program.is_empty() {
            return Err("the command is empty".into());
        }
        if !self.cwd.is_absolute() {
            return Err(format!("the working directory {} is not absolute", self.cwd.display()));
        }
        if self.tcp_ports.contains(&0) || self.inner_proxy_port == Some(0) {
            return Err("port 0 cannot be captured".into());
        }
        if let Some(p) = self.inner_proxy_port
            && self.capture_ports().contains(&p)
        {
            return Err(format!("the inner proxy port {p} is also a capture port"));
        }
        let home_paths: &[PathBuf] = match &self.fs.home {
            HomePolicy::Host => &[],
            HomePolicy::Private { path, read_only } => {
                if !path.is_absolute() || path == Path::new("/") {
                    return Err(format!("the private home {} is not an absolute directory below /", path.display()));
                }
                read_only
            }
        };
        let fs = &self.fs;
        for path in fs.writable.iter().chain(&fs.read).chain(&fs.hide).chain(&fs.protect).chain(home_paths) {
            if !path.is_absolute() {
                return Err(format!("{} is not an absolute path", path.display()));
            }
        }
        for (key, _) in &self.env {
            if key.is_empty() || key.as_encoded_bytes().contains(&b'=') {
                return Err(format!("invalid environment variable name {key:?}"));
            }
        }
        Ok(())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SPEC_MAGIC).os(&self.program).len(self.args.len());
        for a in &self.args {
            w.os(a);
        }
        w.len(self.env.len());
        for (k, v) in &self.env {
            w.os(k).os(v);
        }
        w.path(&self.cwd).path(&self.ca_bundle);
        for path in [&self.ca_dir, &self.ca_store] {
            match path {
                Some(path) => w.bool(true).path(path),
                None => w.bool(false),
            };
        }
        w.str(&self.resolv_conf);
        match &self.hosts_file {
            Some(h) => w.bool(true).str(h),
            None => w.bool(false),
        };
        w.len(self.tcp_ports.len());
        for &p in &self.tcp_ports {
            w.u16(p);
        }
        w.bool(self.dns);
        match self.inner_proxy_port {
            Some(p) => w.bool(true).u16(p),
            None => w.bool(false),
        };
        w.bool(self.fs.open).len(self.fs.writable.len());
        for p in &self.fs.writable {
            w.path(p);
        }
        for list in [&self.fs.read, &self.fs.hide, &self.fs.protect] {
            w.len(list.len());
            for p in list {
                w.path(p);
            }
        }
        match &self.fs.home {
            HomePolicy::Host => w.bool(false),
            HomePolicy::Private { path, read_only } => {
                w.bool(true).path(path).len(read_only.len());
                for p in read_only {
                    w.path(p);
                }
                &mut w
            }
        };
        w.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != SPEC_MAGIC {
            return Err(DecodeError("not a sandbox spec (helper from another build?)"));
        }
        let program = r.os()?;
        let args = (0..r.len()?).map(|_| r.os()).collect::<Result<_, _>>()?;
        let env = (0..r.len()?).map(|_| Ok((r.os()?, r.os()?))).collect::<Result<_, _>>()?;
        let cwd = r.path()?;
        let ca_bundle = r.path()?;
        let ca_dir = if r.bool()? { Some(r.path()?) } else { None };
        let ca_store = if r.bool()? { Some(r.path()?) } else { None };
        let resolv_conf = r.string()?;
        let hosts_file = if r.bool()? { Some(r.string()?) } else { None };
        let tcp_ports = (0..r.len()?).map(|_| r.u16()).collect::<Result<_, _>>()?;
        let dns = r.bool()?;
        let inner_proxy_port = if r.bool()? { Some(r.u16()?) } else { None };
        let open = r.bool()?;
        let writable = (0..r.len()?).map(|_| r.path()).collect::<Result<_, _>>()?;
        let read = (0..r.len()?).map(|_| r.path()).collect::<Result<_, _>>()?;
        let hide = (0..r.len()?).map(|_| r.path()).collect::<Result<_, _>>()?;
        let protect = (0..r.len()?).map(|_| r.path()).collect::<Result<_, _>>()?;
        let home = if r.bool()? {
            let path = r.path()?;
            let read_only = (0..r.len()?).map(|_| r.path()).collect::<Result<_, _>>()?;
            HomePolicy::Private { path, read_only }
        } else {
            HomePolicy::Host
        };
        r.finish()?;
        Ok(Self {
            program,
            args,
            env,
            cwd,
            ca_bundle,
            ca_dir,
            ca_store,
            resolv_conf,
            hosts_file,
            tcp_ports,
            dns,
            inner_proxy_port,
            fs: FsPolicy { open, writable, read, hide, protect, home },
        })
    }
}

const SPEC_MAGIC: u8 = 0xA7;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn sample() -> SandboxSpec {
        let mut s = SandboxSpec::new("python3", "/home/u/project", "/tmp/run/ca.pem");
        s.ca_dir = Some("/tmp/run/certs".into());
        s.ca_store = Some("/tmp/run/store.p12".into());
        s.args = vec!["-c".into(), OsString::from_vec(b"print(1)\xff".to_vec())];
        s.env = vec![("PATH".into(), "/usr/bin".into()), ("OPENAI_API_KEY".into(), "sk-authsome_x".into())];
        s.hosts_file = Some("127.0.0.1 localhost\n".into());
        s.tcp_ports = vec![8443, 443];
        s.inner_proxy_port = Some(3128);
        s.fs = FsPolicy {
            open: false,
            writable: vec!["/data".into()],
            read: vec!["/home/u/notes".into()],
            hide: vec!["/home/u/.secret".into()],
            protect: vec!["/data/policy.toml".into()],
            home: HomePolicy::Private { path: "/home/u".into(), read_only: vec!["/home/u/.cargo/bin".into()] },
        };
        s
    }

    #[test]
    fn spec_round_trips() {
        let s = sample();
        assert_eq!(SandboxSpec::decode(&s.encode()).unwrap(), s);
        let minimal = SandboxSpec::new("true", "/", "/dev/null");
        assert_eq!(SandboxSpec::decode(&minimal.encode()).unwrap(), minimal);
    }

    #[test]
    fn spec_decode_rejects_corruption() {
        let bytes = sample().encode();
        assert!(SandboxSpec::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut wrong_magic = bytes.clone();
        wrong_magic[0] = 0;
        assert!(SandboxSpec::decode(&wrong_magic).is_err());
        let mut longer = bytes;
        longer.push(0);
        assert!(SandboxSpec::decode(&longer).is_err());
    }

    #[test]
    fn capture_ports_always_include_443_and_80_once() {
        assert_eq!(sample().capture_ports(), vec![443, 80, 8443]);
    }

    #[test]
    fn validate_catches_what_would_fail_later() {
        assert!(sample().validate().is_ok());
        let mut s = sample();
        s.inner_proxy_port = Some(443);
        assert!(s.validate().unwrap_err().contains("inner proxy port 443"));
        let mut s = sample();
        s.cwd = "relative".into();
        assert!(s.validate().is_err());
        let mut s = sample();
        s.env.push(("A=B".into(), "x".into()));
        assert!(s.validate().is_err());
        let mut s = sample();
        s.fs.hide.push("not/absolute".into());
        assert!(s.validate().is_err());
        let mut s = sample();
        s.fs.protect.push("rel/policy".into());
        assert!(s.validate().is_err());
        let mut s = sample();
        s.fs.home = HomePolicy::Private { path: "/".into(), read_only: vec![] };
        assert!(s.validate().is_err(), "a private home at / would hide the whole host");
    }
}
