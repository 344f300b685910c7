#!/usr/bin/env bash
# Regenerates the golden-byte fixtures of crates/ipvs: boots the VM, runs every ipvsadm command of
# tests/vm/golden/cases.txt while an nlmon device records the netlink traffic, and writes one
# fixture per case to crates/ipvs/tests/fixtures/. A developer tool: its output is committed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/vm/lib.sh
vm_install_deps
vm_fetch_kernel
payload=$(mktemp -d)
cp tests/vm/golden/cases.txt "$payload/cases.txt"
cat >"$payload/run" <<'PAYLOAD'
#!/bin/sh
ip link add nlmon0 type nlmon && ip link set nlmon0 up
ip link add dummy0 type dummy && ip addr add 172.16.1.1/24 dev dummy0 && ip link set dummy0 up
grep -v '^#' cases.txt | while IFS='|' read -r name args; do
  name=$(echo $name)
  tcpdump -Z root -U -s 0 -i nlmon0 -w /tmp/$name.pcap >/dev/null 2>&1 &
  pid=$!
  sleep 3
  eval "ipvsadm $args" >/dev/null 2>&1
  sleep 1
  kill $pid; wait $pid 2>/dev/null
  echo "GOLDEN-BEGIN $name"
  od -An -tx1 -v /tmp/$name.pcap
  echo "GOLDEN-END $name"
done
exit 0
PAYLOAD
chmod +x "$payload/run"
vm_build_initramfs "$payload" "$payload/initrd.gz"
vm_boot "$payload/initrd.gz" "$payload/console.log" >/dev/null || true
cp "$payload/console.log" /tmp/golden-console.log
python3 tests/vm/golden/pcap_to_fixtures.py tests/vm/golden/cases.txt "$payload/console.log" crates/ipvs/tests/fixtures
rm -rf "$payload"
