#!/usr/bin/env bash
# Runs every test of lvsd: formatting, lints, unit/property/golden tests on the host, then the
# kernel tests inside a VM with a stock Debian kernel (tests/vm/lib.sh). Installs what it needs.
# Ends with one summary line, "summary: N passed, M failed"; exits non-zero on any failure.
# A kernel test that cannot run (no VM, no boot) counts as failed, never as skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/vm/lib.sh
source tests/vm/lib.sh
set +e
export CARGO_TERM_COLOR=never
passed=0 failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

note() { printf '\n==> %s\n' "$*"; }
check() { # name, command...: a check that is not a test runner counts as one test
  local name=$1; shift
  note "$name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
tally() { # file: adds up cargo's "test result:" lines
  local p f
  p=$(grep -a -o 'test result: [A-Za-z]*\. [0-9]* passed; [0-9]* failed' "$1" | awk '{s+=$4} END {print s+0}')
  f=$(grep -a -o 'test result: [A-Za-z]*\. [0-9]* passed; [0-9]* failed' "$1" | awk '{s+=$6} END {print s+0}')
  passed=$((passed + p)); failed=$((failed + f))
  echo "$p passed, $f failed in $(basename "$1" .log)"
}
finish() {
  echo
  echo "summary: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

note "host tools and the test kernel"
if ! vm_install_deps || ! vm_fetch_kernel; then
  echo "FAILED: could not install the VM's tools or fetch the kernel"
  failed=$((failed + 1)); finish
fi

check "cargo fmt --check" cargo fmt --all -- --check
check "cargo clippy (all targets, all features, -D warnings)" \
  cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
check "the pure crates (plan, config) build without tokio, nix or netlink (socket or codecs)" sh -c \
  'tree=$(cargo tree --locked -p lvsd-plan -p lvsd-config -e normal) &&
   ! printf "%s\n" "$tree" |
     grep -E " (tokio|nix|netlink-sys|netlink-packet-core|netlink-packet-generic) v"'

note "unit, property and golden-byte tests (host)"
cargo test --locked --workspace 2>&1 | tee "$work/host.log"
host_rc=${PIPESTATUS[0]}
tally "$work/host.log"
if [ "$host_rc" -ne 0 ] && ! grep -q 'test result: FAILED' "$work/host.log"; then
  failed=$((failed + 1)); echo "FAILED: cargo test did not build or run"
fi

# The engine against a simulated kernel, host and disk: seeded schedules of edits, drift,
# faults and kills (crates/lvsd/src/sim). The host tests above ran 300 schedules; these are
# 3,000 more, from a fixed base so that a commit's verdict does not change between runs. A
# failure prints its seed; LVSD_SIM_SEED=<seed> replays it with its trace.
note "the engine's simulation: 3,000 seeded schedules"
LVSD_SIM_SCHEDULES=3000 LVSD_SIM_BASE=100000 cargo test --locked -p lvsd sim::tests::random -- --nocapture 2>&1 | tee "$work/sim.log"
tally "$work/sim.log"
grep -a '^simulation:' "$work/sim.log" || { failed=$((failed + 1)); echo "FAILED: the simulation did not run"; }

# The daemon's loop (decide, the config source, reloads, the guards) against the same simulated
# world, with its config in a temporary directory: seeded schedules of edits, bad files, lost
# events, renames at every start and reload step, drift, faults and kills (crates/lvsd/src/sim/
# daemon.rs). The host tests above ran 30 schedules; these are 300 more (about 30 s), from a
# fixed base. A failure prints its seed; LVSD_DSIM_SEED=<seed> replays it with its trace.
note "the daemon's simulation: 300 seeded schedules"
LVSD_DSIM_SCHEDULES=300 LVSD_DSIM_BASE=100000 cargo test --locked -p lvsd sim::daemon::tests::random -- --nocapture 2>&1 | tee "$work/dsim.log"
tally "$work/dsim.log"
grep -a '^simulation (daemon):' "$work/dsim.log" || { failed=$((failed + 1)); echo "FAILED: the daemon's simulation did not run"; }

note "kernel and end-to-end tests (VM, kernel $KVER)"
payload="$work/payload"
mkdir -p "$payload"
kernel_tests=$(cargo_test_executables -p lvsd-ipvs --features kernel-tests --test kernel)
if [ -z "$kernel_tests" ]; then
  echo "FAILED: the kernel tests did not build"
  failed=$((failed + 1)); finish
fi
cp "$kernel_tests" "$payload/ipvs-kernel-tests"
if ! cargo build --locked -p lvsd; then
  echo "FAILED: lvsd did not build"
  failed=$((failed + 1)); finish
fi
cp target/debug/lvsd tests/lab/seed-lab.sh tests/e2e/*.sh examples/seed-dr.yaml deploy/ha/*.yaml deploy/ha/*.conf "$payload/"
# The import scenario: keepalived's own sample configs, and a certificate for the lab's TLS listeners.
mkdir -p "$payload/samples" && cp /usr/share/doc/keepalived/samples/keepalived.conf.* "$payload/samples/"
# ... and the corpus of configs written by others (issue 27, class 8), with each one's verdict.
cp -r crates/config/tests/fixtures/corpus "$payload/corpus"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=lab -days 2 -keyout "$payload/lab.key" -out "$payload/lab.crt" 2>/dev/null
# The container's binary: static, so `FROM scratch` needs nothing else. The ops scenario runs it.
check "static binary builds (glibc, crt-static) and is statically linked" sh -c \
  'RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked -p lvsd --target x86_64-unknown-linux-gnu &&
   file target/x86_64-unknown-linux-gnu/debug/lvsd | grep -q "static" &&
   cp target/x86_64-unknown-linux-gnu/debug/lvsd '"$payload"'/lvsd-static'
if cargo build --locked -p lvsd --example notify-receiver; then
  cp target/debug/examples/notify-receiver "$payload/"
fi
check "every example passes lvsd check" sh -c 'for f in examples/*.yaml; do target/debug/lvsd check -c "$f" || exit 1; done'
check "deploy/ha: keepalived and BIRD accept their configs (keepalived -t, bird -p)" sh -c \
  'for f in deploy/ha/keepalived-*.conf; do keepalived -t -f "$f" || exit 1; done &&
   for f in deploy/ha/bird-*.conf; do bird -p -c "$f" || exit 1; done &&
   for f in deploy/ha/*.yaml; do target/debug/lvsd check -c "$f" >/dev/null || exit 1; done'
check "the man page and shell completions are generated from the CLI" sh -c \
  'target/debug/lvsd man | grep -q "^\.TH lvsd 1" && target/debug/lvsd man | grep -q "lvsd\\\\-status(1)" &&
   d=$(mktemp -d) && target/debug/lvsd man --dir "$d" && grep -q "^\.TH lvsd-status 1" "$d/lvsd-status.1" && rm -rf "$d" &&
   for sh in bash zsh fish; do target/debug/lvsd completions $sh | grep -q status || exit 1; done'
if command -v systemd-analyze >/dev/null; then
  # The unit as shipped, pointed at the binary just built (verify wants it to exist).
  unit_dir=$(mktemp -d)
  sed "s|/usr/local/bin/lvsd|$PWD/target/debug/lvsd|g; /^Documentation=/d" deploy/systemd/lvsd.service >"$unit_dir/lvsd.service"
  check "systemd-analyze verify deploy/systemd/lvsd.service" systemd-analyze verify "$unit_dir/lvsd.service"
  rm -rf "$unit_dir"
fi
cat >"$payload/pre-ipvs" <<'PAYLOAD'
#!/bin/sh
# Before the ip_vs module is loaded.
rc=0
./ipvs-kernel-tests pre_ipvs:: --test-threads=1 || rc=1
sh ./early-pre.sh
exit $rc
PAYLOAD
cat >"$payload/run" <<'PAYLOAD'
#!/bin/sh
rc=0
# First what started before ip_vs was loaded (a daemon waiting for it), then stop it.
sh ./early.sh || rc=1
# One test at a time: the kernel resumes a multi-part service dump by a position in the table
# of every namespace, so tests changing tables in parallel namespaces would skew each other.
./ipvs-kernel-tests --skip pre_ipvs:: --test-threads=1 || rc=1
# End to end: the lvsd binary in the seed's lab; the table alone, with host roles, with health
# checks.
sh ./reconciler.sh || rc=1
sh ./roles.sh || rc=1
sh ./health.sh || rc=1
sh ./ops.sh || rc=1
sh ./overrides.sh || rc=1
sh ./slowstart.sh || rc=1
sh ./faults.sh || rc=1
sh ./daemon.sh || rc=1
sh ./startup.sh || rc=1
sh ./pair.sh || rc=1
sh ./anycast.sh || rc=1
sh ./directors.sh || rc=1
sh ./hashing.sh || rc=1
sh ./import.sh || rc=1
# Last: it unloads and reloads every IPVS module.
sh ./modules.sh || rc=1
exit $rc
PAYLOAD
chmod 755 "$payload" "$payload"/*
vm_build_initramfs "$payload" "$work/initrd.gz"
vm_boot "$work/initrd.gz" "$work/vm.log"
vm_rc=$?
tally "$work/vm.log"
if [ "$vm_rc" -ne 0 ] && ! grep -q 'test result: FAILED' "$work/vm.log"; then
  failed=$((failed + 1)); echo "FAILED: the VM run exited $vm_rc without a failing test (boot or crash problem)"
fi
grep -q 'LVSD-VM-PRE-IPVS-FAILED' "$work/vm.log" && ! grep -q 'test result: FAILED' "$work/vm.log" && failed=$((failed + 1))

# The benchmark is not a test (its figures go to BENCHMARKS.md), but it must keep working: its
# small mode, every part at a small size, in a VM of its own.
check "the benchmark's small mode (tests/bench/run.sh --small)" tests/bench/run.sh --small

# The README's first command, the product's front door: tested on every change.
check "the demo (tests/demo.sh): the seed's lab served by lvsd, a live edit converging" tests/demo.sh

note "the Debian package: built, lintian, and proven on Debian 12 booted with systemd (VM)"
tests/vm/debian.sh 2>&1 | tee "$work/debian.log"
deb_rc=${PIPESTATUS[0]}
tally "$work/debian.log"
if [ "$deb_rc" -ne 0 ] && ! grep -q 'test result: FAILED' "$work/debian.log"; then
  failed=$((failed + 1)); echo "FAILED: tests/vm/debian.sh exited $deb_rc without a failing test"
fi
finish
