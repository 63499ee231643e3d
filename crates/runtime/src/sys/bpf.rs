//! The bpf(2) commands needed to install a cgroup v2 device filter.
//! Each attribute struct is a prefix of the kernel's `union bpf_attr`; the
//! kernel zero-fills the rest, so passing only the prefix is well defined.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// One eBPF instruction, `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

#[repr(C)]
#[derive(Default)]
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
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// # Safety
/// `attr` must be the attribute struct the kernel expects for `cmd`, and every
/// pointer inside it must be valid for the access the command makes.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: the caller guarantees `attr` matches `cmd`; the size passed is the
    // size of the struct the pointer refers to.
    let ret =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<T>()) };
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

/// Loads a BPF_PROG_TYPE_CGROUP_DEVICE program. When `log` is given the
/// verifier writes its explanation there (NUL-terminated).
pub(crate) fn load_cgroup_device(
    insns: &[Insn],
    license: &CStr,
    log: Option<&mut [u8]>,
) -> Result<OwnedFd, Errno> {
    let insn_cnt = u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?;
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..ProgLoadAttr::default()
    };
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    // SAFETY: ProgLoadAttr is the BPF_PROG_LOAD prefix of bpf_attr; `insns`,
    // `license` and the log buffer outlive the call and their lengths are the
    // ones given in the attribute.
    let fd = unsafe { bpf(BPF_PROG_LOAD, &mut attr)? };
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    // Open descriptors are never negative.
    fd.as_raw_fd().unsigned_abs()
}

/// Attaches a device program to a cgroup directory, alongside any already there.
pub(crate) fn attach_cgroup_device(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..AttachAttr::default()
    };
    // SAFETY: AttachAttr is the BPF_PROG_ATTACH prefix of bpf_attr; it holds no pointers.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr)? };
    Ok(())
}

pub(crate) fn detach_cgroup_device(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        ..AttachAttr::default()
    };
    // SAFETY: AttachAttr is the BPF_PROG_DETACH prefix of bpf_attr; it holds no pointers.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr)? };
    Ok(())
}

/// The ids of the device programs attached directly to a cgroup directory.
pub(crate) fn query_cgroup_device(cgroup: BorrowedFd<'_>) -> Result<Vec<u32>, Errno> {
    let mut ids = vec![0u32; 64];
    loop {
        let mut attr = QueryAttr {
            target_fd: fd_u32(cgroup),
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            ..QueryAttr::default()
        };
        // SAFETY: QueryAttr is the BPF_PROG_QUERY prefix of bpf_attr; `prog_ids`
        // points at `prog_cnt` writable u32 that outlive the call.
        match unsafe { bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // The kernel reports how many there are; try again with room for all.
            Err(Errno::ENOSPC) if attr.prog_cnt as usize > ids.len() => {
                ids = vec![0; attr.prog_cnt as usize];
            }
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn prog_fd_by_id(id: u32) -> Result<OwnedFd, Errno> {
    let mut attr = GetFdAttr {
        prog_id: id,
        ..GetFdAttr::default()
    };
    // SAFETY: GetFdAttr is the BPF_PROG_GET_FD_BY_ID prefix of bpf_attr; it holds no pointers.
    let fd = unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)? };
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: BPF_PROG_GET_FD_BY_ID returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
