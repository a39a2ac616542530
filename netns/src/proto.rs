//! Messages on the launcher ↔ helper socket (`SOCK_SEQPACKET`, one message per packet). Pure
//! encoding; the sockets and `SCM_RIGHTS` live in `channel`.

use crate::codec::{DecodeError, Reader, Writer};
use crate::error::Step;

/// Largest spec chunk per packet; well under the default unix socket send buffer.
pub const SPEC_CHUNK: usize = 32 * 1024;
/// Upper bound on an encoded spec (its environment included).
pub const MAX_SPEC: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Tcp,
    Udp,
    InnerProxy,
}

/// What one passed fd is; the fds travel in the same order as these entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketInfo {
    pub kind: SocketKind,
    pub port: u16,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl CommandStatus {
    /// The shell convention the launcher reports: the exit code, or 128 + signal number.
    pub fn code(self) -> i32 {
        match self {
            CommandStatus::Exited(c) => c,
            CommandStatus::Signaled(s) => 128 + s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToHelper {
    SpecBegin { len: u32 },
    SpecData(Vec<u8>),
    Release,
}

/// A placeholder the helper created on the host for a missing protected path (see
/// `plan::MountOp::Placeholder`): removed after the run if it is still as made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub path: std::path::PathBuf,
    pub dir: bool,
    /// A file's contents as made (empty, or `.` for `commondir`).
    pub contents: String,
    /// Device, inode and status-change time (ns) of the placeholder this sandbox holds: whoever
    /// removes it checks that the path still names that very one (another run may have made a
    /// new one there since, possibly reusing the inode number).
    pub dev: u64,
    pub ino: u64,
    pub changed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromHelper {
    /// Capture is in place; the fds ride along with this message.
    Ready(Vec<SocketInfo>),
    /// Not sent to the launcher: the record format of the helper's janitor (`janitor`).
    Placeholders(Vec<Placeholder>),
    Failed {
        step: Step,
        errno: i32,
        detail: String,
    },
    /// The command has been executed.
    Started,
    Exit(CommandStatus),
}

impl ToHelper {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            ToHelper::SpecBegin { len } => w.u8(1).u32(*len),
            ToHelper::SpecData(d) => w.u8(2).bytes(d),
            ToHelper::Release => w.u8(3),
        };
        w.into_bytes()
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let m = match r.u8()? {
            1 => ToHelper::SpecBegin { len: r.u32()? },
            2 => ToHelper::SpecData(r.bytes()?.to_vec()),
            3 => ToHelper::Release,
            _ => return Err(DecodeError("unknown message to the helper")),
        };
        r.finish()?;
        Ok(m)
    }
}

impl FromHelper {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            FromHelper::Ready(sockets) => {
                w.u8(10).len(sockets.len());
                for s in sockets {
                    let kind = match s.kind {
                        SocketKind::Tcp => 0,
                        SocketKind::Udp => 1,
                        SocketKind::InnerProxy => 2,
                    };
                    w.u8(kind).u16(s.port);
                }
            }
            FromHelper::Failed { step, errno, detail } => {
                w.u8(11).u16(step.code()).i32(*errno).str(detail);
            }
            FromHelper::Started => {
                w.u8(12);
            }
            FromHelper::Placeholders(list) => {
                w.u8(14).len(list.len());
                for p in list {
                    w.path(&p.path)
                        .bool(p.dir)
                        .str(&p.contents)
                        .bytes(&p.dev.to_le_bytes())
                        .bytes(&p.ino.to_le_bytes())
                        .bytes(&p.changed.to_le_bytes());
                }
            }
            FromHelper::Exit(status) => {
                match status {
                    CommandStatus::Exited(c) => w.u8(13).u8(0).i32(*c),
                    CommandStatus::Signaled(s) => w.u8(13).u8(1).i32(*s),
                };
            }
        }
        w.into_bytes()
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let m = match r.u8()? {
            10 => {
                let n = r.len()?;
                let mut sockets = Vec::with_capacity(n);
                for _ in 0..n {
                    let kind = match r.u8()? {
                        0 => SocketKind::Tcp,
                        1 => SocketKind::Udp,
                        2 => SocketKind::InnerProxy,
                        _ => return Err(DecodeError("unknown socket kind")),
                    };
                    sockets.push(SocketInfo { kind, port: r.u16()? });
                }
                FromHelper::Ready(sockets)
            }
            11 => {
                let step = Step::from_code(r.u16()?).ok_or(DecodeError("unknown step"))?;
                FromHelper::Failed { step, errno: r.i32()?, detail: r.string()? }
            }
            12 => FromHelper::Started,
            14 => {
                let n = r.len()?;
                let mut list = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let (path, dir, contents) = (r.path()?, r.bool()?, r.string()?);
                    let mut number = || -> Result<u64, DecodeError> {
                        let b: [u8; 8] = r.bytes()?.try_into().map_err(|_| DecodeError("bad inode number"))?;
                        Ok(u64::from_le_bytes(b))
                    };
                    let (dev, ino, changed) = (number()?, number()?, number()?);
                    list.push(Placeholder { path, dir, contents, dev, ino, changed });
                }
                FromHelper::Placeholders(list)
            }
            13 => match r.u8()? {
                0 => FromHelper::Exit(CommandStatus::Exited(r.i32()?)),
                1 => FromHelper::Exit(CommandStatus::Signaled(r.i32()?)),
                _ => return Err(DecodeError("unknown exit kind")),
            },
            _ => return Err(DecodeError("unknown message from the helper")),
        };
        r.finish()?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [ToHelper::SpecBegin { len: 12345 }, ToHelper::SpecData(vec![1, 2, 3]), ToHelper::Release] {
            assert_eq!(ToHelper::decode(&m.encode()).unwrap(), m);
        }
        for m in [
            FromHelper::Ready(vec![
                SocketInfo { kind: SocketKind::Tcp, port: 443 },
                SocketInfo { kind: SocketKind::Udp, port: 53 },
                SocketInfo { kind: SocketKind::InnerProxy, port: 3128 },
            ]),
            FromHelper::Failed { step: Step::LocalRouteV6, errno: 1, detail: "lo".into() },
            FromHelper::Started,
            FromHelper::Placeholders(vec![
                Placeholder {
                    path: "/p/.envrc".into(),
                    dir: false,
                    contents: String::new(),
                    dev: 1,
                    ino: u64::MAX,
                    changed: 5,
                },
                Placeholder {
                    path: "/p/.git/commondir".into(),
                    dir: false,
                    contents: ".".into(),
                    dev: 2,
                    ino: 3,
                    changed: 4,
                },
                Placeholder {
                    path: "/p/.vscode".into(),
                    dir: true,
                    contents: String::new(),
                    dev: 0,
                    ino: 0,
                    changed: 0,
                },
            ]),
            FromHelper::Exit(CommandStatus::Exited(7)),
            FromHelper::Exit(CommandStatus::Signaled(15)),
        ] {
            assert_eq!(FromHelper::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(FromHelper::decode(&[]).is_err());
        assert!(FromHelper::decode(&[99]).is_err());
        assert!(FromHelper::decode(&[11, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(ToHelper::decode(&[3, 0]).is_err());
    }

    #[test]
    fn status_codes_follow_the_shell_convention() {
        assert_eq!(CommandStatus::Exited(7).code(), 7);
        assert_eq!(CommandStatus::Signaled(15).code(), 143);
    }
}
