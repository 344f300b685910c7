#!/bin/sh
# Hashing that provably agrees (busybox sh, in the test VM): three directors, each in its own
# network namespace on the seed lab's LAN, each running `lvsd run` on the same mh service. Two
# built it fresh; the third was given the real that sorts first later (an edit history), so its
# kernel holds the reals in another order. What must hold: the fresh two show the same
# fingerprint in `lvsd status --json` and in the metrics, the third another; `lvsd plan` there
# warns and names `lvsd realign web`; `lvsd realign` refuses while the service carries a
# connection and says --force cuts it; with --force it re-creates the service in the fresh
# order and the fingerprints agree; the daemon leaves it so. `lvsd plan` warns about mh
# without mh-fallback; status and metrics show a sync daemon and the connections held.
# Ends with a "test result:" line.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/hashing
rm -rf $E
mkdir -p $E
on() { h=$1; shift; $IP netns exec "$h" "$@"; }
lv() { h=$1; shift; on "$h" ./lvsd "$@" --state-dir $E/st-$h; }
fp() { lv "$1" status --json | grep -o '"fingerprint":"[0-9a-f]*"' | head -n 1 | cut -d'"' -f4; }
scrape() { printf 'GET /metrics HTTP/1.0\r\n\r\n' | on "$1" busybox nc -w 5 127.0.0.1 9474; }
# The reals in the kernel's list order: /proc/net/ip_vs walks the list (`ipvsadm -Ln` sorts
# them, so it cannot show the order). .101 is AC100165:0050, .102 AC100166:0050.
order() { on "$1" cat /proc/net/ip_vs | awk '$1 == "->" && $2 ~ /^AC1001/ { printf "%s ", $2 }'; }
R101=AC100165:0050
R102=AC100166:0050
has() { on "$1" ipvsadm -Sn | grep -q -F -- "$2"; }
start() { # namespace config
  $IP netns exec "$1" ./lvsd run -c "$2" --state-dir $E/st-$1 --resync-interval 2s \
    --metrics-listen 127.0.0.1:9474 >>$E/$1.log 2>&1 &
}

conf() { # flags, then the reals' last octets
  flags=$1; shift
  printf 'services:\n  - name: web\n    address: %s:80\n    protocol: tcp\n    scheduler: mh\n    flags: [%s]\n    forward: dr\n    reals:\n' "$VIP" "$flags"
  for r in "$@"; do printf '      - address: 172.16.1.%s\n' "$r"; done
}

