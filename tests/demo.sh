#!/usr/bin/env bash
# The main job: boots the VM, builds the seed's LVS-DR lab (director, two real servers, a client,
# on one bridge) and has lvsd's IPVS client program the seed's service; then the client's
# requests alternate between the real servers and the director's stats show direct return.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/vm/lib.sh
vm_install_deps
vm_fetch_kernel
cargo build --locked -p lvsd -p lvsd-ipvs --example seed_director
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
p="$work/payload"
mkdir -p "$p"
cp target/debug/lvsd target/debug/examples/seed_director tests/lab/seed-lab.sh "$p/"
cat >"$p/run" <<'PAYLOAD'
#!/bin/sh
set -e
. ./seed-lab.sh
say() { printf '\n### %s\n' "$*"; }
say "building the seed's lab: director 172.16.1.100, rs1 172.16.1.101, rs2 172.16.1.102, client 172.16.1.200"
lab_up
lab_real_servers_by_hand
lab_director_by_hand
say "director: programming IPVS through lvsd's netlink client (no ipvsadm)"
$IP netns exec director ./seed_director
say "director: lvsd dump (the live table, ipvsadm-restore form)"
$IP netns exec director ./lvsd dump
say "director: ipvsadm -Ln agrees"
$IP netns exec director ipvsadm -Ln
say "client: for i in 1..10; do curl 172.16.1.50; done"
for i in 1 2 3 4 5 6 7 8 9 10; do lab_request; done | tee /tmp/answers
n1=$(grep -c 172.16.1.101 /tmp/answers || true); n2=$(grep -c 172.16.1.102 /tmp/answers || true)
say "answers: rs1 $n1, rs2 $n2"
say "director: ipvsadm -Ln --stats (OutPkts 0: replies go straight from the real servers to the client)"
$IP netns exec director ipvsadm -Ln --stats
[ "$n1" -ge 4 ] && [ "$n2" -ge 4 ] && echo "DEMO OK: both real servers answered, alternating"
PAYLOAD
chmod 755 "$p" "$p/run"
vm_build_initramfs "$p" "$work/initrd.gz"
vm_boot "$work/initrd.gz" "$work/vm.log" | grep -v -E '^(SeaBIOS|Booting|\[ *[0-9.]+\]|.*\[\?7l)' || true
grep -q 'DEMO OK' "$work/vm.log"
