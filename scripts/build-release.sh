#!/usr/bin/env bash
# Build the release binary as one static executable (glibc and libseccomp linked
# in) at target/dist/bosun. Static linking skips the dynamic loader and shared
# library mappings, which matter for a runtime process that lives a few ms:
# it starts faster and its peak RSS is about 1 MiB lower.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=$(rustc -vV | sed -n 's/^host: //p')
libdir=$(dirname "$(find /usr/lib /usr/lib64 -name libseccomp.a 2>/dev/null | head -1)")
if [[ -z $libdir || $libdir == . ]]; then
  echo "libseccomp.a not found: install libseccomp-dev" >&2
  exit 1
fi
# --target keeps the static flag away from build scripts and proc macros.
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$libdir \
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked -p bosun --target "$triple"
mkdir -p target/dist
cp "target/$triple/release/bosun" target/dist/bosun.tmp
mv target/dist/bosun.tmp target/dist/bosun
echo "target/dist/bosun"
