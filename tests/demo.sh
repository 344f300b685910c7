#!/usr/bin/env bash
# The main job: boots the VM, builds the seed's LVS-DR lab (director, real servers, a client, on
# one bridge, with the seed's addresses), then lvsd serves the seed's service from
# examples/seed-dr.yaml: `lvsd apply`, the client's requests alternate between the real servers,
# then `lvsd run` picks up a live edit of the YAML (a third real server, a weight) within a second.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/vm/lib.sh
vm_install_deps
vm_fetch_kernel
cargo build --locked -p lvsd
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
p="$work/payload"
mkdir -p "$p"
cp target/debug/lvsd tests/lab/seed-lab.sh examples/seed-dr.yaml "$p/"
cat >"$p/run" <<'PAYLOAD'
#!/bin/sh
set -e
. ./seed-lab.sh
say() { printf '\n### %s\n' "$*"; }
D() { $IP netns exec director "$@"; }
ask() { # n requests from the client; prints the answers and a count per real server
  i=0; : >/tmp/answers
  while [ $i -lt "$1" ]; do lab_request | tee -a /tmp/answers; i=$((i + 1)); done
  for a in 101 102 103; do printf '172.16.1.%s: %s  ' $a "$(grep -c "172.16.1.$a" /tmp/answers || true)"; done; echo
}
say "the seed's lab: director 172.16.1.100 (VIP 172.16.1.50), real servers .101 .102 .103, client .200"
lab_up
lab_real_server rs3 172.16.1.103
lab_real_servers_by_hand rs1 rs2 rs3
lab_director_by_hand
say "examples/seed-dr.yaml"
cat seed-dr.yaml
say "lvsd check — and the seed's classic mistake, scheduler: dr"
D ./lvsd check -c seed-dr.yaml
sed 's/scheduler: wlc/scheduler: dr/' seed-dr.yaml >/tmp/mistake.yaml
D ./lvsd check -c /tmp/mistake.yaml || true
say "lvsd plan (exit 2: changes pending)"
D ./lvsd plan -c seed-dr.yaml || echo "exit $?"
say "lvsd apply"
D ./lvsd apply -c seed-dr.yaml
say "ipvsadm -Ln agrees"
D ipvsadm -Ln
say "client: curl 172.16.1.50, ten times"
ask 10
n1=$(grep -c 172.16.1.101 /tmp/answers || true); n2=$(grep -c 172.16.1.102 /tmp/answers || true)
say "lvsd plan again (exit 0: in sync) and a second apply (nothing to change)"
D ./lvsd plan -c seed-dr.yaml
D ./lvsd apply -c seed-dr.yaml
say "lvsd run: the daemon takes over, watching /etc/lvsd/lvsd.yaml"
mkdir -p /etc/lvsd && cp seed-dr.yaml /etc/lvsd/lvsd.yaml
D ./lvsd run --resync-interval 5s >/tmp/lvsd.log 2>&1 &
sleep 2
say "live edit: add real server 172.16.1.103 with weight 2 (written as config management does: temp file + rename)"
sed 's/      - address: 172.16.1.102/      - address: 172.16.1.102\n      - address: 172.16.1.103\n        weight: 2/' /etc/lvsd/lvsd.yaml >/etc/lvsd/.lvsd.yaml.tmp
mv /etc/lvsd/.lvsd.yaml.tmp /etc/lvsd/lvsd.yaml
t0=$(awk '{print $1}' /proc/uptime)
until D ipvsadm -Sn | grep -q 172.16.1.103; do sleep 0.1; done
t1=$(awk '{print $1}' /proc/uptime)
echo "converged in $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s"
cat /tmp/lvsd.log
D ipvsadm -Ln
say "client: twelve more requests (wlc: new connections go to the least loaded server, so the new idle .103 takes most)"
ask 12
n3=$(grep -c 172.16.1.103 /tmp/answers || true)
say "director: ipvsadm -Ln --stats (OutPkts 0: replies go straight from the real servers to the client)"
D ipvsadm -Ln --stats
[ "$n1" -ge 4 ] && [ "$n2" -ge 4 ] && [ "$n3" -ge 4 ] && echo "DEMO OK: lvsd serves the seed's lab from YAML; both real servers answered, alternating; the live edit converged and .103 took its share"
PAYLOAD
chmod 755 "$p" "$p/run"
vm_build_initramfs "$p" "$work/initrd.gz"
vm_boot "$work/initrd.gz" "$work/vm.log" | grep -v -E '^(SeaBIOS|Booting|\[ *[0-9.]+\]|.*\[\?7l)' || true
grep -q 'DEMO OK' "$work/vm.log"