lab_down
lab_up
lab_real_servers_by_hand
lab_host d2 172.16.1.110
lab_host d3 172.16.1.111
conf mh-fallback,mh-port 101 102 >$E/a.yaml
conf mh-fallback,mh-port 102 >$E/d3.yaml
conf mh-port 101 102 >$E/nofb.yaml
chmod 644 $E/*.yaml

echo "--- 1. three directors, one with an edit history"
start director $E/a.yaml
start d2 $E/a.yaml
start d3 $E/d3.yaml
for d in director d2; do
  check "$d converges on the mh service" within 10 has $d "-a -t $VIP:80 -r 172.16.1.101:80 -g -w 1"
done
check "d3 converges on the service without .101" within 10 has d3 "-a -t $VIP:80 -r 172.16.1.102:80 -g -w 1"
# .101 added later: the kernel puts it at the head of d3's list.
cp $E/a.yaml $E/d3.new && mv $E/d3.new $E/d3.yaml
check "d3 adds .101 after the edit" within 10 has d3 "-a -t $VIP:80 -r 172.16.1.101:80 -g -w 1"
for d in director d2 d3; do echo "   $d: kernel order $(order $d), fingerprint $(fp $d)"; done
check "the fresh directors hold the reals newest first in sorted order (.102 .101)" \
  [ "$(order director)" = "$R102 $R101 " ]
check "d3 holds .101 first" [ "$(order d3)" = "$R101 $R102 " ]
f1=$(fp director); f2=$(fp d2); f3=$(fp d3)
check "lvsd status --json carries a 16-hex-digit fingerprint" sh -c "echo '$f1' | grep -q -x '[0-9a-f]\{16\}'"
check "the two fresh directors show the same fingerprint" [ "$f1" = "$f2" ]
check "d3, with another kernel order, shows another" [ -n "$f3" -a "$f3" != "$f1" ]
scrape d2 >$E/d2.metrics
grep lvsd_service_fingerprint_info $E/d2.metrics
check "the metric carries the same fingerprint" \
  grep -q "lvsd_service_fingerprint_info{service=\"TCP $VIP:80\",scheduler=\"mh\",fingerprint=\"$f1\"} 1" $E/d2.metrics
lv d3 plan -c $E/d3.yaml >$E/plan-d3.out 2>&1
cat $E/plan-d3.out
check "lvsd plan on d3 warns about the order and names lvsd realign web" sh -c \
  "grep -q 'warning: service TCP $VIP:80 (mh): the kernel holds its real servers in the order 172.16.1.101:80, 172.16.1.102:80' $E/plan-d3.out && grep -q 'lvsd realign web' $E/plan-d3.out"
lv d2 plan -c $E/nofb.yaml >$E/plan-nofb.out 2>&1
check "lvsd plan warns about mh without mh-fallback" grep -q "scheduler mh without the mh-fallback flag" $E/plan-nofb.out
lv d2 plan -c $E/a.yaml >$E/plan-d2.out 2>&1
check "... and not with it" sh -c "! grep -q 'mh-fallback flag' $E/plan-d2.out"

echo "--- 2. realign refuses while d3 carries a connection"
# The client reaches the VIP through d3 (a host route), d3 holds the VIP on lo.
$IP -n d3 addr add $VIP/32 dev lo
on d3 sh -c 'echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore; echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce; echo 1 > /proc/sys/net/ipv4/ip_forward'
$IP -n client route add $VIP/32 via 172.16.1.111
( printf 'GET / HTTP/1.0\r\n'; sleep 20; printf '\r\n' ) | on client busybox nc -w 30 $VIP 80 >$E/held &
check "a connection through d3 is established" within 5 sh -c "$IP netns exec d3 ipvsadm -Lnc | grep -q ESTABLISHED"
lv d3 status >$E/status-d3.out
cat $E/status-d3.out
check "lvsd status shows the connection d3 holds" grep -q "^connections: 1 active" $E/status-d3.out
check "... and the hashing line with the fingerprint" grep -q "^hashing: .*fingerprint $f3" $E/status-d3.out
scrape d3 >$E/d3.metrics
grep '^lvsd_connections' $E/d3.metrics
check "the metric counts it" grep -q '^lvsd_connections{state="active"} 1$' $E/d3.metrics
lv d3 realign web -c $E/d3.yaml >$E/realign1.out 2>&1; rc=$?
cat $E/realign1.out
check "realign exits 1 with a connection" [ $rc -eq 1 ]
check "... saying how many and that --force cuts them" sh -c "grep -q 'carries 1 connections' $E/realign1.out && grep -q -- '--force' $E/realign1.out"
check "... and the order is untouched" [ "$(order d3)" = "$R101 $R102 " ]

echo "--- 3. realign --force re-creates it in the fresh order; the directors agree"
lv d3 realign web --force -c $E/d3.yaml >$E/realign2.out 2>&1; rc=$?
cat $E/realign2.out
check "realign --force exits 0 and says what it cut" sh -c "[ $rc -eq 0 ] && grep -q 'cut 1 connections' $E/realign2.out"
check "d3 now holds .102 .101" [ "$(order d3)" = "$R102 $R101 " ]
check "d3's fingerprint is the fresh directors' one" [ "$(fp d3)" = "$f1" ]
sleep 4 # two resyncs: the daemon does not fight the new order
check "... and stays so under the daemon" [ "$(fp d3)" = "$f1" ]
check "the realign is logged by d3's daemon" grep -q "realign: " $E/d3.log
lv d3 plan -c $E/d3.yaml >$E/plan-d3b.out 2>&1; rc=$?
cat $E/plan-d3b.out
check "lvsd plan on d3 is in sync and warns no more" sh -c "[ $rc -eq 0 ] && ! grep -q 'lvsd realign' $E/plan-d3b.out"
lv d3 realign web -c $E/d3.yaml >$E/realign3.out 2>&1; rc=$?
check "a second realign has nothing to do" sh -c "[ $rc -eq 0 ] && grep -q 'nothing changed' $E/realign3.out"

echo "--- 4. sync daemons are seen"
on d2 ipvsadm --start-daemon backup --mcast-interface eth0 --syncid 52
lv d2 status >$E/status-d2.out
cat $E/status-d2.out
check "lvsd status shows the backup sync daemon" grep -q "^sync: *backup on eth0, syncid 52" $E/status-d2.out
lv d2 status --json >$E/status-d2.json
check "so does --json" grep -q '"sync_daemons":\[{"interface":"eth0","state":"backup","syncid":52}\]' $E/status-d2.json
scrape d2 >$E/d2b.metrics
check "and the metric" grep -q 'lvsd_sync_daemon_info{state="backup",interface="eth0",syncid="52"} 1' $E/d2b.metrics
on d2 ipvsadm --stop-daemon backup

for d in director d2 d3; do
  for pid in $($IP netns pids $d 2>/dev/null); do kill "$pid" 2>/dev/null; done
done
lab_down
result hashing
