//! Usage counters in the shape of `runc events --stats` ("data").
//! A counter whose file is absent reads as zero: kernels differ in what they offer.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::fs;
use super::{CgroupError, Dir};

/// USER_HZ, the unit of cpuacct.stat, is 100 on every Linux ABI.
const NANOS_PER_TICK: u64 = 1_000_000_000 / 100;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stats {
    pub(crate) cpu: CpuStats,
    pub(crate) memory: MemoryStats,
    pub(crate) pids: PidsStats,
    pub(crate) blkio: BlkioStats,
    pub(crate) hugetlb: BTreeMap<String, HugetlbStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CpuStats {
    pub(crate) usage: CpuUsage,
    pub(crate) throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CpuUsage {
    pub(crate) total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) percpu: Vec<u64>,
    pub(crate) kernel: u64,
    pub(crate) user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Throttling {
    pub(crate) periods: u64,
    pub(crate) throttled_periods: u64,
    /// Nanoseconds.
    pub(crate) throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemoryStats {
    pub(crate) cache: u64,
    pub(crate) usage: MemoryEntry,
    /// Memory plus swap, as v1 reports it.
    pub(crate) swap: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) raw: BTreeMap<String, u64>,
}

/// Bytes; a limit of `u64::MAX` means none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemoryEntry {
    pub(crate) limit: u64,
    pub(crate) usage: u64,
    pub(crate) max: u64,
    pub(crate) failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PidsStats {
    pub(crate) current: u64,
    /// 0 means no limit, as in runc.
    pub(crate) limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BlkioStats {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BlkioEntry {
    pub(crate) major: u64,
    pub(crate) minor: u64,
    pub(crate) op: String,
    pub(crate) value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HugetlbStats {
    pub(crate) usage: u64,
    pub(crate) max: u64,
    pub(crate) failcnt: u64,
}

/// The value of `key` in a "key value" per line file, 0 when file or key is absent.
pub(super) fn keyed_value(path: &Path, key: &str) -> Result<u64, CgroupError> {
    Ok(fs::read_opt(path)?
        .and_then(|t| keyed(&t, key))
        .unwrap_or(0))
}

pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn keyed_map(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A file holding one number; "max" is `u64::MAX`; absent or unreadable is 0.
fn number(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let t = text.trim();
    if t == "max" {
        u64::MAX
    } else {
        t.parse().unwrap_or(0)
    }
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub(super) fn v1(controllers: &BTreeMap<String, Dir>) -> Stats {
    let dir = |name: &str| controllers.get(name).map(|d| d.path.as_path());
    let mut s = Stats::default();
    if let Some(d) = dir("cpuacct") {
        s.cpu.usage.total = number(&d.join("cpuacct.usage"));
        s.cpu.usage.percpu = text(&d.join("cpuacct.usage_percpu"))
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let stat = text(&d.join("cpuacct.stat"));
        s.cpu.usage.user = keyed(&stat, "user").unwrap_or(0) * NANOS_PER_TICK;
        s.cpu.usage.kernel = keyed(&stat, "system").unwrap_or(0) * NANOS_PER_TICK;
    }
    if let Some(d) = dir("cpu") {
        let stat = text(&d.join("cpu.stat"));
        s.cpu.throttling = Throttling {
            periods: keyed(&stat, "nr_periods").unwrap_or(0),
            throttled_periods: keyed(&stat, "nr_throttled").unwrap_or(0),
            throttled_time: keyed(&stat, "throttled_time").unwrap_or(0),
        };
    }
    if let Some(d) = dir("memory") {
        let entry = |prefix: &str| MemoryEntry {
            limit: number(&d.join(format!("{prefix}.limit_in_bytes"))),
            usage: number(&d.join(format!("{prefix}.usage_in_bytes"))),
            max: number(&d.join(format!("{prefix}.max_usage_in_bytes"))),
            failcnt: number(&d.join(format!("{prefix}.failcnt"))),
        };
        s.memory.usage = entry("memory");
        s.memory.swap = entry("memory.memsw");
        s.memory.raw = keyed_map(&text(&d.join("memory.stat")));
        s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
    }
    if let Some(d) = dir("pids") {
        s.pids = pids(d);
    }
    if let Some(d) = dir("blkio") {
        s.blkio.io_service_bytes_recursive =
            blkio_v1(&d.join("blkio.throttle.io_service_bytes_recursive"));
        s.blkio.io_serviced_recursive = blkio_v1(&d.join("blkio.throttle.io_serviced_recursive"));
    }
    if let Some(d) = dir("hugetlb") {
        s.hugetlb = hugetlb(d, |size| HugetlbStats {
            usage: number(&d.join(format!("hugetlb.{size}.usage_in_bytes"))),
            max: number(&d.join(format!("hugetlb.{size}.max_usage_in_bytes"))),
            failcnt: number(&d.join(format!("hugetlb.{size}.failcnt"))),
        });
    }
    s
}

pub(super) fn v2(d: &Path) -> Stats {
    let mut s = Stats::default();
    let cpu = text(&d.join("cpu.stat"));
    let usec = |key: &str| keyed(&cpu, key).unwrap_or(0).saturating_mul(1000);
    s.cpu.usage.total = usec("usage_usec");
    s.cpu.usage.user = usec("user_usec");
    s.cpu.usage.kernel = usec("system_usec");
    s.cpu.throttling = Throttling {
        periods: keyed(&cpu, "nr_periods").unwrap_or(0),
        throttled_periods: keyed(&cpu, "nr_throttled").unwrap_or(0),
        throttled_time: usec("throttled_usec"),
    };

    let events = text(&d.join("memory.events"));
    s.memory.usage = MemoryEntry {
        limit: number(&d.join("memory.max")),
        usage: number(&d.join("memory.current")),
        max: number(&d.join("memory.peak")),
        failcnt: keyed(&events, "max").unwrap_or(0),
    };
    // runc reports v2 swap as memory+swap so that consumers see the v1 meaning.
    let swap_usage = number(&d.join("memory.swap.current"));
    let swap_limit = number(&d.join("memory.swap.max"));
    s.memory.swap = MemoryEntry {
        limit: swap_limit.saturating_add(s.memory.usage.limit),
        usage: swap_usage.saturating_add(s.memory.usage.usage),
        max: 0,
        failcnt: keyed(&text(&d.join("memory.swap.events")), "max").unwrap_or(0),
    };
    s.memory.raw = keyed_map(&text(&d.join("memory.stat")));
    s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);

    s.pids = pids(d);
    (
        s.blkio.io_service_bytes_recursive,
        s.blkio.io_serviced_recursive,
    ) = io_stat(&text(&d.join("io.stat")));
    s.hugetlb = hugetlb(d, |size| HugetlbStats {
        usage: number(&d.join(format!("hugetlb.{size}.current"))),
        max: 0,
        failcnt: keyed(&text(&d.join(format!("hugetlb.{size}.events"))), "max").unwrap_or(0),
    });
    s
}

fn pids(d: &Path) -> PidsStats {
    let limit = number(&d.join("pids.max"));
    PidsStats {
        current: number(&d.join("pids.current")),
        limit: if limit == u64::MAX { 0 } else { limit },
    }
}

/// Lines "8:0 Read 4096"; the closing "Total N" line has no device and is skipped.
fn blkio_v1(path: &Path) -> Vec<BlkioEntry> {
    text(path)
        .lines()
        .filter_map(|line| {
            let mut w = line.split_whitespace();
            let (major, minor) = w.next()?.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: w.next()?.to_owned(),
                value: w.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// io.stat lines "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0".
fn io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let Some((major, minor)) = w.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in w {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else {
                continue;
            };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_owned(),
                value,
            });
        }
    }
    (bytes, ios)
}

/// One entry per page size, found from the "hugetlb.<size>.…" file names.
fn hugetlb(d: &Path, read: impl Fn(&str) -> HugetlbStats) -> BTreeMap<String, HugetlbStats> {
    let mut sizes: Vec<String> = std::fs::read_dir(d)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.split('.').next()?;
            Some(size.to_owned())
        })
        .collect();
    sizes.sort();
    sizes.dedup();
    sizes
        .into_iter()
        .map(|size| {
            let stats = read(&size);
            (size, stats)
        })
        .collect()
}
