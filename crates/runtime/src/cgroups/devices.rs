//! Device access rules: written as lines on v1, compiled to an eBPF program on v2.
//!
//! Semantics on both: start from deny-all, rules apply in order, a rule of type
//! "a" resets everything to allow-all or deny-all, and otherwise the last rule
//! that matches a request decides.

use std::ffi::CStr;
use std::os::fd::AsFd;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;
use super::fs;
use crate::sys::bpf::{self, Insn};

const FIELD: &str = "linux.resources.devices";

const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    All,
    Char,
    Block,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rule {
    pub(super) allow: bool,
    pub(super) kind: Kind,
    /// None is every number ("*"); never negative.
    pub(super) major: Option<i32>,
    pub(super) minor: Option<i32>,
    /// ACC_* bits.
    pub(super) access: u8,
}

impl Rule {
    const fn char(major: i32, minor: Option<i32>) -> Self {
        Rule {
            allow: true,
            kind: Kind::Char,
            major: Some(major),
            minor,
            access: ACC_ALL,
        }
    }

    /// The line for devices.allow / devices.deny.
    fn v1_line(&self) -> String {
        let kind = match self.kind {
            // The kernel reads "a" as every device with every access.
            Kind::All => return "a".to_owned(),
            Kind::Char => 'c',
            Kind::Block => 'b',
        };
        let num = |n: Option<i32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        let mut access = String::new();
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        format!("{kind} {}:{} {access}", num(self.major), num(self.minor))
    }
}

/// What runc allows every container after the user's rules: the devices every
/// program expects (null, zero, full, random, urandom, tty, console, ptmx, pts).
const DEFAULTS: [Rule; 9] = [
    Rule::char(1, Some(3)),
    Rule::char(1, Some(5)),
    Rule::char(1, Some(7)),
    Rule::char(1, Some(8)),
    Rule::char(1, Some(9)),
    Rule::char(5, Some(0)),
    Rule::char(5, Some(1)),
    Rule::char(5, Some(2)),
    Rule::char(136, None),
];

/// The user's rules, checked, followed by the defaults.
pub(super) fn with_defaults(user: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>, CgroupError> {
    let mut rules = Vec::with_capacity(user.len() + DEFAULTS.len());
    for r in user {
        rules.extend(convert(r)?);
    }
    rules.extend(DEFAULTS);
    Ok(rules)
}

/// `None` for a rule about fifos: the device cgroup never checks those, and
/// callers derive rules from linux.devices, where fifos are legitimate.
fn convert(r: &LinuxDeviceCgroup) -> Result<Option<Rule>, CgroupError> {
    let kind = match r.typ().unwrap_or_default() {
        LinuxDeviceType::A => Kind::All,
        // "u" is an unbuffered character device: a character device to the kernel.
        LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
        LinuxDeviceType::B => Kind::Block,
        LinuxDeviceType::P => return Ok(None),
    };
    // Go tools write -1 for "any".
    let number = |n: Option<i64>| -> Result<Option<i32>, CgroupError> {
        match n {
            None => Ok(None),
            Some(n) if n < 0 => Ok(None),
            Some(n) => i32::try_from(n)
                .map(Some)
                .map_err(|_| CgroupError::invalid(FIELD, r, "device number out of range")),
        }
    };
    let access = match r.access().as_deref() {
        None | Some("") => ACC_ALL,
        Some(s) => {
            let mut bits = 0;
            for c in s.chars() {
                bits |= match c {
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    'm' => ACC_MKNOD,
                    _ => {
                        return Err(CgroupError::invalid(
                            FIELD,
                            r,
                            "access may only contain r, w and m",
                        ));
                    }
                };
            }
            bits
        }
    };
    Ok(Some(Rule {
        allow: r.allow(),
        kind,
        major: number(r.major())?,
        minor: number(r.minor())?,
        access,
    }))
}

pub(super) fn apply_v1(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    let write = |file: &str, line: &str| fs::set(dir, file, line, FIELD);
    write("devices.deny", "a")?;
    for r in rules {
        write(
            if r.allow {
                "devices.allow"
            } else {
                "devices.deny"
            },
            &r.v1_line(),
        )?;
    }
    Ok(())
}

// eBPF opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const JMP_EXIT: u8 = 0x95;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

// BPF_DEVCG_DEV_*.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// Compiles the rules the way runc's devicefilter does: rules are tested from
/// last to first and the first match returns its verdict; no match returns the
/// default set by the last "a" rule (deny when there is none).
pub(super) fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut default_allow = false;
    let mut active: Vec<&Rule> = Vec::new();
    for r in rules {
        if r.kind == Kind::All {
            default_allow = r.allow;
            active.clear();
        } else {
            active.push(r);
        }
    }
    // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
    // where access_type is the device type in the low 16 bits, access above.
    let mut prog = vec![
        insn(LDX_MEM_W, R2, R1, 0, 0),
        insn(ALU32_AND_K, R2, 0, 0, 0xffff),
        insn(LDX_MEM_W, R3, R1, 0, 0),
        insn(ALU32_RSH_K, R3, 0, 0, 16),
        insn(LDX_MEM_W, R4, R1, 4, 0),
        insn(LDX_MEM_W, R5, R1, 8, 0),
    ];
    for r in active.iter().rev() {
        prog.extend(block(r));
    }
    prog.push(insn(ALU32_MOV_K, R0, 0, 0, i32::from(default_allow)));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    prog
}

