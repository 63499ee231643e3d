#!/usr/bin/env bash
# System packages bosun builds and tests with (Debian 12). Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  # build: seccomp filters are compiled through libseccomp
  build-essential pkg-config libseccomp-dev
  # test fixtures and peers driven by the end-to-end tests
  busybox-static runc crun podman skopeo umoci iproute2 nftables
  # the builder's tests serve an ADD URL with python3's http.server
  python3
  # the API server's tests drive it with the Python kubernetes client (run by /usr/bin/python3)
  python3-kubernetes
  # the engine's tests drive it with the Docker SDK for Python, installed from PyPI into a venv
  python3-venv
  # registry peers (distribution 2.8) and the TLS test's certificate
  docker-registry openssl
  # the store's etcd v3 backend: its conformance, HA and benchmark runs start etcd
  etcd-server
  # benchmarks
  hyperfine time strace
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update
  apt-get install -y "${missing[@]}"
fi
# The Docker SDK for Python (PyPI's `docker`), for tests/docker_py.rs.
if [ ! -x /opt/bosun-py/bin/python ] || ! /opt/bosun-py/bin/python -c 'import docker' 2>/dev/null; then
  /usr/bin/python3 -m venv /opt/bosun-py
  /opt/bosun-py/bin/pip install --quiet 'docker>=7,<8'
fi
# kubectl 1.20 (Debian's kubernetes-client) for tests/kubectl.rs: installing it would
# conflict with the kubectl on PATH, so it is unpacked into a directory of its own.
if [ ! -x /opt/kubectl-1.20/usr/bin/kubectl ]; then
  tmp=$(mktemp -d) && chmod 755 "$tmp"
  (cd "$tmp" && apt-get download kubernetes-client) || { apt-get update && (cd "$tmp" && apt-get download kubernetes-client); }
  dpkg -x "$tmp"/kubernetes-client_*.deb /opt/kubectl-1.20
  rm -rf "$tmp"
fi
if ! command -v docker >/dev/null; then
  echo "the docker CLI is not on PATH: the engine's tests drive bosun with it" >&2
  exit 1
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain >= 1.90 (rustup) first" >&2
  exit 1
fi
# cargo-fuzz for scripts/fuzz.sh (from crates.io). libFuzzer wants a nightly
# compiler; without one fuzz.sh builds on stable (RUSTC_BOOTSTRAP=1) without a sanitizer.
if ! command -v cargo-fuzz >/dev/null; then
  cargo install --locked cargo-fuzz
fi
