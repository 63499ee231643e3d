#!/usr/bin/env bash
# Quick start: install what bosun needs, build it, run a busybox container with
# bosun's OCI runtime (showing from inside that it is isolated), then start
# `bosun engine` and drive it with the docker CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build-release.sh
install -m 0755 target/dist/bosun /usr/local/bin/bosun
ln -sf bosun /usr/local/bin/bosun-runc

work=$(mktemp -d /tmp/bosun-quickstart.XXXXXX)
# The container runs as uid 100000 on the host: it must be able to reach its rootfs.
chmod 755 "$work"
engine_pid=
cleanup() {
  if [[ -n $engine_pid ]]; then
    DOCKER_HOST="unix://$work/engine.sock" docker rm -f qs-web >/dev/null 2>&1 || true
    kill "$engine_pid" 2>/dev/null && wait "$engine_pid" 2>/dev/null || true
    ip link del bosunqs0 2>/dev/null || true
    nft delete table ip bosunqs 2>/dev/null || true
    rm -rf /run/bosun-quickstart
  fi
  rm -rf "$work"
}
trap cleanup EXIT
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

echo
echo "== bosun engine: the docker CLI against bosun (its own socket, bridge and data dir here)"
mkdir -p "$work/rootfs/var/www"
echo "hello from a bosun container" >"$work/rootfs/var/www/index.html"
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
bosun image import "$work/busybox.tar" busybox:latest --data-dir "$work/data" >/dev/null
bosun engine --data-dir "$work/data" -H "unix://$work/engine.sock" --exec-root /run/bosun-quickstart \
  --bridge bosunqs0 --subnet 10.86.0.0/24 --nft-table bosunqs >"$work/engine.log" 2>&1 &
engine_pid=$!
export DOCKER_HOST="unix://$work/engine.sock"
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
echo "\$ docker run --rm busybox echo hello"
docker run --rm busybox echo hello
echo "\$ docker run -d --name qs-web -p 18088:80 busybox httpd -f -p 80 -h /var/www"
docker run -d --name qs-web -p 18088:80 busybox httpd -f -p 80 -h /var/www >/dev/null
docker ps --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'
for _ in $(seq 50); do page=$(python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:18088/").read().decode().strip())' 2>/dev/null) && break; sleep 0.1; done
echo "GET http://127.0.0.1:18088/ -> ${page:-nothing}"
