#!/bin/sh
# A director pair in the test VM (busybox sh): two directors, two real servers and a client
# on one bridge; keepalived (Debian's binary) in VRRP-only mode moves the VIP, lvsd runs on
# both directors with `ha: {mode: active-backup}`, the kernel's sync daemon as master and
# backup on both. A long-lived connection survives the active director's link going down;
# a director whose real servers all fail its checks gives the VIP away through keepalived's
# track_file on lvsd's health file; `sync`, `ipvs.sysctl` and timeouts follow the file.
# Ends with a "test result:" line.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/pair
rm -rf $E; mkdir -p $E
on() { h=$1; shift; $IP netns exec "$h" "$@"; }
has_vip() { $IP -n "$1" addr show dev eth0 | grep -q "$VIP/32"; }
daemons() { on "$1" ipvsadm -L --daemon; }
vs() { on "$1" cat /proc/sys/net/ipv4/vs/"$2"; }
logged() { grep -q -F -- "$2" "$1"; }

lab_down
lab_up                         # director (dir1 here) .100, rs1 .101, rs2 .102, client .200
lab_host dir2 172.16.1.99
lab_real_servers_by_hand rs1 rs2
# A TCP echo service on each real server that says who answers.
for rs in rs1 rs2; do
  printf '#!/bin/sh\necho "this is %s"\nexec cat\n' "$rs" >$E/echo-$rs.sh
  chmod 755 $E/echo-$rs.sh
  on $rs busybox nc -ll -p 7000 -e $E/echo-$rs.sh &
done

# The health check: a real is down for a director while /tmp/pair/fail-<director> exists.
printf '#!/bin/sh\n[ ! -e %s/fail-$1 ]\n' "$E" >$E/check.sh
chmod 755 $E/check.sh
# `web` hashes (mh with mh-port) and sloppy TCP is on, as in deploy/ha/lvsd-pair.yaml: a
# connection whose handshake the kernel's sync daemon had not sent yet when the VIP moved goes
# on through the other director to the same real server (the planned switchover, 4b). `echo`
# keeps rr: its held connections (3, 4b) are checked to be synced before the VIP moves.
IPVS_SYSCTL='sloppy_tcp: 1'
conf() { # director, then extra top-level YAML (an `ipvs` block of its own keeps $IPVS_SYSCTL)
  d=$1; shift
  cat <<YAML
host: {role: director, interface: eth0}
ha:
  mode: active-backup
  health_file: $E/$d/health
$(for l in "$@"; do printf '%s\n' "$l"; done)
$(case " $* " in *" ipvs:"*) ;; *) printf 'ipvs:\n  sysctl: {%s}\n' "$IPVS_SYSCTL" ;; esac)
services:
  - name: web
    address: $VIP:80
    scheduler: mh
    flags: [mh-port, mh-fallback]
    check: {type: exec, command: [$E/check.sh, $d], interval: 500ms, timeout: 1s, rise: 1, fall: 2}
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
  - name: echo
    address: $VIP:7000
    scheduler: rr
    check: {type: exec, command: [$E/check.sh, $d], interval: 500ms, timeout: 1s, rise: 1, fall: 2}
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
YAML
}
SYNC='  sync: {interface: eth0, id: 51}'
for d in director dir2; do
  mkdir -p $E/$d
  conf $d "$SYNC" >$E/$d/lvsd.yaml
  chmod 644 $E/$d/lvsd.yaml
  check "$d: lvsd check accepts the pair's config" ./lvsd check -c $E/$d/lvsd.yaml
done
check "lvsd check accepts deploy/ha/lvsd-pair.yaml" ./lvsd check -c lvsd-pair.yaml
keepalived_conf() { # director priority
  cat <<CONF
global_defs { router_id $1 }
track_file lvsd_health {
    file $E/$1/health
    weight 0
}
vrrp_instance lvsd {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority $2
    advert_int 1
    virtual_ipaddress {
        $VIP/32 dev eth0
    }
    track_file {
        lvsd_health
    }
}
CONF
}
keepalived_conf director 150 >$E/director/keepalived.conf
keepalived_conf dir2 100 >$E/dir2/keepalived.conf

