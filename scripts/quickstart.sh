#!/usr/bin/env bash
# Quick start: install what bosun needs, build it, and run a busybox container
# with bosun's OCI runtime, showing from inside that it is isolated.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build-release.sh
install -m 0755 target/dist/bosun /usr/local/bin/bosun
ln -sf bosun /usr/local/bin/bosun-runc

work=$(mktemp -d /tmp/bosun-quickstart.XXXXXX)
# The container runs as uid 100000 on the host: it must be able to reach its rootfs.
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/"
for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -sf busybox "$work/rootfs/bin/$applet"; done
mkdir -p "$work/rootfs/"{proc,sys,dev,tmp,etc}
(cd "$work" && bosun-runc spec)
# Run a script instead of an interactive shell, as uid 0 mapped to 100000 outside.
python3 - "$work/config.json" <<'PY'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["process"]["terminal"] = False
c["hostname"] = "bosun-demo"
c["process"]["args"] = ["sh", "-c", """
echo "pid inside:        $$"
echo "hostname:          $(hostname)"
echo "network devices:   $(ls /sys/class/net)"
echo "processes visible: $(ls -d /proc/[0-9]* | wc -l)"
echo "uid inside:        $(id -u) (uid_map: $(cat /proc/self/uid_map | tr -s ' '))"
echo "effective caps:    $(grep CapEff /proc/self/status | cut -f2)"
mknod /tmp/x c 1 3 2>/dev/null && echo "mknod:             allowed" || echo "mknod:             denied"
"""]
c["linux"]["namespaces"].append({"type": "user"})
c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
c["linux"]["resources"]["memory"] = {"limit": 64 * 1024 * 1024}
c["linux"]["resources"]["pids"] = {"limit": 64}
json.dump(c, open(path, "w"), indent=2)
PY
echo "== bosun-runc run (busybox, all namespaces, 64 MiB, 64 pids)"
bosun-runc --root "$work/state" run --bundle "$work" demo
echo "== on the host, for comparison: pid $$, hostname $(hostname), $(ls /sys/class/net | wc -w) network devices"
