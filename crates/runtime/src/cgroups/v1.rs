//! cgroup v1: one directory per controller hierarchy.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxResources,
    LinuxThrottleDevice,
};

use super::fs::{self, set};
use super::{CgroupError, Dir};

/// Freezing can take a while when tasks are in uninterruptible sleep; this bounds
/// the wait to a few seconds.
pub(super) const FREEZE_ATTEMPTS: u32 = 500;
pub(super) const FREEZE_PAUSE: Duration = Duration::from_millis(10);

type Controllers = BTreeMap<String, Dir>;

fn controller<'a>(c: &'a Controllers, name: &str, field: &str) -> Result<&'a Path, CgroupError> {
    c.get(name).map(|d| d.path.as_path()).ok_or_else(|| {
        CgroupError::unsupported(
            field,
            format!("the {name} cgroup controller is not mounted"),
        )
    })
}

/// An empty cpuset.cpus or cpuset.mems makes adding a process fail with ENOSPC,
/// and new v1 cpusets start empty, so each level inherits from its parent.
pub(super) fn copy_cpuset_down(dir: &Dir) -> Result<(), CgroupError> {
    let rel = dir.path.strip_prefix(&dir.root).unwrap_or(Path::new(""));
    let mut parent = dir.root.clone();
    for comp in rel.components() {
        let cur = parent.join(comp);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let Some(value) = fs::read_opt(&cur.join(file))? else {
                continue;
            };
            if !value.trim().is_empty() {
                continue;
            }
            let inherited = fs::read(&parent.join(file))?;
            fs::write(&cur.join(file), inherited.trim())?;
        }
        parent = cur;
    }
    Ok(())
}

pub(super) fn apply(c: &Controllers, r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(cpu) = r.cpu() {
        apply_cpu(c, cpu)?;
    }
    if let Some(mem) = r.memory() {
        apply_memory(controller(c, "memory", "linux.resources.memory")?, mem)?;
    }
    if let Some(pids) = r.pids() {
        let dir = controller(c, "pids", "linux.resources.pids")?;
        set(
            dir,
            "pids.max",
            &super::v2::pids_max(pids.limit()),
            "linux.resources.pids.limit",
        )?;
    }
    if let Some(bio) = r.block_io() {
        apply_blkio(c, bio)?;
    }
    if let Some(limits) = r.hugepage_limits().as_deref().filter(|l| !l.is_empty()) {
        apply_hugetlb(c, limits)?;
    }
    if let Some(net) = r.network() {
        apply_network(c, net)?;
    }
    if let Some(rdma) = r.rdma().as_ref().filter(|m| !m.is_empty()) {
        let dir = controller(c, "rdma", "linux.resources.rdma")?;
        for line in super::v2::rdma_lines(rdma) {
            set(dir, "rdma.max", &line, "linux.resources.rdma")?;
        }
    }
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::unsupported(
            "linux.resources.unified",
            "needs cgroup v2 but this host runs cgroup v1",
        ));
    }
    Ok(())
}

fn apply_cpu(c: &Controllers, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    const F: &str = "linux.resources.cpu";
    // Go tools write unset numbers as 0; runc treats 0 as unset too.
    let shares = cpu.shares().filter(|&s| s != 0);
    let period = cpu.period().filter(|&p| p != 0);
    let quota = cpu.quota().filter(|&q| q != 0);
    let rt_period = cpu.realtime_period().filter(|&p| p != 0);
    let rt_runtime = cpu.realtime_runtime().filter(|&r| r != 0);
    let needs_cpu = shares.is_some()
        || period.is_some()
        || quota.is_some()
        || cpu.burst().is_some()
        || cpu.idle().is_some()
        || rt_period.is_some()
        || rt_runtime.is_some();
    if needs_cpu {
        let dir = controller(c, "cpu", F)?;
        if let Some(s) = shares {
            set(
                dir,
                "cpu.shares",
                &s.to_string(),
                "linux.resources.cpu.shares",
            )?;
        }
        const PERIOD: &str = "linux.resources.cpu.period";
        let mut period_pending = None;
        if let Some(p) = period {
            match set(dir, "cpu.cfs_period_us", &p.to_string(), PERIOD) {
                // A shorter period can make the old quota exceed what the
                // parent allows; with a new quota coming, retry after it.
                Err(CgroupError::Write { source, .. })
                    if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
                {
                    period_pending = Some(p);
                }
                other => other?,
            }
        }
        if let Some(q) = quota {
            let q = if q < 0 { -1 } else { q };
            set(
                dir,
                "cpu.cfs_quota_us",
                &q.to_string(),
                "linux.resources.cpu.quota",
            )?;
        }
        if let Some(p) = period_pending {
            set(dir, "cpu.cfs_period_us", &p.to_string(), PERIOD)?;
        }
        if let Some(b) = cpu.burst() {
            set(
                dir,
                "cpu.cfs_burst_us",
                &b.to_string(),
                "linux.resources.cpu.burst",
            )?;
        }
        if let Some(i) = cpu.idle() {
            set(dir, "cpu.idle", &i.to_string(), "linux.resources.cpu.idle")?;
        }
        // Kernels without CONFIG_RT_GROUP_SCHED have no rt files; runc skips
        // them there too, since every realtime task then runs in the root group.
        if let Some(p) = rt_period
            && dir.join("cpu.rt_period_us").exists()
        {
            set(
                dir,
                "cpu.rt_period_us",
                &p.to_string(),
                "linux.resources.cpu.realtimePeriod",
            )?;
        }
        if let Some(r) = rt_runtime
            && dir.join("cpu.rt_runtime_us").exists()
        {
            set(
                dir,
                "cpu.rt_runtime_us",
                &r.to_string(),
                "linux.resources.cpu.realtimeRuntime",
            )?;
        }
    }
    let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let dir = controller(c, "cpuset", F)?;
        if let Some(cpus) = cpus {
            set(dir, "cpuset.cpus", cpus, "linux.resources.cpu.cpus")?;
        }
        if let Some(mems) = mems {
            set(dir, "cpuset.mems", mems, "linux.resources.cpu.mems")?;
        }
    }
    Ok(())
}

