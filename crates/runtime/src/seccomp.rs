//! Seccomp filters from `linux.seccomp`, built with libseccomp.

use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

/// Spec fields this runtime refuses (a listener needs a seccomp agent we do not have).
pub(crate) fn validate(s: &LinuxSeccomp) -> Result<(), String> {
    if s.listener_path().is_some() {
        return Err("linux.seccomp.listenerPath".into());
    }
    if s.default_action() == LinuxSeccompAction::ScmpActNotify
        || s.syscalls()
            .iter()
            .flatten()
            .any(|sc| sc.action() == LinuxSeccompAction::ScmpActNotify)
    {
        return Err("linux.seccomp action SCMP_ACT_NOTIFY".into());
    }
    for f in s.flags().iter().flatten() {
        if !matches!(
            f,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog
                | LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow
        ) {
            return Err(format!("linux.seccomp.flags {f:?}"));
        }
    }
    Ok(())
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    }
}

fn op(o: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

/// Builds the filter (no_new_privs is set by the caller, not by libseccomp).
pub(crate) fn build(s: &LinuxSeccomp) -> Result<ScmpFilterContext, String> {
    let default = action(s.default_action(), s.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| format!("seccomp init: {e}"))?;
    ctx.set_ctl_nnp(false)
        .map_err(|e| format!("seccomp nnp attribute: {e}"))?;
    for a in s.architectures().iter().flatten() {
        let name = serde_json::to_value(a)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let arch = ScmpArch::from_str(&name)
            .map_err(|_| format!("linux.seccomp.architectures: unknown {name}"))?;
        ctx.add_arch(arch)
            .map_err(|e| format!("seccomp add arch {name}: {e}"))?;
    }
    for f in s.flags().iter().flatten() {
        if *f == LinuxSeccompFilterFlag::SeccompFilterFlagLog {
            ctx.set_ctl_log(true)
                .map_err(|e| format!("seccomp log flag: {e}"))?;
        }
        if *f == LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow {
            ctx.set_ctl_ssb(true)
                .map_err(|e| format!("seccomp spec_allow flag: {e}"))?;
        }
    }
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let act = action(sc.action(), sc.errno_ret());
        // libseccomp refuses a rule that repeats the default action; runc skips them too.
        if act == default {
            continue;
        }
        let conds: Vec<ScmpArgCompare> = sc
            .args()
            .iter()
            .flatten()
            .map(|a| ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value()))
            .collect();
        let mut indexes: Vec<usize> = sc.args().iter().flatten().map(|a| a.index()).collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in sc.names() {
            // Profiles list syscalls newer than this libseccomp knows: skip those, as runc does.
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let res = if conds.is_empty() {
                ctx.add_rule(act, nr)
            } else if repeated {
                // Conditions on the same argument are alternatives: one rule each.
                conds
                    .iter()
                    .try_for_each(|c| {
                        ctx.add_rule_conditional(act, nr, std::slice::from_ref(c))
                            .map(|_| ())
                    })
                    .map(|_| &mut ctx)
            } else {
                ctx.add_rule_conditional(act, nr, &conds)
            };
            res.map_err(|e| format!("linux.seccomp.syscalls[{i}] {name}: {e}"))?;
        }
    }
    Ok(ctx)
}
