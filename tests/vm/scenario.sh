#!/usr/bin/env bash
# Runs the named end-to-end scenarios (tests/e2e/NAME.sh) in one VM boot, for working on one of
# them without the whole suite: `tests/vm/scenario.sh startup daemon`. Builds lvsd first; ends
# with the scenarios' own "test result:" lines and exits non-zero when one failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -gt 0 ] || { echo "usage: tests/vm/scenario.sh NAME... (tests/e2e/NAME.sh)" >&2; exit 2; }
source tests/vm/lib.sh
vm_install_deps
vm_fetch_kernel
cargo build --locked -p lvsd
cargo build --locked -p lvsd --example notify-receiver
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
p="$work/payload"
mkdir -p "$p"
# The corpus of configs written by others (issue 27, class 8), for the import scenario.
cp -r crates/config/tests/fixtures/corpus "$p/corpus"
t=${CARGO_TARGET_DIR:-target}
cp "$t/debug/lvsd" "$t/debug/examples/notify-receiver" tests/lab/seed-lab.sh tests/e2e/*.sh \
  examples/seed-dr.yaml deploy/ha/*.yaml deploy/ha/*.conf "$p/"
# As tests/run.sh lays the payload out: keepalived's own samples and the lab's TLS certificate
# (the import scenario).
mkdir -p "$p/samples" && cp /usr/share/doc/keepalived/samples/keepalived.conf.* "$p/samples/"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=lab -days 2 -keyout "$p/lab.key" -out "$p/lab.crt" 2>/dev/null
{
  echo '#!/bin/sh'
  echo 'rc=0'
  for name in "$@"; do
    [ -f "tests/e2e/$name.sh" ] || { echo "no scenario tests/e2e/$name.sh" >&2; exit 2; }
    echo "sh ./$name.sh || rc=1"
  done
  echo 'exit $rc'
} >"$p/run"
chmod 755 "$p" "$p"/*
vm_build_initramfs "$p" "$work/initrd.gz"
set +e
vm_boot "$work/initrd.gz" "$work/vm.log" | grep -a -v -E '^(SeaBIOS|Booting|\[ *[0-9.]+\]|.*\[\?7l)'
rc=${PIPESTATUS[0]}
grep -a 'test result:' "$work/vm.log"
exit "$rc"
