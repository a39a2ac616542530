//! The command's seccomp filter, as classic BPF built here (pure; `sys` installs it).
//!
//! It is a deny-list for the few things that matter even without any capability:
//! - `ioctl(fd, TIOCSTI | TIOCLINUX)`: pushing keystrokes into the terminal the command shares
//!   with the user's shell;
//! - setting the set-user-ID or set-group-ID bit (`chmod` family, and `open`/`creat`/`mknod`
//!   with `O_CREAT`): a command of a root caller could otherwise leave a set-user-ID-root (or
//!   set-group-ID-root) program in a writable directory for anyone on the host to run. The filter
//!   cannot tell a directory from a file, so `chmod g+s` on a directory is refused too;
//! - `openat2` (its mode sits in a struct the filter cannot read) and `io_uring_setup` (its
//!   operations bypass seccomp) answer `ENOSYS`, so libraries fall back to the plain calls;
//! - on x86-64, the x32 ABI altogether.
//!
//! Only the low 32 bits of an argument are compared, as the kernel does for these calls.
//!
//! Fail closed: on an architecture without a table here there is no filter, and the helper
//! refuses to start the command ([`program`] is `None`); a kernel that rejects the filter
//! (`EINVAL`) stops the command too (`sys`, step `Seccomp`).

/// What the filter does with one system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// `ioctl`: deny TIOCSTI and TIOCLINUX (request in argument 1).
    Ioctl,
    /// Deny when the mode argument has S_ISUID or S_ISGID.
    Mode {
        mode: u32,
    },
    /// Deny when the flags create a file and the mode has S_ISUID or S_ISGID.
    Create {
        flags: u32,
        mode: u32,
    },
    Enosys,
}

/// One system call the filter inspects: its name (as in `libc`'s `SYS_*`), number and rule.
#[derive(Debug, Clone, Copy)]
struct Call {
    #[cfg_attr(not(test), allow(dead_code, reason = "names the call for readers and the table tests"))]
    name: &'static str,
    nr: u32,
    rule: Rule,
}

/// A call of the native ABI: the number is `libc`'s, so a typo cannot slip into the table.
macro_rules! native {
    ($sys:ident, $rule:expr) => {
        Call { name: stringify!($sys), nr: libc::$sys as u32, rule: $rule }
    };
}

/// A call of the compat (32-bit) ABI, which `libc` does not describe on a 64-bit build: the
/// number is the kernel's (`arch/*/entry/syscalls/syscall_32.tbl`, `arch/arm/tools/syscall.tbl`).
const fn compat(name: &'static str, nr: u32, rule: Rule) -> Call {
    Call { name, nr, rule }
}

struct Arch {
    audit: u32,
    /// Deny every syscall number at or above this (x32 on x86-64).
    deny_from: Option<u32>,
    calls: &'static [Call],
}

const TIOCSTI: u32 = libc::TIOCSTI as u32;
const TIOCLINUX: u32 = libc::TIOCLINUX as u32;
const S_ISUID: u32 = libc::S_ISUID;
const S_ISGID: u32 = libc::S_ISGID;
const O_CREAT: u32 = libc::O_CREAT as u32;
/// `__O_TMPFILE`: `libc::O_TMPFILE` also carries `O_DIRECTORY`, which alone creates nothing.
const O_TMPFILE_BIT: u32 = 0o20000000;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[cfg(target_arch = "x86_64")]
const X86_64: Arch = Arch {
    audit: AUDIT_ARCH_X86_64,
    deny_from: Some(X32_SYSCALL_BIT),
    calls: &[
        native!(SYS_ioctl, Rule::Ioctl),
        native!(SYS_chmod, Rule::Mode { mode: 1 }),
        native!(SYS_fchmod, Rule::Mode { mode: 1 }),
        native!(SYS_fchmodat, Rule::Mode { mode: 2 }),
        native!(SYS_fchmodat2, Rule::Mode { mode: 2 }),
        native!(SYS_open, Rule::Create { flags: 1, mode: 2 }),
        native!(SYS_openat, Rule::Create { flags: 2, mode: 3 }),
        native!(SYS_creat, Rule::Mode { mode: 1 }),
        native!(SYS_mknod, Rule::Mode { mode: 1 }),
        native!(SYS_mknodat, Rule::Mode { mode: 2 }),
        native!(SYS_openat2, Rule::Enosys),
        native!(SYS_io_uring_setup, Rule::Enosys),
    ],
};

