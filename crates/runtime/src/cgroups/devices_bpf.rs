//! cgroup v2 device access control: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) built from
//! the same rule list the v1 devices controller gets, attached to the container's cgroup.
//!
//! The rules are first reduced the way the v1 controller evaluates them: a rule for every
//! device with full access resets the default (allow or deny) and drops earlier exceptions;
//! any other rule is an exception to the current default. With a deny default, a request is
//! allowed when an allow exception covers all its access bits; with an allow default, it is
//! denied when a deny exception shares any access bit (the kernel's v1 semantics).

use std::{ffi::CString, os::unix::ffi::OsStrExt, path::Path};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::Error;

const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

#[derive(Debug, Clone, PartialEq)]
struct Exception {
    typ: Option<i32>,
    major: Option<i64>,
    minor: Option<i64>,
    access: u32,
}

fn access_mask(access: Option<&str>) -> u32 {
    let a = access.filter(|a| !a.is_empty()).unwrap_or("rwm");
    let mut m = 0;
    for c in a.chars() {
        m |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        };
    }
    m
}

/// (default allow?, exceptions) for `rules` applied in order to an allow-all parent.
fn reduce(rules: &[LinuxDeviceCgroup]) -> (bool, Vec<Exception>) {
    let mut default_allow = true;
    let mut exceptions: Vec<Exception> = Vec::new();
    for r in rules {
        let typ = match r.typ() {
            None | Some(LinuxDeviceType::A) => None,
            Some(LinuxDeviceType::B) => Some(DEV_BLOCK),
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(DEV_CHAR),
            // Fifos are not subject to the device controller.
            Some(LinuxDeviceType::P) => continue,
        };
        let e = Exception {
            typ,
            major: r.major().filter(|m| *m >= 0),
            minor: r.minor().filter(|m| *m >= 0),
            access: access_mask(r.access().as_deref()),
        };
        if e.typ.is_none()
            && e.major.is_none()
            && e.minor.is_none()
            && e.access == ACC_READ | ACC_WRITE | ACC_MKNOD
        {
            default_allow = r.allow();
            exceptions.clear();
        } else if r.allow() != default_allow {
            exceptions.push(e);
        } else {
            exceptions.retain(|x| !(x.typ == e.typ && x.major == e.major && x.minor == e.minor));
        }
    }
    (default_allow, exceptions)
}

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// The program: r2 = device type, r3 = requested access, r4 = major, r5 = minor; one block
/// per exception returning the opposite of the default; then the default.
fn program(default_allow: bool, exceptions: &[Exception]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for e in exceptions {
        // Jumps are filled with the distance to the end of the block below.
        let mut block: Vec<(Insn, bool)> = Vec::new();
        if let Some(t) = e.typ {
            block.push((insn(JNE_K, 2, 0, 0, t), true));
        }
        block.push((insn(MOV32_X, 1, 3, 0, 0), false));
        if default_allow {
            // Deny if the request shares any access bit with the exception.
            block.push((insn(AND32_K, 1, 0, 0, e.access as i32), false));
            block.push((insn(JEQ_K, 1, 0, 0, 0), true));
        } else {
            // Allow only if the exception covers every requested bit.
            block.push((insn(AND32_K, 1, 0, 0, (!e.access & 7) as i32), false));
            block.push((insn(JNE_K, 1, 0, 0, 0), true));
        }
        if let Some(m) = e.major {
            block.push((insn(JNE_K, 4, 0, 0, m as i32), true));
        }
        if let Some(m) = e.minor {
            block.push((insn(JNE_K, 5, 0, 0, m as i32), true));
        }
        block.push((insn(MOV64_K, 0, 0, 0, i32::from(!default_allow)), false));
        block.push((insn(EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        for (i, (mut ins, jump)) in block.into_iter().enumerate() {
            if jump {
                ins.off = (len - i - 1) as i16;
            }
            p.push(ins);
        }
    }
    p.push(insn(MOV64_K, 0, 0, 0, i32::from(default_allow)));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _tail: [u8; 64],
}

#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _tail: [u8; 44],
}

/// Builds the filter for `rules` and attaches it to the cgroup directory `dir`. The attachment
/// lives as long as the cgroup.
pub(crate) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), Error> {
    let (default_allow, exceptions) = reduce(rules);
    if default_allow && exceptions.is_empty() {
        return Ok(());
    }
    let prog = program(default_allow, &exceptions);
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"lc_device");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: 0,
        _tail: [0; 64],
    };
    let what = |w: &str, e: std::io::Error| Error::Cgroup {
        path: dir.to_owned(),
        what: format!("linux.resources.devices: {w}"),
        source: e,
    };
    // SAFETY: bpf(2) with a zero-padded attr that points to live buffers.
    let prog_fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if prog_fd < 0 {
        return Err(what(
            "load the eBPF device filter",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh fd from the kernel.
    let prog_fd =
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(prog_fd as i32) };
    let c = CString::new(dir.as_os_str().as_bytes()).unwrap_or_default();
    // SAFETY: open a directory with a valid C string.
    let cg_fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if cg_fd < 0 {
        return Err(what("open the cgroup", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd.
    let cg_fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(cg_fd) };
    use std::os::fd::AsRawFd;
    let attach = ProgAttachAttr {
        target_fd: cg_fd.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
        _tail: [0; 44],
    };
    // SAFETY: bpf(2) with a zero-padded attr.
    if unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    } != 0
    {
        return Err(what(
            "attach the eBPF device filter",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    use super::*;

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .access(access);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn deny_all_then_allow_reduces_to_allow_exceptions() {
        let rules = [
            rule(true, Some(LinuxDeviceType::C), Some(5), Some(1), "rw"),
            rule(false, None, None, None, "rwm"),
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm"),
            rule(true, Some(LinuxDeviceType::C), Some(136), None, "rw"),
        ];
        let (allow, ex) = reduce(&rules);
        assert!(!allow, "the deny-all rule sets a deny default");
        assert_eq!(ex.len(), 2, "the allow before deny-all is dropped: {ex:?}");
        assert_eq!(
            ex[1],
            Exception {
                typ: Some(DEV_CHAR),
                major: Some(136),
                minor: None,
                access: ACC_READ | ACC_WRITE
            }
        );
    }

    #[test]
    fn program_shape() {
        let (allow, ex) = reduce(&[
            rule(false, None, None, None, "rwm"),
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rw"),
        ]);
        let p = program(allow, &ex);
        // prologue 6 + block (type, mov, and, jne, major, minor, mov, exit) 8 + default 2
        assert_eq!(p.len(), 16);
        assert_eq!(
            p[6],
            insn(JNE_K, 2, 0, 7, DEV_CHAR),
            "type mismatch skips the whole block"
        );
        assert_eq!(p[9], insn(JNE_K, 1, 0, 4, 0));
        assert_eq!(
            p[12],
            insn(MOV64_K, 0, 0, 0, 1),
            "a matching allow exception returns 1"
        );
        assert_eq!(p[14], insn(MOV64_K, 0, 0, 0, 0), "the default denies");
    }
}
