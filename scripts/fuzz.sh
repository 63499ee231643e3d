#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ and runs each for SECONDS (default 60),
# starting from its committed seed corpus (fuzz/corpus/<target>, never
# written to). Prints, per target, libFuzzer's last status line: executions
# (#N), coverage (cov: edges, ft: features), corpus size and speed. Exits
# non-zero if any target crashes, hangs or leaks; the input that did it is
# kept in fuzz/artifacts/<target>/ (reproduce with
# `cargo +nightly fuzz run <target> <file>` in fuzz/).
#
# libFuzzer needs a nightly compiler for its sanitizer flags. With a nightly
# toolchain installed (rustup) the targets build with AddressSanitizer; without
# one the stable compiler is allowed nightly flags (RUSTC_BOOTSTRAP=1) and the
# targets build without a sanitizer (Rust panics, overflow checks and the
# targets' own assertions still fail a run; memory errors in C code would not).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
jobs=${FUZZ_JOBS:-$(nproc)}

if ! command -v cargo-fuzz >/dev/null; then
  echo "cargo-fuzz is not installed: cargo install --locked cargo-fuzz" >&2
  exit 1
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  sanitizer=address
  echo "fuzz: nightly toolchain ($(rustup run nightly rustc --version)), AddressSanitizer"
else
  toolchain=()
  sanitizer=none
  export RUSTC_BOOTSTRAP=1
  echo "fuzz: no nightly toolchain; stable $(rustc --version | cut -d' ' -f2) with RUSTC_BOOTSTRAP=1, no sanitizer"
fi
build=(cargo "${toolchain[@]}" fuzz build -O --sanitizer "$sanitizer" --codegen-units 16)
start=$(date +%s)
"${build[@]}"
echo "fuzz: built in $(($(date +%s) - start)) s"

mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p artifacts

run_one() {
  local t=$1
  mkdir -p "$work/corpus/$t" "corpus/$t" "artifacts/$t"
  # The first corpus directory receives what the run finds; the committed
  # seeds are read only.
  local rc=0
  cargo "${toolchain[@]}" fuzz run -O --sanitizer "$sanitizer" --codegen-units 16 "$t" \
    "$work/corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
    >"$work/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$work/$t.rc"
}

# Up to $jobs targets at a time; each records its own exit status.
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait
declare -A status_of
failed=0
for t in "${targets[@]}"; do
  if [[ $(cat "$work/$t.rc" 2>/dev/null) == 0 ]]; then
    status_of[$t]=ok
  else
    status_of[$t]=FAILED
    failed=1
  fi
done

printf '%-16s %-6s %s\n' target result "last libFuzzer status line"
for t in "${targets[@]}"; do
  line=$(grep -aE '^#[0-9]+' "$work/$t.log" | tail -1 || true)
  printf '%-16s %-6s %s\n' "$t" "${status_of[$t]}" "${line:-no status line}"
done
for t in "${targets[@]}"; do
  if [[ ${status_of[$t]} != ok ]]; then
    echo "---- $t: last lines of its log" >&2
    tail -40 "$work/$t.log" >&2
  fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, $(($(date +%s) - start)) s in all"
exit "$failed"
