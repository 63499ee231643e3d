#!/usr/bin/env bash
# The whole test suite: layer rule, formatting, lints, then every test (root
# tests included: run as root). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) != 0 ]]; then
  echo "the suite includes root tests (namespaces, cgroups, mounts): run it as root" >&2
  exit 1
fi
cargo xtask layers
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