echo "--- 1. lvsd on both: the same table, sync daemons as master and backup on both"
for d in director dir2; do
  $IP netns exec $d ./lvsd run -c $E/$d/lvsd.yaml --state-dir $E/$d/st --resync-interval 2s >$E/$d/lvsd.log 2>&1 &
  echo $! >$E/$d/lvsd.pid
done
table() { on "$1" ipvsadm -Sn; }
both_in() { table "$1" | grep -q -- "-a -t $VIP:7000 -r 172.16.1.102:7000 -g -w 1" && table "$1" | grep -q -- "-a -t $VIP:80 -r 172.16.1.101:80 -g -w 1"; }
check "dir1 programs the table" within 10 both_in director
check "dir2 programs the table" within 10 both_in dir2
table director >$E/t1; table dir2 >$E/t2
check "both directors hold the same table, line for line" cmp -s $E/t1 $E/t2
daemons director
check "dir1 runs the sync daemon as master and backup" sh -c "$IP netns exec director ipvsadm -L --daemon | grep -q 'master sync daemon (mcast=eth0, syncid=51' && $IP netns exec director ipvsadm -L --daemon | grep -q 'backup sync daemon (mcast=eth0, syncid=51'"
check "dir2 too" sh -c "$IP netns exec dir2 ipvsadm -L --daemon | grep -q 'master sync daemon (mcast=eth0, syncid=51' && $IP netns exec dir2 ipvsadm -L --daemon | grep -q 'backup sync daemon (mcast=eth0, syncid=51'"
check "sloppy TCP is on on both (lvsd set it from ipvs.sysctl)" within 5 sh -c "[ \"\$($IP netns exec director cat /proc/sys/net/ipv4/vs/sloppy_tcp)\$($IP netns exec dir2 cat /proc/sys/net/ipv4/vs/sloppy_tcp)\" = 11 ]"
check "both health files say 0 (every service can serve)" within 5 sh -c "[ \"\$(cat $E/director/health)\" = 0 ] && [ \"\$(cat $E/dir2/health)\" = 0 ]"
check "lvsd status shows the health file's value" sh -c "$IP netns exec director ./lvsd status --json --state-dir $E/director/st | grep -q '\"health_file\":0'"

echo "--- 2. keepalived moves the VIP; lvsd never adds or removes it"
for d in director dir2; do
  $IP netns exec $d keepalived -P -n -l -f $E/$d/keepalived.conf -p $E/$d/k.pid -r $E/$d/kv.pid >$E/$d/keepalived.log 2>&1 &
done
check "keepalived puts the VIP on the preferred director" within 10 has_vip director
: >$E/vip-seen
i=0
while [ $i -lt 25 ]; do # 5 s: more than two resyncs of 2 s on each director
  { has_vip director && echo d1; has_vip dir2 && echo d2; } >>$E/vip-seen
  sleep 0.2; i=$((i + 1))
done
check "over several resyncs the VIP stays on dir1 (lvsd removes nothing)" [ "$(grep -c d1 $E/vip-seen)" -eq 25 ]
check "... and never appears on dir2 (lvsd adds nothing)" sh -c "! grep -q d2 $E/vip-seen"
check "lvsd on dir2 logged no address change" sh -c "! grep -q 'address $VIP' $E/dir2/lvsd.log"

