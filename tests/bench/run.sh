#!/usr/bin/env bash
# The baseline benchmark of lvsd itself (not a test), the start of the performance-at-scale work:
# boots the VM once and runs tests/bench/lvsd-bench.sh with a release build. It prints one
# table: cold apply against `ipvsadm -R`, no-op apply (and its kernel writes) against
# `ipvsadm -Sn`, the daemon's latency and writes for one weight change and one added service,
# then its peak RSS and idle CPU at the largest size.
# Usage: tests/bench/run.sh ["100 1000 10000"] [REALS]
# The README and BENCHMARKS.md describe what it measures and the last results.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/vm/lib.sh
vm_install_deps
vm_fetch_kernel
cargo build --locked --release -p lvsd
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/payload"
cp target/release/lvsd tests/bench/lvsd-bench.sh tests/lab/seed-lab.sh "$work/payload/"
printf '#!/bin/sh\nSIZES="%s" REALS=%s sh ./lvsd-bench.sh\n' "${1:-100 1000 10000}" "${2:-10}" >"$work/payload/run"
chmod 755 "$work/payload" "$work/payload/run"
vm_build_initramfs "$work/payload" "$work/initrd.gz"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "host: $cpu, $(nproc) cores; $(qemu-system-x86_64 --version | head -n 1)"
echo "guest: Debian kernel $KVER under TCG (software emulation), 2 vCPUs, ${VM_MEM:-2048M} memory"
vm_boot "$work/initrd.gz" "$work/vm.log" >/dev/null || true
sed -n '/^services /,/^daemon at/p' "$work/vm.log"
grep -q 'LVSD-VM-EXIT=0' "$work/vm.log"
