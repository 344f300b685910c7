#!/usr/bin/env bash
# The lvsd benchmark (not a test): boots the VM once and runs tests/bench/lvsd-bench.sh with
# release builds of lvsd and of ipvs-raw (the ipvs crate alone: the kernel floors and the
# probes that time an edit from outside the daemon). Prints each part's detail, then one table
# of every target of the performance work, met or missed, against the raw floors, ipvsadm and
# keepalived measured in the same boot. BENCHMARKS.md holds the last run and what it means.
# Usage: tests/bench/run.sh [--small]
# Sizes (environment): SIZES ("1000 10000"), REALS (10), KA_SIZE (3000), HC_RATE (500),
# HC_RATES ("1000 2000 3000"), HC_SHARED ("1000 100": services over distinct reals),
# BIG (100000), BIG_REALS (4), WARM (20) and WINDOW (60) seconds of the steady-state windows;
# PARTS ("sizes keepalived health big"): the parts to run.
# `--small`: every part at a small size with short windows and the debug build (minutes, not
# well over an hour): what the test suite runs, to keep the benchmark working.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/vm/lib.sh
profile=release
if [ "${1:-}" = "--small" ]; then
  profile=debug
  export SIZES="${SIZES:-100 300}" REALS="${REALS:-4}" KA_SIZE="${KA_SIZE:-100}" \
    HC_RATE="${HC_RATE:-40}" HC_RATES="${HC_RATES:-80}" HC_SHARED="${HC_SHARED:-50 10}" \
    BIG="${BIG:-1000}" WARM="${WARM:-5}" WINDOW="${WINDOW:-10}" IDLE_WAIT="${IDLE_WAIT:-5}" \
    IDLE_WINDOW="${IDLE_WINDOW:-10}"
fi
vm_install_deps
vm_fetch_kernel
# Two builds: a target flag (--example) limits a build to that target, so one command would
# leave lvsd's binary as it was.
flag=(--release); [ "$profile" = debug ] && flag=()
cargo build --locked "${flag[@]}" -p lvsd --bin lvsd
cargo build --locked "${flag[@]}" -p lvsd-ipvs --example ipvs-raw
t=${CARGO_TARGET_DIR:-target}/$profile
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/payload"
cp "$t/lvsd" "$t/examples/ipvs-raw" tests/bench/lvsd-bench.sh tests/lab/seed-lab.sh "$work/payload/"
{
  echo '#!/bin/sh'
  for v in SIZES REALS KA_SIZE HC_RATE HC_RATES HC_SHARED BIG BIG_REALS WARM WINDOW IDLE_WAIT IDLE_WINDOW PARTS; do
    if [ -n "${!v:-}" ]; then printf '%s="%s"; export %s\n' "$v" "${!v}" "$v"; fi
  done
  echo 'sh ./lvsd-bench.sh'
} >"$work/payload/run"
chmod 755 "$work/payload" "$work/payload/run"
vm_build_initramfs "$work/payload" "$work/initrd.gz"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "host: $cpu, $(nproc) cores; $(qemu-system-x86_64 --version | head -n 1)"
echo "guest: Debian kernel $KVER under TCG (software emulation), 2 vCPUs, $VM_MEM memory"
timeout=7200; [ "$profile" = debug ] && timeout=1200
VM_TIMEOUT=${LVSD_VM_TIMEOUT:-$timeout} \
  vm_boot "$work/initrd.gz" "$work/vm.log" >/dev/null || true
sed -n '/^== /,/^test result/p' "$work/vm.log" | grep -a -v '^\[ *[0-9.]*\]'
if ! grep -q 'LVSD-VM-EXIT=0' "$work/vm.log" || ! grep -q '^test result: ok. 0 passed; 0 failed; bench' "$work/vm.log"; then
  echo "the benchmark did not finish; the VM's last words:"
  tail -n 60 "$work/vm.log"
  exit 1
fi