echo "--- 3. a connection survives the active director's failure"
: >$E/in
tail -f $E/in | $IP netns exec client busybox nc $VIP 7000 >$E/out &
for w in one two three four; do echo $w >>$E/in; sleep 0.3; done
check "the connection is served through dir1" within 3 grep -q four $E/out
who=$(head -n 1 $E/out)
echo "   the connection reached: $who"
synced() { on dir2 ipvsadm -Lnc | grep -q "ESTABLISHED.*$VIP:7000"; }
check "dir2 holds the connection (synced) before the failover" within 10 synced
on dir2 ipvsadm -Lnc
t0=$(cs)
$IP link set veth-director down
check "keepalived moves the VIP to dir2" within 10 has_vip dir2
echo "   failover: the VIP was on dir2 $(( ($(cs) - t0) * 10 )) ms after dir1's link went down"
echo after-failover >>$E/in
check "the connection keeps working through dir2" within 5 grep -q after-failover $E/out
check "... on the same real server" [ "$(head -n 1 $E/out)" = "$who" ]
check "new connections are served" sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | $IP netns exec client busybox nc -w 3 $VIP 80 | grep -q 'this is'"
$IP link set veth-director up
check "dir1 takes the VIP back once its link is up" within 10 has_vip director

echo "--- 4. health-driven failover: no real server healthy from dir1's view"
touch $E/fail-director
check "dir1's health file turns non-zero" within 4 sh -c "[ \"\$(cat $E/director/health)\" != 0 ]"
echo "   dir1's health file: $(cat $E/director/health)"
check "keepalived gives the VIP to dir2" within 6 has_vip dir2
check "... and takes it off dir1" sh -c "! $IP -n director addr show dev eth0 | grep -q $VIP/32"
check "traffic is served (through dir2)" sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | $IP netns exec client busybox nc -w 3 $VIP 80 | grep -q 'this is'"
rm $E/fail-director
check "recovered: dir1's health file returns to 0" within 4 sh -c "[ \"\$(cat $E/director/health)\" = 0 ]"
check "... and dir1 has the VIP again" within 8 has_vip director

echo "--- 4b. planned switchover: lvsd drain --director on the active director, under load"
# New short connections back to back, and a long-held one, while dir1 gives the VIP away.
get() { printf 'GET / HTTP/1.0\r\n\r\n' | on client busybox nc -w 3 $VIP 80 | tail -n 1; }
: >$E/in2
tail -f $E/in2 | $IP netns exec client busybox nc $VIP 7000 >$E/out2 &
echo before >>$E/in2
check "a held connection is served through dir1" within 3 grep -q before $E/out2
held_who=$(head -n 1 $E/out2)
synced2() { on dir2 ipvsadm -Lnc | grep "ESTABLISHED" | grep -q "$VIP:7000"; }
check "dir2 holds dir1's established connection before the switchover (sync)" within 10 synced2
check "lvsd status on dir2 shows its backup sync daemon and the connection it holds" sh -c "$IP netns exec dir2 ./lvsd status --json --state-dir $E/dir2/st | grep -q '\"state\":\"backup\"' && $IP netns exec dir2 ./lvsd status --json --state-dir $E/dir2/st | grep -q '\"connections\":{\"active\":[1-9]'"
$IP netns exec dir2 ./lvsd status --state-dir $E/dir2/st | grep -E '^(sync|connections):'
: >$E/switch; touch $E/load
# Three clients back to back, so that requests are in flight whenever the VIP moves. Each
# request's line carries the uptime it started at, to place a failure against the VRRP
# transitions (keepalived's log lines above carry none).
lp=
for n in 1 2 3; do
  ( while [ -e $E/load ]; do t=$(cut -d' ' -f1 /proc/uptime); a=$(get); case "$a" in *"this is"*) echo "$t ok" ;; *) echo "$t FAILED: $a" ;; esac; done >>$E/switch ) &
  lp="$lp $!"
