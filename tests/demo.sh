#!/usr/bin/env bash
# The main job: boots the VM, builds the seed's LVS-DR lab (director, real servers, a client, on
# one bridge, with the seed's addresses; nothing else by hand), then lvsd does every step of the
# seed from examples/seed-dr.yaml: on the director the VIP, forwarding and the IPVS table; on
# each real server (same file, --role real-server) the VIP on lo and the ARP sysctls. The
# client's requests alternate between the real servers; then `lvsd run` picks up a live edit of
# the YAML (a third real server, a weight) within a second.
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
# Any failure (a command that fails under set -e, a wait past its deadline) ends the demo with
# what every lvsd said, and a non-zero exit.
said() {
  for f in /tmp/lvsd*.log; do [ -f "$f" ] && { echo "--- what lvsd said ($f):"; cat "$f"; }; done
}
trap 'rc=$?; [ $rc -eq 0 ] || { echo "DEMO FAILED (exit $rc)"; said; }' EXIT
fail() { echo "DEMO FAILED: $*"; exit 1; }
upto() { # seconds description command...: polls until the command succeeds, or fails the demo
  n=$(($1 * 10)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    n=$((n - 1)); [ $n -gt 0 ] || fail "$what: not within the deadline"
    sleep 0.1
  done
}
D() { $IP netns exec director "$@"; }
RS() { h=$1; shift; $IP netns exec "$h" ./lvsd "$@" --state-dir "/run/lvsd-$h"; }
ask() { # n requests from the client; prints the answers and a count per real server
  i=0; : >/tmp/answers
  while [ $i -lt "$1" ]; do lab_request | tee -a /tmp/answers; i=$((i + 1)); done
  for a in 101 102 103; do printf '172.16.1.%s: %s  ' $a "$(grep -c "172.16.1.$a" /tmp/answers || true)"; done; echo
}
say "the seed's lab: director 172.16.1.100, real servers .101 .102 .103, client .200 — bare hosts"
lab_up
lab_real_server rs3 172.16.1.103
say "examples/seed-dr.yaml"
cat seed-dr.yaml
say "lvsd check — and the seed's classic mistake, scheduler: dr"
D ./lvsd check -c seed-dr.yaml
sed 's/scheduler: wlc/scheduler: dr/' seed-dr.yaml >/tmp/mistake.yaml
D ./lvsd check -c /tmp/mistake.yaml || true
say "director: lvsd plan (exit 2: changes pending) — the host's changes next to the table's"
D ./lvsd plan -c seed-dr.yaml || echo "exit $?"
say "director: lvsd apply"
D ./lvsd apply -c seed-dr.yaml
say "real servers: the same file, lvsd apply --role real-server"
for rs in rs1 rs2 rs3; do echo "[$rs]"; RS $rs apply -c seed-dr.yaml --role real-server; done
say "what lvsd set up: director eth0, rs1 lo, rs1 ARP sysctls, the IPVS table"
$IP -n director -br addr show dev eth0
$IP -n rs1 -br addr show dev lo
$IP netns exec rs1 sh -c 'echo "arp_ignore=$(cat /proc/sys/net/ipv4/conf/all/arp_ignore) arp_announce=$(cat /proc/sys/net/ipv4/conf/all/arp_announce)"'
D ipvsadm -Ln
say "client: curl 172.16.1.50, ten times"
ask 10
n1=$(grep -c 172.16.1.101 /tmp/answers || true); n2=$(grep -c 172.16.1.102 /tmp/answers || true)
say "client: the VIP's neighbour entry is the director's MAC ($($IP netns exec director cat /sys/class/net/eth0/address)); the real servers stay quiet"
$IP -n client neigh show 172.16.1.50
say "lvsd plan again (exit 0: in sync) and a second apply (nothing to change)"
D ./lvsd plan -c seed-dr.yaml
D ./lvsd apply -c seed-dr.yaml
say "lvsd run: daemons take over on the director and the real servers, all watching /etc/lvsd/lvsd.yaml"
mkdir -p /etc/lvsd && cp seed-dr.yaml /etc/lvsd/lvsd.yaml
D ./lvsd run --resync-interval 5s >/tmp/lvsd.log 2>&1 &
for rs in rs1 rs2 rs3; do RS $rs run --role real-server --resync-interval 5s >/tmp/lvsd-$rs.log 2>&1 & done
upto 30 "the director's daemon starts" grep -q "lvsd running" /tmp/lvsd.log
sleep 1
say "live edit: add real server 172.16.1.103 with weight 2 (written as config management does: temp file + rename)"
sed 's/      - address: 172.16.1.102/      - address: 172.16.1.102\n      - address: 172.16.1.103\n        weight: 2/' /etc/lvsd/lvsd.yaml >/etc/lvsd/.lvsd.yaml.tmp
mv /etc/lvsd/.lvsd.yaml.tmp /etc/lvsd/lvsd.yaml
t0=$(awk '{print $1}' /proc/uptime)
upto 30 "the live edit reaches the table" sh -c "$IP netns exec director ipvsadm -Sn | grep -q 172.16.1.103"
t1=$(awk '{print $1}' /proc/uptime)
echo "converged in $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s"
cat /tmp/lvsd.log
D ipvsadm -Ln
say "client: twelve more requests (wlc: new connections go to the least loaded server, so the new idle .103 takes most)"
ask 12
n3=$(grep -c 172.16.1.103 /tmp/answers || true)
say "director: ipvsadm -Ln --stats (OutPkts 0: replies go straight from the real servers to the client)"
sleep 2.5 # the kernel sums its per-CPU counters every 2 s
D ipvsadm -Ln --stats
[ "$n1" -ge 4 ] && [ "$n2" -ge 4 ] || fail "the first ten requests did not alternate between .101 and .102 ($n1 and $n2)"
[ "$n3" -ge 4 ] || fail ".103 took $n3 of the twelve requests after the edit, not its share"
echo "DEMO OK: lvsd serves the seed's lab from YAML; both real servers answered, alternating; the live edit converged and .103 took its share"
PAYLOAD
chmod 755 "$p" "$p/run"
vm_build_initramfs "$p" "$work/initrd.gz"
# The demo takes well under a minute in the VM; a hang is a failure, not a wait.
VM_TIMEOUT=${LVSD_VM_TIMEOUT:-300}
vm_boot "$work/initrd.gz" "$work/vm.log" | grep -a -v -E '^(SeaBIOS|Booting|\[ *[0-9.]+\]|.*\[\?7l)' || true
grep -a -q 'DEMO OK' "$work/vm.log"
