//! cgroup v2: one directory in the unified hierarchy.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxRdma, LinuxResources};

use super::fs::{self, set};
use super::v1::{FREEZE_ATTEMPTS, FREEZE_PAUSE};
use super::{CgroupError, Dir};

/// Controllers a container may need; each is enabled where the parent offers it.
const CONTROLLERS: &[&str] = &[
    "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
];

/// Enables the controllers in `cgroup.subtree_control` of every ancestor of the
/// cgroup, since a v2 cgroup only gets the controllers its parent passes down.
/// Ancestors someone else made may refuse (processes of their own, or not ours
/// to change): that is tolerated, and `apply` then names the missing file.
pub(super) fn enable_controllers(dir: &Dir, created: &[PathBuf]) -> Result<(), CgroupError> {
    let rel = dir.path.strip_prefix(&dir.root).unwrap_or(Path::new(""));
    let mut cur = dir.root.clone();
    for comp in rel.components() {
        let available = words(&cur.join("cgroup.controllers"))?;
        let enabled = words(&cur.join("cgroup.subtree_control"))?;
        let missing: Vec<&str> = CONTROLLERS
            .iter()
            .copied()
            .filter(|c| available.iter().any(|a| a == c) && !enabled.iter().any(|e| e == c))
            .collect();
        if !missing.is_empty() {
            let control = cur.join("cgroup.subtree_control");
            let line: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
            if let Err(e) = fs::write(&control, &line.join(" ")) {
                if created.contains(&cur) {
                    return Err(e);
                }
                // One refused controller fails the whole line; get the others.
                for c in &missing {
                    let _ = fs::write(&control, &format!("+{c}"));
                }
            }
        }
        cur.push(comp);
    }
    Ok(())
}

fn words(path: &Path) -> Result<Vec<String>, CgroupError> {
    Ok(fs::read_opt(path)?
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

pub(super) fn apply(dir: &Path, r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(cpu) = r.cpu() {
        apply_cpu(dir, cpu)?;
    }
    if let Some(mem) = r.memory() {
        apply_memory(dir, mem)?;
    }
    if let Some(pids) = r.pids() {
        set(
            dir,
            "pids.max",
            &pids_max(pids.limit()),
            "linux.resources.pids.limit",
        )?;
    }
    if let Some(bio) = r.block_io() {
        apply_io(dir, bio)?;
    }
    for l in r.hugepage_limits().as_deref().unwrap_or_default() {
        let size = hugepage_size(l.page_size())?;
        let value = if l.limit() < 0 {
            "max".to_owned()
        } else {
            l.limit().to_string()
        };
        set(
            dir,
            &format!("hugetlb.{size}.max"),
            &value,
            "linux.resources.hugepageLimits",
        )?;
    }
    if let Some(net) = r.network()
        && (net.class_id().is_some() || net.priorities().as_ref().is_some_and(|p| !p.is_empty()))
    {
        return Err(CgroupError::unsupported(
            "linux.resources.network",
            "net_cls and net_prio exist only in cgroup v1 but this host runs cgroup v2",
        ));
    }
    if let Some(rdma) = r.rdma() {
        for line in rdma_lines(rdma) {
            set(dir, "rdma.max", &line, "linux.resources.rdma")?;
        }
    }
    // Last, so that explicit unified values win over the translated ones.
    if let Some(unified) = r.unified() {
        let sorted: BTreeMap<_, _> = unified.iter().collect();
        for (key, value) in sorted {
            let field = format!("linux.resources.unified.{key}");
            if key.is_empty() || key.contains('/') || key.starts_with('.') {
                return Err(CgroupError::invalid(field, key, "must be a file name"));
            }
            set(dir, key, value, &field)?;
        }
    }
    Ok(())
}

/// cpu.shares (2..262144, default 1024) to cpu.weight (1..10000, default 100),
/// the linear map runc and crun use.
pub(super) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// blkio.weight (10..1000) to io.weight (1..10000), as runc does.
pub(super) fn blkio_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

pub(super) fn pids_max(limit: i64) -> String {
    if limit <= 0 {
        "max".to_owned()
    } else {
        limit.to_string()
    }
}

pub(super) fn hugepage_size(size: &str) -> Result<&str, CgroupError> {
    if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CgroupError::invalid(
            "linux.resources.hugepageLimits.pageSize",
            format!("{size:?}"),
            "expected a size like \"2MB\"",
        ));
    }
    Ok(size)
}