done
sleep 2
t_drain=$(cut -d' ' -f1 /proc/uptime)
on director ./lvsd drain --director --reason "patch dir1" --grace 2s --wait --timeout 60s --state-dir $E/director/st >$E/dd.out 2>&1; rc=$?
cat $E/dd.out
check "drain --director --wait returns 0 once dir1 is drained" [ $rc -eq 0 ]
check "dir1's health file says it cannot serve" sh -c "[ \"\$(cat $E/director/health)\" != 0 ]"
check "keepalived moved the VIP to dir2" has_vip dir2
check "... and off dir1" sh -c "! $IP -n director addr show dev eth0 | grep -q $VIP/32"
check "lvsd status on dir1 says drained" sh -c "$IP netns exec director ./lvsd status --json --state-dir $E/director/st | grep -q '\"state\":\"drained\"'"
echo after-switch >>$E/in2
check "the held connection keeps working through dir2" within 5 grep -q after-switch $E/out2
check "... on the same real server" [ "$(head -n 1 $E/out2)" = "$held_who" ]
t_undrain=$(cut -d' ' -f1 /proc/uptime)
on director ./lvsd undrain --director --state-dir $E/director/st
check "undrain --director: dir1's health file returns to 0" within 5 sh -c "[ \"\$(cat $E/director/health)\" = 0 ]"
check "... and keepalived gives dir1 the VIP back" within 10 has_vip director
sleep 2
rm $E/load
loading() { for p in $lp; do kill -0 $p 2>/dev/null && return 0; done; return 1; }
i=0; while loading && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill $lp 2>/dev/null
sort -n -o $E/switch $E/switch
echo "   during the switchover and back: $(grep -c ok $E/switch) requests served, $(grep -c FAILED $E/switch) failed"
grep FAILED $E/switch | sed 's/^/   /'
echo "   (drain --director started at $t_drain, undrain at $t_undrain, uptime s)"
check "no request failed during the planned switchover and back" sh -c "[ \$(grep -c ok $E/switch) -gt 10 ] && ! grep -q FAILED $E/switch"
echo back >>$E/in2
check "the held connection still works after dir1 took the VIP back" within 5 grep -q back $E/out2

echo "--- 5. sync, ipvs.sysctl and timeouts follow the file"
nodest0=$(vs dir2 expire_nodest_conn); thr0=$(vs dir2 sync_threshold | tr '\t' ' ')
conf dir2 "$SYNC" 'ipvs:' '  timeouts: {tcp: 600s, tcp_fin: 60s, udp: 30s}' "  sysctl: {$IPVS_SYSCTL, expire_nodest_conn: 1, sync_threshold: \"4 60\"}" >$E/dir2/next.yaml
mv $E/dir2/next.yaml $E/dir2/lvsd.yaml
check "ipvs.sysctl applied: expire_nodest_conn = 1" within 4 sh -c "[ \"\$($IP netns exec dir2 cat /proc/sys/net/ipv4/vs/expire_nodest_conn)\" = 1 ]"
check "... sync_threshold = 4 60" sh -c "[ \"\$($IP netns exec dir2 cat /proc/sys/net/ipv4/vs/sync_threshold | tr '\t' ' ')\" = '4 60' ]"
check "timeouts applied: tcp 600 s, tcp_fin 60 s, udp 30 s" within 4 sh -c "$IP netns exec dir2 ipvsadm -L --timeout | grep -q 'udp): 600 60 30'"
on dir2 sh -c 'echo 0 > /proc/sys/net/ipv4/vs/expire_nodest_conn'
check "drift repaired by the resync" within 4 sh -c "[ \"\$($IP netns exec dir2 cat /proc/sys/net/ipv4/vs/expire_nodest_conn)\" = 1 ]"
on dir2 ./lvsd plan -c $E/dir2/lvsd.yaml --state-dir $E/dir2/st >$E/plan.out 2>&1
check "plan is in sync with them" grep -q 'in sync' $E/plan.out
conf dir2 >$E/dir2/next.yaml
mv $E/dir2/next.yaml $E/dir2/lvsd.yaml
check "sync removed from the file: dir2's sync daemons stop" within 4 sh -c "[ -z \"\$($IP netns exec dir2 ipvsadm -L --daemon)\" ]"
check "... while dir1's run on" sh -c "$IP netns exec director ipvsadm -L --daemon | grep -q master"
check "expire_nodest_conn and sync_threshold gone from the file: restored" within 4 sh -c "[ \"\$($IP netns exec dir2 cat /proc/sys/net/ipv4/vs/expire_nodest_conn)\" = $nodest0 ] && [ \"\$($IP netns exec dir2 cat /proc/sys/net/ipv4/vs/sync_threshold | tr '\t' ' ')\" = '$thr0' ]"
check "... and the timeouts too" within 4 sh -c "$IP netns exec dir2 ipvsadm -L --timeout | grep -q 'udp): 900 120 300'"
check "lvsd on dir2 logged each change" sh -c "grep -q 'sync daemon on eth0, id 51' $E/dir2/lvsd.log && grep -q 'timeouts tcp 600s' $E/dir2/lvsd.log"