fn apply_memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    const LIMIT: &str = "linux.resources.memory.limit";
    const SWAP: &str = "linux.resources.memory.swap";
    let limit = m.limit().filter(|&l| l != 0);
    let swap = m.swap().filter(|&s| s != 0);
    if let (Some(l), Some(s)) = (limit, swap)
        && l > 0
        && s > 0
        && s < l
    {
        return Err(CgroupError::invalid(
            SWAP,
            s,
            format!("memory+swap must be at least the memory limit {l}"),
        ));
    }
    // Without swap accounting the kernel has no memsw files; Docker always sets
    // swap, so failing here would make every Docker container fail.
    let swap = swap.filter(|_| dir.join("memory.memsw.limit_in_bytes").exists());
    match (limit, swap) {
        (Some(l), Some(s)) => {
            let current = read_i64(&dir.join("memory.memsw.limit_in_bytes"))?;
            if memsw_first(s, current) {
                set(dir, "memory.memsw.limit_in_bytes", &s.to_string(), SWAP)?;
                set(dir, "memory.limit_in_bytes", &l.to_string(), LIMIT)?;
            } else {
                set(dir, "memory.limit_in_bytes", &l.to_string(), LIMIT)?;
                set(dir, "memory.memsw.limit_in_bytes", &s.to_string(), SWAP)?;
            }
        }
        (Some(l), None) => set(dir, "memory.limit_in_bytes", &l.to_string(), LIMIT)?,
        (None, Some(s)) => set(dir, "memory.memsw.limit_in_bytes", &s.to_string(), SWAP)?,
        (None, None) => {}
    }
    if let Some(r) = m.reservation().filter(|&r| r != 0) {
        set(
            dir,
            "memory.soft_limit_in_bytes",
            &r.to_string(),
            "linux.resources.memory.reservation",
        )?;
    }
    // memory.kmem.limit_in_bytes is deprecated and rejected by current kernels;
    // runc ignores linux.resources.memory.kernel as well.
    if let Some(t) = m.kernel_tcp().filter(|&t| t != 0) {
        set(
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            &t.to_string(),
            "linux.resources.memory.kernelTCP",
        )?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::invalid(
                "linux.resources.memory.swappiness",
                s,
                "must be between 0 and 100",
            ));
        }
        set(
            dir,
            "memory.swappiness",
            &s.to_string(),
            "linux.resources.memory.swappiness",
        )?;
    }
    if let Some(d) = m.disable_oom_killer() {
        set(
            dir,
            "memory.oom_control",
            if d { "1" } else { "0" },
            "linux.resources.memory.disableOOMKiller",
        )?;
    }
    Ok(())
}

/// The kernel keeps memsw at or above the memory limit at every moment, so
/// memsw goes first when it grows (then the new limit fits below it) and last
/// when it shrinks (then the limit has already come down).
pub(super) fn memsw_first(new_memsw: i64, current_memsw: Option<i64>) -> bool {
    new_memsw == -1 || current_memsw.is_some_and(|cur| cur != -1 && new_memsw > cur)
}

fn read_i64(path: &Path) -> Result<Option<i64>, CgroupError> {
    let Some(text) = fs::read_opt(path)? else {
        return Ok(None);
    };
    let t = text.trim();
    t.parse().map(Some).map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: t.to_owned(),
    })
}

