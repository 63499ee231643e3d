//! `/metrics` in Prometheus' text format: requests by verb, resource and code,
//! their latency by verb, and the watches open now. Kept by hand (a few
//! counters behind one mutex) rather than with a metrics crate: the set is
//! small and fixed.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default)]
struct Latency {
    /// Observations at or below each bucket's bound (not cumulative here).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, String, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, Latency>>,
    watches: AtomicI64,
    watch_events: AtomicU64,
}

/// A watch counted as open until dropped.
#[derive(Debug)]
pub(crate) struct OpenWatch(Arc<Metrics>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.watches.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub(crate) fn request(&self, verb: &'static str, resource: &str, code: u16, took: Duration) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((verb, resource.to_owned(), code))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let mut latency = self.latency.lock().expect("metrics lock");
        let l = latency.entry(verb).or_default();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            l.buckets[i] += 1;
        }
        l.count += 1;
        l.sum += secs;
    }

    /// Counts a watch as open; `None` once `limit` are.
    pub(crate) fn open_watch(self: &Arc<Self>, limit: i64) -> Option<OpenWatch> {
        let now = self.watches.fetch_add(1, Ordering::Relaxed);
        let guard = OpenWatch(self.clone());
        (now < limit).then_some(guard)
    }

    pub(crate) fn watch_event(&self) {
        self.watch_events.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP apiserver_request_total Requests, by verb, resource and HTTP code.\n\
             # TYPE apiserver_request_total counter\n",
        );
        for ((verb, resource, code), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP apiserver_request_duration_seconds Time to answer, by verb (watches: to open).\n\
             # TYPE apiserver_request_duration_seconds histogram\n",
        );
        for (verb, l) in self.latency.lock().expect("metrics lock").iter() {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(l.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",le=\"+Inf\"}} {}\n\
                 apiserver_request_duration_seconds_sum{{verb=\"{verb}\"}} {}\n\
                 apiserver_request_duration_seconds_count{{verb=\"{verb}\"}} {}",
                l.count, l.sum, l.count
            );
        }
        let _ = write!(
            out,
            "# HELP apiserver_registered_watchers Watches open now.\n\
             # TYPE apiserver_registered_watchers gauge\n\
             apiserver_registered_watchers {}\n\
             # HELP apiserver_watch_events_total Events sent to watchers.\n\
             # TYPE apiserver_watch_events_total counter\n\
             apiserver_watch_events_total {}\n",
            self.watches.load(Ordering::Relaxed).max(0),
            self.watch_events.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Arc::new(Metrics::default());
        m.request("GET", "pods", 200, Duration::from_millis(3));
        m.request("GET", "pods", 200, Duration::from_millis(30));
        m.request("POST", "configmaps", 409, Duration::from_secs(9));
        let w = m.open_watch(1).unwrap();
        assert!(m.open_watch(1).is_none(), "the limit holds");
        m.watch_event();
        let text = m.render();
        for line in [
            "apiserver_request_total{verb=\"GET\",resource=\"pods\",code=\"200\"} 2",
            "apiserver_request_total{verb=\"POST\",resource=\"configmaps\",code=\"409\"} 1",
            "apiserver_request_duration_seconds_bucket{verb=\"GET\",le=\"0.005\"} 1",
            "apiserver_request_duration_seconds_bucket{verb=\"GET\",le=\"0.05\"} 2",
            "apiserver_request_duration_seconds_bucket{verb=\"POST\",le=\"5\"} 0",
            "apiserver_request_duration_seconds_bucket{verb=\"POST\",le=\"+Inf\"} 1",
            "apiserver_request_duration_seconds_count{verb=\"GET\"} 2",
            "apiserver_registered_watchers 1",
            "apiserver_watch_events_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        drop(w);
        assert!(m.render().contains("apiserver_registered_watchers 0\n"));
    }
}