for d in director dir2; do kill "$(cat $E/$d/lvsd.pid)" "$(cat $E/$d/k.pid)" 2>/dev/null; done
kill $(pidof tail) 2>/dev/null
sleep 0.5

echo "--- 6. the shipped pair file's host record, read back by the next lvsd"
# deploy/ha/lvsd-pair.yaml sets sync_threshold to "3 50" (two words): the record must carry
# the original value for `--role none` in another process to restore it.
R=$E/record
on dir2 ipvsadm -C
on dir2 sh -c 'echo "2 20" > /proc/sys/net/ipv4/vs/sync_threshold; echo 0 > /proc/sys/net/ipv4/vs/expire_nodest_conn'
on dir2 ./lvsd apply -c lvsd-pair.yaml --state-dir $R >$E/rec-apply.out 2>&1; rc=$?
cat $E/rec-apply.out
check "the shipped pair file applies" [ $rc -eq 0 ]
check "... sync_threshold is 3 50" sh -c "[ \"\$($IP netns exec dir2 cat /proc/sys/net/ipv4/vs/sync_threshold | tr '\t' ' ')\" = '3 50' ]"
# The same file without its `ha` and `ipvs` sections: what the host is to keep once the role
# and the settings go (its services stay as they are).
sed -e '/^ha:/,/^services:/{/^services:/!d}' lvsd-pair.yaml >$E/undo.yaml
on dir2 ./lvsd apply -c $E/undo.yaml --role none --state-dir $R >$E/rec-none.out 2>&1; rc=$?
cat $E/rec-none.out
check "another lvsd reads the record: --role none exits 0" [ $rc -eq 0 ]
check "... and restores sync_threshold (2 20) from it" sh -c "[ \"\$($IP netns exec dir2 cat /proc/sys/net/ipv4/vs/sync_threshold | tr '\t' ' ')\" = '2 20' ]"
check "... and expire_nodest_conn (0)" sh -c "[ \"\$($IP netns exec dir2 cat /proc/sys/net/ipv4/vs/expire_nodest_conn)\" = 0 ]"
check "... saying nothing of a damaged record" sh -c "! grep -q 'damaged\|cannot be read' $E/rec-none.out"
# A record that cannot be read: the host part stops, loudly, and touches nothing.
on dir2 ./lvsd apply -c lvsd-pair.yaml --state-dir $R >/dev/null 2>&1
echo '{"record": "x", "version": 2, "addresses": 7}' >$R/host
on dir2 ./lvsd apply -c $E/undo.yaml --role none --state-dir $R >$E/rec-bad.out 2>&1; rc=$?
cat $E/rec-bad.out
check "a damaged host record: --role none exits non-zero" [ $rc -ne 0 ]
check "... naming the record and what to do" sh -c "grep -q 'ownership record $R/host cannot be read' $E/rec-bad.out"
check "... and leaves the sysctls lvsd set as they are" sh -c "[ \"\$($IP netns exec dir2 cat /proc/sys/net/ipv4/vs/sync_threshold | tr '\t' ' ')\" = '3 50' ]"
rm -f $R/host
on dir2 ipvsadm -C
result pair