fn apply_blkio(c: &Controllers, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    const F: &str = "linux.resources.blockIO";
    let weight = b.weight().filter(|&w| w != 0);
    let leaf = b.leaf_weight().filter(|&w| w != 0);
    let devices = b.weight_device().as_deref().unwrap_or_default();
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
            "throttleReadBpsDevice",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
            "throttleWriteBpsDevice",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
            "throttleReadIOPSDevice",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
            "throttleWriteIOPSDevice",
        ),
    ];
    let any_throttle = throttles
        .iter()
        .any(|(t, _, _)| t.as_ref().is_some_and(|v| !v.is_empty()));
    if weight.is_none() && leaf.is_none() && devices.is_empty() && !any_throttle {
        return Ok(());
    }
    let dir = controller(c, "blkio", F)?;
    // CFQ is gone from current kernels; BFQ offers the same knobs under its own prefix.
    let prefix = if dir.join("blkio.weight").exists() || !dir.join("blkio.bfq.weight").exists() {
        "blkio"
    } else {
        "blkio.bfq"
    };
    if let Some(w) = weight {
        set(
            dir,
            &format!("{prefix}.weight"),
            &w.to_string(),
            "linux.resources.blockIO.weight",
        )?;
    }
    if let Some(w) = leaf {
        set(
            dir,
            "blkio.leaf_weight",
            &w.to_string(),
            "linux.resources.blockIO.leafWeight",
        )?;
    }
    // BFQ takes per-device weights in its weight file, as "MAJ:MIN WEIGHT".
    let device_file = if prefix == "blkio" {
        "blkio.weight_device"
    } else {
        "blkio.bfq.weight"
    };
    for d in devices {
        if let Some(w) = d.weight() {
            set(
                dir,
                device_file,
                &format!("{}:{} {w}", d.major(), d.minor()),
                "linux.resources.blockIO.weightDevice",
            )?;
        }
        if let Some(w) = d.leaf_weight() {
            set(
                dir,
                "blkio.leaf_weight_device",
                &format!("{}:{} {w}", d.major(), d.minor()),
                "linux.resources.blockIO.weightDevice.leafWeight",
            )?;
        }
    }
    for (list, file, name) in throttles {
        for t in list.as_deref().unwrap_or_default() {
            set(dir, file, &throttle_line(t), &format!("{F}.{name}"))?;
        }
    }
    Ok(())
}

fn throttle_line(t: &LinuxThrottleDevice) -> String {
    format!("{}:{} {}", t.major(), t.minor(), t.rate())
}

fn apply_hugetlb(c: &Controllers, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    const F: &str = "linux.resources.hugepageLimits";
    let dir = controller(c, "hugetlb", F)?;
    for l in limits {
        let size = super::v2::hugepage_size(l.page_size())?;
        set(
            dir,
            &format!("hugetlb.{size}.limit_in_bytes"),
            &l.limit().to_string(),
            F,
        )?;
    }
    Ok(())
}

fn apply_network(c: &Controllers, n: &LinuxNetwork) -> Result<(), CgroupError> {
    if let Some(id) = n.class_id() {
        const F: &str = "linux.resources.network.classID";
        set(
            controller(c, "net_cls", F)?,
            "net_cls.classid",
            &id.to_string(),
            F,
        )?;
    }
    if let Some(prios) = n.priorities().as_deref().filter(|p| !p.is_empty()) {
        const F: &str = "linux.resources.network.priorities";
        let dir = controller(c, "net_prio", F)?;
        for p in prios {
            set(
                dir,
                "net_prio.ifpriomap",
                &format!("{} {}", p.name(), p.priority()),
                F,
            )?;
        }
    }
    Ok(())
}

/// Writes the wanted freezer state and waits until the kernel reports it;
/// undoes a freeze that does not complete.
pub(super) fn set_frozen(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let state = dir.join("freezer.state");
    let wanted = if frozen { "FROZEN" } else { "THAWED" };
    for attempt in 0..FREEZE_ATTEMPTS {
        // Writing again helps the kernel past tasks that were forking or
        // exiting when the previous write walked the cgroup.
        if attempt % 50 == 0 {
            write_state(dir, &state, wanted)?;
        }
        if read_state(dir, &state)? == wanted {
            return Ok(());
        }
        std::thread::sleep(FREEZE_PAUSE);
    }
    if frozen {
        // Half-frozen tasks would stay stuck; leave the cgroup running instead.
        let _ = fs::write(&state, "THAWED");
    }
    Err(CgroupError::Timeout {
        path: state,
        wanted,
        attempts: FREEZE_ATTEMPTS,
    })
}

fn write_state(dir: &Path, state: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(state, value).map_err(|e| match e {
        CgroupError::Write { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            fs::missing(dir, state, "freezer")
        }
        e => e,
    })
}

fn read_state(dir: &Path, state: &Path) -> Result<String, CgroupError> {
    match fs::read_opt(state)? {
        Some(s) => Ok(s.trim().to_owned()),
        None => Err(fs::missing(dir, state, "freezer")),
    }
}

pub(super) fn is_frozen(dir: &Path) -> Result<bool, CgroupError> {
    let state = dir.join("freezer.state");
    // FREEZING counts as not frozen: some task still runs.
    Ok(read_state(dir, &state)? == "FROZEN")
}