/// One rule: jumps past its end unless the request matches, else returns the verdict.
fn block(r: &Rule) -> Vec<Insn> {
    let kind = if r.kind == Kind::Block {
        DEV_BLOCK
    } else {
        DEV_CHAR
    };
    let mut b = vec![insn(JMP_JNE_K, R2, 0, 0, kind)];
    if r.access != ACC_ALL {
        b.push(insn(ALU32_MOV_X, R1, R3, 0, 0));
        b.push(insn(ALU32_AND_K, R1, 0, 0, i32::from(r.access)));
        if r.allow {
            // An allow covers a request only when it grants every access asked for.
            b.push(insn(JMP_JNE_X, R1, R3, 0, 0));
        } else {
            // A deny refuses a request that asks for any access it names.
            b.push(insn(JMP_JEQ_K, R1, 0, 0, 0));
        }
    }
    // The jump compares 64-bit registers, which the 32-bit loads zero-extended,
    // with a sign-extended immediate: fine since numbers are never negative.
    if let Some(major) = r.major {
        b.push(insn(JMP_JNE_K, R4, 0, 0, major));
    }
    if let Some(minor) = r.minor {
        b.push(insn(JMP_JNE_K, R5, 0, 0, minor));
    }
    b.push(insn(ALU32_MOV_K, R0, 0, 0, i32::from(r.allow)));
    b.push(insn(JMP_EXIT, 0, 0, 0, 0));
    // Every conditional jump goes to the first instruction after this block.
    let len = b.len();
    for (i, ins) in b.iter_mut().enumerate() {
        if matches!(ins.code, JMP_JNE_K | JMP_JNE_X | JMP_JEQ_K) {
            ins.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
        }
    }
    b
}

const LICENSE: &CStr = c"Apache";

/// Attaches the compiled rules to the cgroup directory, then detaches the
/// programs that were there before, so that applying again replaces the rules
/// (with several programs attached, a request must pass all of them).
pub(super) fn apply_v2(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    let err = |op: &'static str, source: nix::Error| CgroupError::Bpf {
        op,
        path: dir.to_path_buf(),
        source,
        log: String::new(),
    };
    let cgroup = std::fs::File::open(dir).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CgroupError::Gone(dir.to_path_buf())
        } else {
            CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            }
        }
    })?;
    let insns = program(rules);
    let prog = match bpf::load_cgroup_device(&insns, LICENSE, None) {
        Ok(p) => p,
        Err(first) => {
            // Load again with the verifier's log, which says why.
            let mut log = vec![0u8; 64 * 1024];
            return Err(
                match bpf::load_cgroup_device(&insns, LICENSE, Some(&mut log)) {
                    Ok(_) => err("load", first),
                    Err(source) => CgroupError::Bpf {
                        op: "load",
                        path: dir.to_path_buf(),
                        source,
                        log: verifier_log(&log),
                    },
                },
            );
        }
    };
    let old = bpf::query_cgroup_device(cgroup.as_fd()).map_err(|e| err("query", e))?;
    bpf::attach_cgroup_device(cgroup.as_fd(), prog.as_fd()).map_err(|e| err("attach", e))?;
    for id in old {
        match bpf::prog_fd_by_id(id) {
            Ok(old_prog) => match bpf::detach_cgroup_device(cgroup.as_fd(), old_prog.as_fd()) {
                Ok(()) | Err(nix::Error::ENOENT) => {}
                Err(e) => return Err(err("detach the previous", e)),
            },
            // Detached and freed meanwhile: nothing left to do.
            Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(err("open the previous", e)),
        }
    }
    Ok(())
}

/// The verifier's log on one line, trimmed to its end where the reason is.
fn verifier_log(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text = String::from_utf8_lossy(&buf[..end]);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(4)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!(" (verifier: {})", tail.join(" / "))
    }
}
