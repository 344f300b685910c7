#!/usr/bin/env bash
# Benchmark (not a test): boots the VM once and compares the ipvs crate with ipvsadm on the same
# rules — cold apply vs `ipvsadm -R`, full dump vs `ipvsadm -Sn` — each in a fresh namespace.
# Usage: tests/bench.sh [SERVICES] [REALS] [ROUNDS]   (default 1000 10 3)
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/vm/lib.sh
vm_install_deps
vm_fetch_kernel
cargo build --locked --release -p lvsd-ipvs --example bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/payload"
cp target/release/examples/bench "$work/payload/bench"
printf '#!/bin/sh\n./bench %s %s %s\n' "${1:-1000}" "${2:-10}" "${3:-3}" >"$work/payload/run"
chmod 755 "$work/payload" "$work/payload/run"
vm_build_initramfs "$work/payload" "$work/initrd.gz"
echo "kernel $KVER under qemu TCG, $(nproc) host cores"
vm_boot "$work/initrd.gz" "$work/vm.log" | grep -E '^(objects|  |cold|full|Error|thread)' || true
grep -q 'LVSD-VM-EXIT=0' "$work/vm.log"