const I386: Arch = Arch {
    audit: AUDIT_ARCH_I386,
    deny_from: None,
    calls: &[
        compat("SYS_ioctl", 54, Rule::Ioctl),
        compat("SYS_chmod", 15, Rule::Mode { mode: 1 }),
        compat("SYS_fchmod", 94, Rule::Mode { mode: 1 }),
        compat("SYS_fchmodat", 306, Rule::Mode { mode: 2 }),
        compat("SYS_fchmodat2", 452, Rule::Mode { mode: 2 }),
        compat("SYS_open", 5, Rule::Create { flags: 1, mode: 2 }),
        compat("SYS_openat", 295, Rule::Create { flags: 2, mode: 3 }),
        compat("SYS_creat", 8, Rule::Mode { mode: 1 }),
        compat("SYS_mknod", 14, Rule::Mode { mode: 1 }),
        compat("SYS_mknodat", 297, Rule::Mode { mode: 2 }),
        compat("SYS_openat2", 437, Rule::Enosys),
        compat("SYS_io_uring_setup", 425, Rule::Enosys),
    ],
};

#[cfg(target_arch = "aarch64")]
const AARCH64: Arch = Arch {
    audit: 0xC000_00B7,
    deny_from: None,
    calls: &[
        native!(SYS_ioctl, Rule::Ioctl),
        native!(SYS_fchmod, Rule::Mode { mode: 1 }),
        native!(SYS_fchmodat, Rule::Mode { mode: 2 }),
        // not in `libc` for aarch64 yet; the generic table's number (include/uapi/asm-generic/unistd.h)
        compat("SYS_fchmodat2", 452, Rule::Mode { mode: 2 }),
        native!(SYS_openat, Rule::Create { flags: 2, mode: 3 }),
        native!(SYS_mknodat, Rule::Mode { mode: 2 }),
        native!(SYS_openat2, Rule::Enosys),
        native!(SYS_io_uring_setup, Rule::Enosys),
    ],
};

#[cfg(target_arch = "aarch64")]
const ARM: Arch = Arch {
    audit: 0x4000_0028,
    deny_from: None,
    calls: &[
        compat("SYS_ioctl", 54, Rule::Ioctl),
        compat("SYS_chmod", 15, Rule::Mode { mode: 1 }),
        compat("SYS_fchmod", 94, Rule::Mode { mode: 1 }),
        compat("SYS_fchmodat", 333, Rule::Mode { mode: 2 }),
        compat("SYS_fchmodat2", 452, Rule::Mode { mode: 2 }),
        compat("SYS_open", 5, Rule::Create { flags: 1, mode: 2 }),
        compat("SYS_openat", 322, Rule::Create { flags: 2, mode: 3 }),
        compat("SYS_creat", 8, Rule::Mode { mode: 1 }),
        compat("SYS_mknod", 14, Rule::Mode { mode: 1 }),
        compat("SYS_mknodat", 324, Rule::Mode { mode: 2 }),
        compat("SYS_openat2", 437, Rule::Enosys),
        compat("SYS_io_uring_setup", 425, Rule::Enosys),
    ],
};

/// The filter for this machine's architectures; `None` where we have no table (the helper
/// then refuses to run the command rather than run it unfiltered).
pub fn program() -> Option<Vec<libc::sock_filter>> {
    #[cfg(target_arch = "x86_64")]
    let arches: &[Arch] = &[X86_64, I386];
    #[cfg(target_arch = "aarch64")]
    let arches: &[Arch] = &[AARCH64, ARM];
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let arches: &[Arch] = &[];
    program_for(arches)
}

fn program_for(arches: &[Arch]) -> Option<Vec<libc::sock_filter>> {
    if arches.is_empty() { None } else { Some(assemble(&build(arches))) }
}

pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
pub const RET_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Next,
    Label(usize),
}

#[derive(Debug, Clone, Copy)]
enum Ins {
    /// Load the 32-bit word at this offset of `seccomp_data`.
    Load(u32),
    And(u32),
    /// Jump if the accumulator equals / is at least `k`.
    Jeq(u32, Target, Target),
    Jge(u32, Target, Target),
    Jump(Target),
    Ret(u32),
    /// Marks the position of a label; emits nothing.
    Mark(usize),
}

const ALLOW: usize = 0;
const DENY: usize = 1;
const NOSYS: usize = 2;

fn arg(n: u32) -> u32 {
    16 + 8 * n
}

fn build(arches: &[Arch]) -> Vec<Ins> {
    use Target::{Label, Next};
    let mut next_label = 3;
    let mut label = || {
        next_label += 1;
        next_label - 1
    };
    let mut code = vec![Ins::Load(4)];
    let mut bodies: Vec<(usize, Rule)> = Vec::new();
    for arch in arches {
        let other_arch = label();
        code.push(Ins::Jeq(arch.audit, Next, Label(other_arch)));
        code.push(Ins::Load(0));
        if let Some(limit) = arch.deny_from {
            code.push(Ins::Jge(limit, Label(DENY), Next));
        }
        for &Call { nr, rule, .. } in arch.calls {
            let body = label();
            bodies.push((body, rule));
            code.push(Ins::Jeq(nr, Label(body), Next));
        }
        code.push(Ins::Jump(Label(ALLOW)));
        code.push(Ins::Mark(other_arch));
        code.push(Ins::Load(4));
    }
    code.pop(); // the last "other arch" falls through to allow
    code.push(Ins::Jump(Label(ALLOW)));
    for (body, rule) in bodies {
        code.push(Ins::Mark(body));
        match rule {
            Rule::Ioctl => {
                code.push(Ins::Load(arg(1)));
                code.push(Ins::Jeq(TIOCSTI, Label(DENY), Next));
                code.push(Ins::Jeq(TIOCLINUX, Label(DENY), Label(ALLOW)));
            }
            Rule::Mode { mode } => {
                code.push(Ins::Load(arg(mode)));
                code.push(Ins::And(S_ISUID | S_ISGID));
                code.push(Ins::Jeq(0, Label(ALLOW), Label(DENY)));
            }
            Rule::Create { flags, mode } => {
                code.push(Ins::Load(arg(flags)));
                code.push(Ins::And(O_CREAT | O_TMPFILE_BIT));
                code.push(Ins::Jeq(0, Label(ALLOW), Next));
                code.push(Ins::Load(arg(mode)));
                code.push(Ins::And(S_ISUID | S_ISGID));
                code.push(Ins::Jeq(0, Label(ALLOW), Label(DENY)));
            }
            Rule::Enosys => code.push(Ins::Jump(Label(NOSYS))),
        }
    }
    code.extend([Ins::Mark(ALLOW), Ins::Ret(RET_ALLOW), Ins::Mark(DENY), Ins::Ret(RET_EPERM)]);
    code.extend([Ins::Mark(NOSYS), Ins::Ret(RET_ENOSYS)]);
    code
}