pub(super) fn rdma_lines(rdma: &HashMap<String, LinuxRdma>) -> Vec<String> {
    let sorted: BTreeMap<_, _> = rdma.iter().collect();
    sorted
        .into_iter()
        .filter_map(|(dev, l)| {
            let mut parts = Vec::new();
            if let Some(h) = l.hca_handles() {
                parts.push(format!("hca_handle={h}"));
            }
            if let Some(o) = l.hca_objects() {
                parts.push(format!("hca_object={o}"));
            }
            (!parts.is_empty()).then(|| format!("{dev} {}", parts.join(" ")))
        })
        .collect()
}

fn apply_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(s) = cpu.shares().filter(|&s| s != 0) {
        set(
            dir,
            "cpu.weight",
            &shares_to_weight(s).to_string(),
            "linux.resources.cpu.shares",
        )?;
    }
    let quota = cpu.quota().filter(|&q| q != 0);
    let period = cpu.period().filter(|&p| p != 0);
    if quota.is_some() || period.is_some() {
        let quota = match quota {
            Some(q) if q > 0 => q.to_string(),
            Some(_) => "max".to_owned(),
            // Changing only the period must keep the quota already in place.
            None => fs::read_opt(&dir.join("cpu.max"))?
                .and_then(|s| s.split_whitespace().next().map(str::to_owned))
                .unwrap_or_else(|| "max".to_owned()),
        };
        let value = match period {
            Some(p) => format!("{quota} {p}"),
            None => quota,
        };
        set(dir, "cpu.max", &value, "linux.resources.cpu.quota")?;
    }
    if let Some(b) = cpu.burst() {
        set(
            dir,
            "cpu.max.burst",
            &b.to_string(),
            "linux.resources.cpu.burst",
        )?;
    }
    if let Some(i) = cpu.idle() {
        set(dir, "cpu.idle", &i.to_string(), "linux.resources.cpu.idle")?;
    }
    if cpu.realtime_period().is_some_and(|p| p != 0)
        || cpu.realtime_runtime().is_some_and(|r| r != 0)
    {
        return Err(CgroupError::unsupported(
            "linux.resources.cpu.realtimeRuntime",
            "cgroup v2 has no realtime scheduling budget",
        ));
    }
    if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
        set(dir, "cpuset.cpus", cpus, "linux.resources.cpu.cpus")?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
        set(dir, "cpuset.mems", mems, "linux.resources.cpu.mems")?;
    }
    Ok(())
}

fn bytes_or_max(v: i64) -> String {
    if v < 0 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

fn apply_memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    const SWAP: &str = "linux.resources.memory.swap";
    let limit = m.limit().filter(|&l| l != 0);
    if let Some(l) = limit {
        set(
            dir,
            "memory.max",
            &bytes_or_max(l),
            "linux.resources.memory.limit",
        )?;
    }
    if let Some(r) = m.reservation().filter(|&r| r != 0) {
        set(
            dir,
            "memory.low",
            &bytes_or_max(r),
            "linux.resources.memory.reservation",
        )?;
    }
    if let Some(swap) = swap_max(limit, m.swap().filter(|&s| s != 0))?
        // Without swap accounting there is no memory.swap.max; Docker always
        // sets swap, so failing here would make every Docker container fail.
        && dir.join("memory.swap.max").exists()
    {
        set(dir, "memory.swap.max", &swap, SWAP)?;
    }
    // swappiness, disableOOMKiller and the kernel memory limits have no v2
    // counterpart; runc and crun ignore them on v2 as well.
    Ok(())
}

