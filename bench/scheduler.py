#!/usr/bin/env python3
"""The measuring side of bench/scheduler: talks to the API server over HTTPS
with the admin kubeconfig's token (standard library only), creates the load,
and times what one watch on all pods (or on the Deployment) sees.

  scheduler.py throughput --kubeconfig F --nodes N --pods P --deployments D [--spread]
  scheduler.py rolling --kubeconfig F --nodes N --replicas R
  scheduler.py report docs/benchmarks.md      (reads $BENCH_WORK/*.json)
"""

import argparse
import base64
import calendar
import http.client
import json
import math
import os
import re
import ssl
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode, urlparse


class Api:
    def __init__(self, kubeconfig):
        text = open(kubeconfig).read()
        field = lambda name: re.search(rf"^\s*{name}:\s*(\S+)\s*$", text, re.M).group(1)
        self.server = urlparse(field("server"))
        ca = base64.b64decode(field("certificate-authority-data"))
        with tempfile.NamedTemporaryFile("wb", delete=False, suffix=".pem") as f:
            f.write(ca)
        self.ctx = ssl.create_default_context(cafile=f.name)
        os.unlink(f.name)
        self.token = field("token")
        self.local = threading.local()

    def conn(self, timeout=120):
        return http.client.HTTPSConnection(
            self.server.hostname, self.server.port, context=self.ctx, timeout=timeout
        )

    def request(self, method, path, body=None, content_type="application/json"):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = self.conn()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        for attempt in range(3):
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                payload = r.read()
                break
            except (http.client.HTTPException, OSError):
                c.close()
                c = self.local.c = self.conn()
                if attempt == 2:
                    raise
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {payload[:300]!r}")
        return json.loads(payload) if payload else None

    def watch(self, path, rv, on_event, stop):
        """Calls on_event(type, object, seen_at) for every event from rv on,
        reopening the stream where it ended, until stop is set."""
        while not stop.is_set():
            c = self.conn(timeout=30)
            q = urlencode({"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true",
                           "timeoutSeconds": "3600"})
            c.request("GET", f"{path}?{q}", headers={"Authorization": f"Bearer {self.token}",
                                                      "Accept": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                raise RuntimeError(f"watch {path}: {r.status} {r.read()[:300]!r}")
            buf = b""
            try:
                while not stop.is_set():
                    chunk = r.read1(1 << 16)
                    if not chunk:
                        break
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    now = time.monotonic()
                    for line in lines:
                        if not line.strip():
                            continue
                        ev = json.loads(line)
                        obj = ev["object"]
                        if ev["type"] == "ERROR":
                            raise RuntimeError(f"watch {path}: {obj}")
                        rv = obj["metadata"].get("resourceVersion", rv)
                        if ev["type"] != "BOOKMARK":
                            on_event(ev["type"], obj, now)
            except TimeoutError:
                pass
            finally:
                c.close()


def rss_kb(pid, field="VmRSS"):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid):
    """User + system CPU seconds the process has used so far."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def processes(spec):
    """`name=pid,name=pid` (what --processes takes) as a dict."""
    return {k: int(v) for k, v in (p.split("=") for p in spec.split(",") if p)}


def wait_nodes(api, n, timeout):
    start = time.monotonic()
    while True:
        nodes = api.request("GET", "/api/v1/nodes")["items"]
        ready = sum(
            1 for node in nodes
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in node.get("status", {}).get("conditions", []))
        )
        if ready >= n:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            sys.exit(f"only {ready} of {n} nodes Ready after {timeout} s")
        time.sleep(1)


def deployment(name, replicas, spread=False, image="bench.local/pause:1"):
    labels = {"app": name}
    pod_spec = {
        "containers": [{
            "name": "c",
            "image": image,
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        }],
        "terminationGracePeriodSeconds": 0,
    }
    if spread:
        pod_spec["topologySpreadConstraints"] = [{
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": labels},
        }]
        pod_spec["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {"labelSelector": {"matchLabels": labels},
                                "topologyKey": "kubernetes.io/hostname"},
        }]}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1)]


def rfc3339(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ")) if s else None


def server_side(api):
    """The same measures from the server's own stamps (whole seconds): each
    pod's creationTimestamp and its Ready condition's lastTransitionTime, so
    a watch that falls behind cannot inflate them."""
    spans = []
    created_all, ready_all = [], []
    for pod in api.request("GET", "/api/v1/pods")["items"]:
        created = rfc3339(pod["metadata"].get("creationTimestamp"))
        ready = next((rfc3339(c.get("lastTransitionTime")) for c in pod.get("status", {}).get("conditions", [])
                      if c["type"] == "Ready" and c["status"] == "True"), None)
        if created is None or ready is None:
            continue
        created_all.append(created)
        ready_all.append(ready)
        spans.append(ready - created)
    if not spans:
        return {}
    whole = max(ready_all) - min(created_all) + 1
    return {
        "server_seconds": whole,
        "server_pods_per_s": round(len(spans) / whole, 1),
        "server_p50_s": pct(spans, 50),
        "server_p99_s": pct(spans, 99),
    }


def throughput(a):
    api = Api(a.kubeconfig)
    nodes_s = wait_nodes(api, a.nodes, a.timeout)
    rss_before = rss_kb(a.server_pid)
    lock = threading.Lock()
    first, running = {}, {}
    done = threading.Event()

    def on_pod(kind, pod, now):
        uid = pod["metadata"]["uid"]
        with lock:
            first.setdefault(uid, now)
            if pod.get("status", {}).get("phase") == "Running" and uid not in running:
                running[uid] = now
                if len(running) >= a.pods:
                    done.set()

    rv = api.request("GET", "/api/v1/pods?limit=1")["metadata"]["resourceVersion"]
    stop = threading.Event()
    watcher = threading.Thread(target=api.watch, args=("/api/v1/pods", rv, on_pod, stop), daemon=True)
    watcher.start()
    procs = processes(a.processes)
    cpu_before = {k: cpu_s(p) for k, p in procs.items()}
    per = a.pods // a.deployments
    sizes = [per + (1 if i < a.pods % a.deployments else 0) for i in range(a.deployments)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: api.request("POST", "/apis/apps/v1/namespaces/default/deployments",
                                            deployment(f"bench-{i}", sizes[i], a.spread)),
                      range(a.deployments)))
    created = time.monotonic() - t0
    if not done.wait(a.timeout):
        with lock:
            sys.exit(f"only {len(running)} of {a.pods} pods Running after {a.timeout} s "
                     f"({len(first)} seen)")
    stop.set()
    with lock:
        end = max(running.values())
        latencies = [running[u] - first[u] for u in running]
    total = end - t0
    per_process = {k: {"cpu_s": round(cpu_s(p) - cpu_before[k], 1),
                       "rss_mib": round(rss_kb(p) / 1024, 1)} for k, p in procs.items()}
    server = server_side(api)
    json.dump({
        "scenario": "spread" if a.spread else "plain",
        "nodes": a.nodes, "pods": a.pods, "deployments": a.deployments,
        "nodes_ready_s": round(nodes_s, 1),
        "deployments_created_s": round(created, 3),
        "seconds": round(total, 2),
        "pods_per_s": round(a.pods / total, 1),
        "p50_s": round(pct(latencies, 50), 3),
        "p99_s": round(pct(latencies, 99), 3),
        "max_s": round(max(latencies), 3),
        **server,
        "server_rss_mib_before": round(rss_before / 1024, 1),
        "server_rss_mib": round(rss_kb(a.server_pid) / 1024, 1),
        "server_hwm_mib": round(rss_kb(a.server_pid, "VmHWM") / 1024, 1),
        "sim_rss_mib": round(rss_kb(a.sim_pid) / 1024, 1),
        "processes": per_process,
    }, sys.stdout)
    print()


def rolling(a):
    api = Api(a.kubeconfig)
    wait_nodes(api, a.nodes, a.timeout)
    name, r = "rolling", a.replicas
    base = "/apis/apps/v1/namespaces/default/deployments"
    api.request("POST", base, deployment(name, r))
    start = time.monotonic()
    while True:
        st = api.request("GET", f"{base}/{name}").get("status", {})
        if st.get("availableReplicas", 0) == r and st.get("updatedReplicas", 0) == r:
            break
        if time.monotonic() - start > a.timeout:
            sys.exit(f"the first rollout did not complete: {st}")
        time.sleep(0.5)
    first_s = time.monotonic() - start
    # From here on, every Ready pod of the Deployment (not being deleted),
    # counted from the pods themselves, not from the controller's status.
    lock = threading.Lock()
    ready = set()
    fewest = [r]

    def is_ready(pod):
        return (pod["metadata"].get("labels", {}).get("app") == name
                and not pod["metadata"].get("deletionTimestamp")
                and any(c["type"] == "Ready" and c["status"] == "True"
                        for c in pod.get("status", {}).get("conditions", [])))

    def on_pod(kind, pod, now):
        uid = pod["metadata"]["uid"]
        with lock:
            if kind != "DELETED" and is_ready(pod):
                ready.add(uid)
            else:
                ready.discard(uid)
            if started.is_set():
                fewest[0] = min(fewest[0], len(ready))

    started = threading.Event()
    pods = api.request("GET", "/api/v1/namespaces/default/pods")
    for p in pods["items"]:
        if is_ready(p):
            ready.add(p["metadata"]["uid"])
    stop = threading.Event()
    threading.Thread(target=api.watch, args=("/api/v1/namespaces/default/pods",
                                             pods["metadata"]["resourceVersion"], on_pod, stop),
                     daemon=True).start()
    time.sleep(1)
    started.set()
    t0 = time.monotonic()
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "bench.local/pause:2"}]}}}}
    api.request("PATCH", f"{base}/{name}", patch, "application/strategic-merge-patch+json")
    while True:
        d = api.request("GET", f"{base}/{name}")
        st = d.get("status", {})
        if (st.get("observedGeneration", 0) >= d["metadata"]["generation"]
                and st.get("updatedReplicas") == r and st.get("availableReplicas") == r
                and st.get("replicas") == r):
            break
        if time.monotonic() - t0 > a.timeout:
            sys.exit(f"the rolling update did not complete: {st}")
        time.sleep(0.2)
    total = time.monotonic() - t0
    stop.set()
    max_unavailable = math.floor(r * 0.25)
    json.dump({
        "replicas": r, "nodes": a.nodes,
        "first_rollout_s": round(first_s, 2),
        "rolling_update_s": round(total, 2),
        "fewest_ready": fewest[0],
        "allowed_fewest": r - max_unavailable,
        "server_rss_mib": round(rss_kb(a.server_pid) / 1024, 1),
    }, sys.stdout)
    print()


def report(a):
    env = os.environ
    work = env["BENCH_WORK"]
    plain = json.load(open(f"{work}/plain.json"))
    spread = json.load(open(f"{work}/spread.json"))
    roll = json.load(open(f"{work}/rolling.json"))
    split = json.load(open(f"{work}/split.json")) if os.path.exists(f"{work}/split.json") else None
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) / 1048576
    out = []
    w = out.append
    w("<!-- bench/scheduler:start -->")
    w("## Scheduler and controllers at scale (bench/scheduler)")
    w("")
    w(f"Measured {env['BENCH_DATE']} with `bench/scheduler` ({env['BENCH_BUILD']}): one `bosun server` "
      "(API server, scheduler and controllers in one process, embedded store) and one "
      f"`bosun sim-nodes --count {plain['nodes']}`, fresh for each scenario. Pods come from "
      f"{plain['deployments']} Deployments; \"per pod\" is from the pod's first appearance on a watch "
      "of all pods to its first Running there. No kube-scheduler or k3s can run on this machine, so "
      "the comparison is with the published anchors the issue names.")
    w("")
    w("| measure | bosun | goal (issue 6) | anchor |")
    w("|---|---|---|---|")
    w(f"| {plain['pods']} pods on {plain['nodes']} nodes, create to all Running | "
      f"{plain['seconds']} s = **{plain['pods_per_s']} pods/s** | ≥ 3,000 pods/s | "
      f"kube-scheduler CI threshold 270 pods/s at 5,000 nodes ({plain['pods_per_s'] / 270:.1f}×) |")
    w(f"| per pod, create to Running, p50 / p99 / max | {plain['p50_s']} s / {plain['p99_s']} s / "
      f"{plain['max_s']} s | p99 ≤ 2 s | pod-startup SLO p99 ≤ 5 s |")
    if "server_seconds" in plain:
        w(f"| the same from the server's own stamps (whole seconds): all Ready, per pod p50 / p99 | "
          f"{plain['server_seconds']} s = {plain['server_pods_per_s']} pods/s; "
          f"{plain['server_p50_s']} s / {plain['server_p99_s']} s | | |")
    w(f"| same with topology spread + anti-affinity | {spread['seconds']} s = "
      f"**{spread['pods_per_s']} pods/s**; p99 {spread['p99_s']} s | ≥ 1,000 pods/s | |")
    w(f"| rolling update of {roll['replicas']} replicas (maxSurge 25 %, maxUnavailable 25 %) | "
      f"{roll['rolling_update_s']} s; fewest Ready pods seen {roll['fewest_ready']} "
      f"(allowed {roll['allowed_fewest']}) | never fewer than allowed | |")
    w(f"| server RSS after {plain['pods']} pods and {plain['nodes']} nodes | {plain['server_rss_mib']} MiB "
      f"(peak {plain['server_hwm_mib']} MiB) | | |")
    w(f"| sim-nodes RSS with {plain['nodes']} nodes and {plain['pods']} pods | {plain['sim_rss_mib']} MiB | | |")
    if split:
        w("")
        w(f"Where the time and memory go: the plain scenario again with each component as its own "
          f"process (`bosun server --components none`, and `bosun server --kubeconfig … --components "
          f"scheduler` / `controllers`): {split['seconds']} s = {split['pods_per_s']} pods/s; CPU seconds "
          f"used during the run and RSS at the end, per process:")
        w("")
        w("| process | CPU s | RSS MiB |")
        w("|---|---|---|")
        for name, v in split["processes"].items():
            w(f"| {name} | {v['cpu_s']} | {v['rss_mib']} |")
    w("")
    w(f"Machine: {cpu}, {os.cpu_count()} cores, {mem:.1f} GiB, Linux {os.uname().release}; "
      f"{env['BENCH_BOSUN']}; load average at the end {env['BENCH_LOAD']}.")
    w("")
    w("Raw results:")
    w("")
    w("```")
    for r in (plain, spread, roll, split):
        if r:
            w(json.dumps(r))
    w("```")
    w("<!-- bench/scheduler:end -->")
    block = "\n".join(out)
    path = a.doc
    text = open(path).read() if os.path.exists(path) else ""
    if "<!-- bench/scheduler:start -->" in text:
        text = re.sub(r"<!-- bench/scheduler:start -->.*?<!-- bench/scheduler:end -->",
                      lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    open(path, "w").write(text)
    print(block)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("throughput", "rolling"):
        s = sub.add_parser(name)
        s.add_argument("--kubeconfig", required=True)
        s.add_argument("--nodes", type=int, required=True)
        s.add_argument("--timeout", type=int, default=900)
        s.add_argument("--server-pid", type=int, default=0)
        s.add_argument("--sim-pid", type=int, default=0)
        s.add_argument("--processes", default="",
                       help="name=pid,... whose CPU time and RSS to report")
    t = sub.choices["throughput"]
    t.add_argument("--pods", type=int, required=True)
    t.add_argument("--deployments", type=int, required=True)
    t.add_argument("--spread", action="store_true")
    sub.choices["rolling"].add_argument("--replicas", type=int, required=True)
    r = sub.add_parser("report")
    r.add_argument("doc")
    a = p.parse_args()
    {"throughput": throughput, "rolling": rolling, "report": report}[a.cmd](a)


if __name__ == "__main__":
    main()