fn assemble(code: &[Ins]) -> Vec<libc::sock_filter> {
    let mut at = std::collections::HashMap::new();
    let mut pc = 0usize;
    for ins in code {
        match ins {
            Ins::Mark(l) => {
                at.insert(*l, pc);
            }
            _ => pc += 1,
        }
    }
    let mut out = Vec::with_capacity(pc);
    for ins in code {
        let here = out.len();
        let offset = |t: Target| -> usize {
            match t {
                Target::Next => 0,
                Target::Label(l) => at[&l] - here - 1,
            }
        };
        let short = |t: Target| -> u8 { u8::try_from(offset(t)).expect("seccomp jump too long") };
        let (code, jt, jf, k) = match *ins {
            Ins::Mark(_) => continue,
            Ins::Load(k) => (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, k),
            Ins::And(k) => (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0, 0, k),
            Ins::Jeq(k, t, f) => (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, short(t), short(f), k),
            Ins::Jge(k, t, f) => (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, short(t), short(f), k),
            Ins::Jump(t) => (libc::BPF_JMP | libc::BPF_JA, 0, 0, offset(t) as u32),
            Ins::Ret(k) => (libc::BPF_RET | libc::BPF_K, 0, 0, k),
        };
        out.push(libc::sock_filter { code: code as u16, jt, jf, k });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions we emit.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = prog[pc];
            let code = u32::from(ins.code);
            pc += 1;
            if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                let k = ins.k as usize;
                acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
            } else if code == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K {
                acc &= ins.k;
            } else if code == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K {
                pc += usize::from(if acc == ins.k { ins.jt } else { ins.jf });
            } else if code == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K {
                pc += usize::from(if acc >= ins.k { ins.jt } else { ins.jf });
            } else if code == libc::BPF_JMP | libc::BPF_JA {
                pc += ins.k as usize;
            } else if code == libc::BPF_RET | libc::BPF_K {
                return ins.k;
            } else {
                panic!("unexpected opcode {code:#x}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn x86(nr: u32, args: [u64; 6]) -> u32 {
        run(&assemble(&build(&[X86_64, I386])), X86_64.audit, nr, args)
    }

    #[cfg(target_arch = "x86_64")]
    fn i386(nr: u32, args: [u64; 6]) -> u32 {
        run(&assemble(&build(&[X86_64, I386])), I386.audit, nr, args)
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn terminal_injection_is_denied_and_other_ioctls_pass() {
        assert_eq!(x86(16, [0, TIOCSTI.into(), 0, 0, 0, 0]), RET_EPERM);
        assert_eq!(x86(16, [0, 0xdead_0000_0000 | u64::from(TIOCSTI), 0, 0, 0, 0]), RET_EPERM, "high bits ignored");
        assert_eq!(x86(16, [0, TIOCLINUX.into(), 0, 0, 0, 0]), RET_EPERM);
        assert_eq!(i386(54, [0, TIOCSTI.into(), 0, 0, 0, 0]), RET_EPERM);
        assert_eq!(x86(16, [0, 0x5413, 0, 0, 0, 0]), RET_ALLOW, "TIOCGWINSZ");
        assert_eq!(i386(16, [0, TIOCSTI.into(), 0, 0, 0, 0]), RET_ALLOW, "i386 16 is not ioctl");
        let prog = program().expect("a filter for this architecture");
        assert_eq!(run(&prog, 0x1234, 16, [0, TIOCSTI.into(), 0, 0, 0, 0]), RET_ALLOW, "unknown arch");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn set_user_id_bits_are_denied() {
        assert_eq!(x86(90, [0, 0o4755, 0, 0, 0, 0]), RET_EPERM, "chmod u+s");
        assert_eq!(x86(90, [0, 0o755, 0, 0, 0, 0]), RET_ALLOW, "chmod 755");
        assert_eq!(x86(90, [0, 0o2755, 0, 0, 0, 0]), RET_EPERM, "chmod g+s");
        assert_eq!(x86(90, [0, 0o1777, 0, 0, 0, 0]), RET_ALLOW, "sticky bit");
        assert_eq!(x86(257, [0, 0, u64::from(O_CREAT), 0o2755, 0, 0]), RET_EPERM, "openat O_CREAT 02755");
        assert_eq!(x86(268, [0, 0, 0o2711, 0, 0, 0]), RET_EPERM, "fchmodat g+s");
        assert_eq!(i386(15, [0, 0o2755, 0, 0, 0, 0]), RET_EPERM, "i386 chmod g+s");
        assert_eq!(x86(91, [3, 0o4711, 0, 0, 0, 0]), RET_EPERM, "fchmod");
        assert_eq!(x86(268, [0, 0, 0o4755, 0, 0, 0]), RET_EPERM, "fchmodat");
        assert_eq!(x86(452, [0, 0, 0o4755, 0, 0, 0]), RET_EPERM, "fchmodat2");
        assert_eq!(x86(257, [0, 0, u64::from(O_CREAT), 0o4755, 0, 0]), RET_EPERM, "openat O_CREAT 04755");
        assert_eq!(x86(257, [0, 0, u64::from(O_CREAT), 0o644, 0, 0]), RET_ALLOW, "openat O_CREAT 0644");
        assert_eq!(x86(257, [0, 0, 0, 0o4755, 0, 0]), RET_ALLOW, "no O_CREAT: mode is ignored");
        assert_eq!(x86(2, [0, u64::from(O_CREAT), 0o4755, 0, 0, 0]), RET_EPERM, "open");
        assert_eq!(x86(85, [0, 0o4755, 0, 0, 0, 0]), RET_EPERM, "creat");
        assert_eq!(x86(259, [0, 0, 0o104755, 0, 0, 0]), RET_EPERM, "mknodat");
        assert_eq!(i386(15, [0, 0o4755, 0, 0, 0, 0]), RET_EPERM, "i386 chmod");
        assert_eq!(i386(295, [0, 0, u64::from(O_CREAT), 0o4755, 0, 0]), RET_EPERM, "i386 openat");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn no_filter_means_no_command() {
        assert!(program_for(&[]).is_none(), "an architecture without a table has no filter at all");
        assert!(program_for(&[X86_64]).is_some_and(|p| !p.is_empty()));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn uninspectable_calls_fall_back_and_x32_is_off() {
        assert_eq!(x86(437, [0; 6]), RET_ENOSYS, "openat2");
        assert_eq!(x86(425, [0; 6]), RET_ENOSYS, "io_uring_setup");
        assert_eq!(x86(0x4000_0000 | 90, [0, 0o755, 0, 0, 0, 0]), RET_EPERM, "x32");
        assert_eq!(x86(0, [0; 6]), RET_ALLOW, "read");
        assert_eq!(x86(59, [0; 6]), RET_ALLOW, "execve");
    }

    /// Both ABIs of a machine inspect the same calls the same way (the 64-bit ARM ABI lacks the
    /// legacy `open`/`creat`/`chmod`/`mknod`, so there the compat table may have more).
    fn same_rules(native: &Arch, compat: &Arch, legacy_only_in_compat: bool) {
        for call in native.calls {
            let twin = compat.calls.iter().find(|c| c.name == call.name);
            assert_eq!(twin.map(|c| c.rule), Some(call.rule), "{} in the compat table", call.name);
        }
        if !legacy_only_in_compat {
            assert_eq!(native.calls.len(), compat.calls.len());
        }
        let mut names: Vec<_> = compat.calls.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), compat.calls.len(), "a call listed twice");
    }

    #[test]
    fn native_and_compat_tables_inspect_the_same_calls() {
        #[cfg(target_arch = "x86_64")]
        same_rules(&X86_64, &I386, false);
        #[cfg(target_arch = "aarch64")]
        same_rules(&AARCH64, &ARM, true);
    }

    #[test]
    fn flag_values_are_libcs() {
        assert_eq!(O_TMPFILE_BIT, libc::O_TMPFILE as u32 & !(libc::O_DIRECTORY as u32));
        assert_eq!((S_ISUID, S_ISGID, O_CREAT), (0o4000, 0o2000, 0o100));
    }

    /// The native table's numbers, checked against the kernel's table by hand once, so a
    /// change of `libc` (or of the macro) that moved a number would show here.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_numbers_match_the_kernel_table() {
        let numbers: Vec<(&str, u32)> = X86_64.calls.iter().map(|c| (c.name, c.nr)).collect();
        assert_eq!(
            numbers,
            [
                ("SYS_ioctl", 16),
                ("SYS_chmod", 90),
                ("SYS_fchmod", 91),
                ("SYS_fchmodat", 268),
                ("SYS_fchmodat2", 452),
                ("SYS_open", 2),
                ("SYS_openat", 257),
                ("SYS_creat", 85),
                ("SYS_mknod", 133),
                ("SYS_mknodat", 259),
                ("SYS_openat2", 437),
                ("SYS_io_uring_setup", 425),
            ]
        );
    }
}