/// OCI swap is memory+swap (the v1 memsw meaning); v2 limits swap alone.
pub(super) fn swap_max(
    limit: Option<i64>,
    swap: Option<i64>,
) -> Result<Option<String>, CgroupError> {
    const SWAP: &str = "linux.resources.memory.swap";
    match (limit, swap) {
        // Unlimited memory with swap unset means unlimited swap, as on v1.
        (Some(-1), None) => Ok(Some("max".to_owned())),
        (_, None) => Ok(None),
        (_, Some(s)) if s < 0 => Ok(Some("max".to_owned())),
        (None | Some(-1), Some(s)) => Err(CgroupError::invalid(
            SWAP,
            s,
            "a swap limit needs a memory limit on cgroup v2",
        )),
        (Some(l), Some(_)) if l < 0 => Err(CgroupError::invalid(
            "linux.resources.memory.limit",
            l,
            "must be -1 or positive",
        )),
        (Some(l), Some(s)) if s < l => Err(CgroupError::invalid(
            SWAP,
            s,
            format!("memory+swap must be at least the memory limit {l}"),
        )),
        (Some(l), Some(s)) => Ok(Some((s - l).to_string())),
    }
}

fn apply_io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // With BFQ as the scheduler, io.bfq.weight is what takes effect; it uses the
    // blkio scale, so the value goes through unchanged.
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        let (file, value) = if bfq {
            ("io.bfq.weight", w.to_string())
        } else {
            ("io.weight", blkio_to_io_weight(w).to_string())
        };
        set(dir, file, &value, "linux.resources.blockIO.weight")?;
    }
    if b.leaf_weight().is_some_and(|w| w != 0) {
        return Err(CgroupError::unsupported(
            "linux.resources.blockIO.leafWeight",
            "cgroup v2 has no leaf weight",
        ));
    }
    for d in b.weight_device().as_deref().unwrap_or_default() {
        if d.leaf_weight().is_some_and(|w| w != 0) {
            return Err(CgroupError::unsupported(
                "linux.resources.blockIO.weightDevice.leafWeight",
                "cgroup v2 has no leaf weight",
            ));
        }
        if let Some(w) = d.weight() {
            let (file, w) = if bfq {
                ("io.bfq.weight", u64::from(w))
            } else {
                ("io.weight", blkio_to_io_weight(w))
            };
            set(
                dir,
                file,
                &format!("{}:{} {w}", d.major(), d.minor()),
                "linux.resources.blockIO.weightDevice",
            )?;
        }
    }
    // One io.max line per device carrying every limit set for it.
    let mut per_device: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
    let lists = [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ];
    for (list, key) in lists {
        for t in list.as_deref().unwrap_or_default() {
            // 0 removes a v1 throttle; "max" says the same to v2.
            let rate = if t.rate() == 0 {
                "max".to_owned()
            } else {
                t.rate().to_string()
            };
            per_device
                .entry((t.major(), t.minor()))
                .or_default()
                .push(format!("{key}={rate}"));
        }
    }
    for ((major, minor), limits) in per_device {
        set(
            dir,
            "io.max",
            &format!("{major}:{minor} {}", limits.join(" ")),
            "linux.resources.blockIO.throttle",
        )?;
    }
    Ok(())
}

/// Writes cgroup.freeze and waits, bounded, until cgroup.events agrees.
pub(super) fn set_frozen(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let control = dir.join("cgroup.freeze");
    let value = if frozen { "1" } else { "0" };
    match fs::write(&control, value) {
        Err(CgroupError::Write { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(fs::missing(dir, &control, "freezer"));
        }
        other => other?,
    }
    for _ in 0..FREEZE_ATTEMPTS {
        if is_frozen(dir)? == frozen {
            return Ok(());
        }
        std::thread::sleep(FREEZE_PAUSE);
    }
    if frozen {
        // Half-frozen tasks would stay stuck; leave the cgroup running instead.
        let _ = fs::write(&control, "0");
    }
    Err(CgroupError::Timeout {
        path: dir.join("cgroup.events"),
        wanted: if frozen { "frozen" } else { "thawed" },
        attempts: FREEZE_ATTEMPTS,
    })
}

pub(super) fn is_frozen(dir: &Path) -> Result<bool, CgroupError> {
    let events = dir.join("cgroup.events");
    match fs::read_opt(&events)? {
        Some(text) => Ok(super::stats::keyed(&text, "frozen") == Some(1)),
        None => Err(fs::missing(dir, &events, "freezer")),
    }
}
