//! Translate the OCI `linux.seccomp` profile into a libseccomp filter.
//!
//! Semantics follow runc: unknown syscall names are skipped (profiles list
//! syscalls newer than the kernel), rules whose action equals the default are
//! dropped, and several conditions on the same argument become separate rules.

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::error::{Error, Result};

const EPERM: i32 = 1;

fn action(a: LinuxSeccompAction, errno: Option<u32>, field: &str) -> Result<ScmpAction> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno.map_or(EPERM, |e| e as i32)),
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.map_or(EPERM as u16, |e| e as u16))
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::Seccomp(format!(
                "{field}: SCMP_ACT_NOTIFY is not supported"
            )));
        }
    })
}

fn op(o: LinuxSeccompOperator, value_two: Option<u64>) -> (ScmpCompareOp, Option<u64>) {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, None),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, None),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, None),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, None),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, None),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, None),
        // runc's convention: `value` is the mask, `valueTwo` the datum.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(0), value_two),
    }
}

/// Validate a profile without loading it (used when the config is read).
pub(crate) fn check(profile: &LinuxSeccomp) -> Result<()> {
    compile(profile).map(drop)
}

/// Build the filter. It is loaded later, as close to execve as possible.
pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let err = |what: String| Error::Seccomp(what);
    let default = action(
        profile.default_action(),
        profile.default_errno_ret(),
        "linux.seccomp.defaultAction",
    )?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| err(format!("new filter: {e}")))?;
    // libseccomp would otherwise set no_new_privs on load; that is process.noNewPrivileges' job.
    ctx.set_ctl_nnp(false)
        .map_err(|e| err(format!("nnp: {e}")))?;
    for (i, arch) in profile.architectures().iter().flatten().enumerate() {
        let name = arch.to_string();
        let a: ScmpArch = name.parse().map_err(|_| {
            err(format!(
                "linux.seccomp.architectures[{i}]: unknown architecture {name:?}"
            ))
        })?;
        ctx.add_arch(a)
            .map_err(|e| err(format!("linux.seccomp.architectures[{i}]: {e}")))?;
    }
    for flag in profile.flags().iter().flatten() {
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                ctx.set_ctl_log(true)
                    .map_err(|e| err(format!("flag log: {e}")))?;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                ctx.set_ctl_ssb(true)
                    .map_err(|e| err(format!("flag spec_allow: {e}")))?;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {}
            #[allow(unreachable_patterns, reason = "future flags in oci-spec")]
            _ => {}
        }
    }
    for (i, sc) in profile.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret(), &field)?;
        if act == default {
            continue;
        }
        let conds: Vec<ScmpArgCompare> = sc
            .args()
            .iter()
            .flatten()
            .map(|a| {
                if a.index() > 5 {
                    return Err(err(format!("{field}.args: index {} is above 5", a.index())));
                }
                let (cmp, datum) = op(a.op(), a.value_two());
                let (cmp, datum) = match cmp {
                    ScmpCompareOp::MaskedEqual(_) => {
                        (ScmpCompareOp::MaskedEqual(a.value()), datum.unwrap_or(0))
                    }
                    other => (other, a.value()),
                };
                Ok(ScmpArgCompare::new(a.index() as u32, cmp, datum))
            })
            .collect::<Result<_>>()?;
        let mut indices: Vec<usize> = sc.args().iter().flatten().map(|a| a.index()).collect();
        indices.sort_unstable();
        let repeated = indices.windows(2).any(|w| w[0] == w[1]);
        for name in sc.names() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let res = if conds.is_empty() {
                ctx.add_rule(act, nr)
            } else if repeated {
                conds
                    .iter()
                    .try_for_each(|c| ctx.add_rule_conditional(act, nr, &[*c]).map(drop))
                    .map(|()| &mut ctx)
            } else {
                ctx.add_rule_conditional(act, nr, &conds)
            };
            res.map_err(|e| err(format!("{field}: {name}: {e}")))?;
        }
    }
    Ok(ctx)
}

/// Install the filter on this process.
pub(crate) fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load()
        .map_err(|e| Error::Seccomp(format!("load filter: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn compiles_a_mixed_profile_and_skips_unknown_syscalls() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["read", "write", "no_such_syscall_in_any_kernel"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}
            ]
        }));
        check(&p).unwrap();
    }

    #[test]
    fn notify_and_bad_argument_index_are_refused() {
        let notify = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        let err = check(&notify).unwrap_err().to_string();
        assert!(
            err.contains("syscalls[0]") && err.contains("NOTIFY"),
            "{err}"
        );
        let bad_index = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
        }));
        let err = check(&bad_index).unwrap_err().to_string();
        assert!(err.contains("index 6"), "{err}");
    }
}
