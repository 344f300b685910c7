#!/usr/bin/env bash
# The lvsd benchmark (not a test): boots the VM once and runs tests/bench/lvsd-bench.sh with
# release builds of lvsd and of ipvs-raw (the ipvs crate alone: the kernel floors and the
# probes that time an edit from outside the daemon). Prints each part's detail, then one table
# of every target of the performance work, met or missed, against the raw floors, ipvsadm and
# keepalived measured in the same boot. BENCHMARKS.md holds the last run and what it means.
# Usage: tests/bench/run.sh
# Sizes (environment): SIZES ("1000 10000"), REALS (10), KA_SIZE (3000), HC_SIZE (1000),
# BIG (50000), BIG_REALS (4).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/vm/lib.sh
vm_install_deps
vm_fetch_kernel
# Two builds: a target flag (--example) limits a build to that target, so one command would
# leave lvsd's binary as it was.
cargo build --locked --release -p lvsd --bin lvsd
cargo build --locked --release -p lvsd-ipvs --example ipvs-raw
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/payload"
cp target/release/lvsd target/release/examples/ipvs-raw tests/bench/lvsd-bench.sh tests/lab/seed-lab.sh "$work/payload/"
{
  echo '#!/bin/sh'
  for v in SIZES REALS KA_SIZE HC_SIZE BIG BIG_REALS; do
    if [ -n "${!v:-}" ]; then printf '%s="%s"; export %s\n' "$v" "${!v}" "$v"; fi
  done
  echo 'sh ./lvsd-bench.sh'
} >"$work/payload/run"
chmod 755 "$work/payload" "$work/payload/run"
vm_build_initramfs "$work/payload" "$work/initrd.gz"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "host: $cpu, $(nproc) cores; $(qemu-system-x86_64 --version | head -n 1)"
echo "guest: Debian kernel $KVER under TCG (software emulation), 2 vCPUs, $VM_MEM memory"
VM_TIMEOUT=${LVSD_VM_TIMEOUT:-3600} \
  vm_boot "$work/initrd.gz" "$work/vm.log" >/dev/null || true
sed -n '/^== kernel floors/,/^test result/p' "$work/vm.log" | grep -a -v '^\[ *[0-9.]*\]'
grep -q 'LVSD-VM-EXIT=0' "$work/vm.log"
