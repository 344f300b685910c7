#!/bin/sh
# Three active/active directors in the test VM (busybox sh), under continuous client load: a
# router running BIRD (Debian's binary) with ECMP over three directors, each running BIRD and
# `lvsd run` with `ha: {mode: active-active}`, two real servers (direct return). Day 2:
#   1. a planned `lvsd drain --director --wait` of one director, then its return
#      (`lvsd undrain --director`): no request fails, held connections keep working;
#   2. the link of another lost: held connections keep working once the router moved them;
#   3. that director rebuilt from nothing (empty table, no record) and added back: it
#      announces only once its table is programmed, and no request fails.
# Load: new short HTTP connections back to back, plus long-held echo connections.
# Ends with a "test result:" line.
. ./checks.sh
E=/tmp/directors
VIP=10.99.0.60
rm -rf $E; mkdir -p $E
. ./routed-lab.sh
routed_lab_up dir1:11 dir2:12 dir3:13

# The same file on every director: mh with mh-port (every director maps a flow to the same
# real server), mh-fallback (a drained real's flows go to the next one).
cat >$E/lvsd.yaml <<YAML
host: {role: director, interface: eth0}
ha:
  mode: active-active
  announce_device: lvsd0
services:
  - name: web
    address: $VIP:80
    scheduler: mh
    flags: [mh-port, mh-fallback]
    check: {type: tcp, interval: 1s, timeout: 1s}
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
  - name: echo
    address: $VIP:7000
    scheduler: mh
    flags: [mh-port, mh-fallback]
    check: {type: tcp, interval: 1s, timeout: 1s}
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
YAML
check "lvsd check accepts the directors' config" ./lvsd check -c $E/lvsd.yaml
router_up dir3
for rs in rs1 rs2; do on $rs ./lvsd apply --role real-server -c $E/lvsd.yaml --state-dir $E/st-$rs >/dev/null; done
start_director() { # name address
  mkdir -p $E/$1
  bird_director "$2" >$E/$1/bird.conf
  on "$1" bird -c $E/$1/bird.conf -s $E/$1/bird.ctl -P $E/$1/bird.pid
  $IP netns exec "$1" ./lvsd run -c $E/lvsd.yaml --state-dir $E/$1/st --resync-interval 2s --metrics-listen 127.0.0.1:9475 >>$E/$1/lvsd.log 2>&1 &
  echo $! >$E/$1/lvsd.pid
}
for d in dir1:172.16.1.11 dir2:172.16.1.12 dir3:172.16.1.13; do start_director "${d%:*}" "${d#*:}"; done

announced() { $IP -n "$1" addr show dev lvsd0 2>/dev/null | grep -q "$VIP/32"; }
paths() { on router /sbin/ip route show $VIP | grep -c 'nexthop via'; }
has_paths() { [ "$(paths)" -eq "$1" ]; }
via() { on router /sbin/ip route show $VIP | grep -q "via $1"; }
status() { on "$1" ./lvsd status --json --state-dir $E/$1/st; }
state_is() { status "$1" | grep -q "\"state\":\"$2\""; }
show_logs() { for d in dir1 dir2 dir3; do echo "--- lvsd on $d said:"; tail -n 30 $E/$d/lvsd.log; done; }

echo "--- 0. three directors announce; the router installs three equal paths"
for d in dir1 dir2 dir3; do check "$d announces the VIP" within 20 announced $d; done
check "the router installs three equal paths" within 20 has_paths 3
on router /sbin/ip route show $VIP
check "lvsd status says each director is serving" sh -c "for d in dir1 dir2 dir3; do $IP netns exec \$d ./lvsd status --json --state-dir $E/\$d/st | grep -q '\"state\":\"serving\"' || exit 1; done"
for d in dir1 dir2 dir3; do on $d ipvsadm -Sn >$E/table-$d; done
check "the three tables are identical, line for line (mh's order included)" sh -c "cmp -s $E/table-dir1 $E/table-dir2 && cmp -s $E/table-dir1 $E/table-dir3"
fingerprints() { status "$1" | grep -o '"fingerprint":"[0-9a-f]*"' | sort; }
fingerprints_agree() {
  fingerprints dir1 >$E/fp1; fingerprints dir2 >$E/fp2; fingerprints dir3 >$E/fp3
  [ "$(wc -l <$E/fp1)" -eq 2 ] && cmp -s $E/fp1 $E/fp2 && cmp -s $E/fp1 $E/fp3
}
check "lvsd status: the three directors' mh fingerprints are equal (two services)" fingerprints_agree
cat $E/fp1

# Continuous load: new short connections back to back (each a new source port, so the router
# spreads them over the directors); every answer is logged, ok or FAILED.
get() { printf 'GET / HTTP/1.0\r\n\r\n' | on client busybox nc -w 3 $VIP 80 | tail -n 1; }
load_start() { # file
  : >"$1"; touch $E/load
  ( while [ -e $E/load ]; do a=$(get); case "$a" in *"this is"*) echo ok ;; *) echo "FAILED: $a" ;; esac; done >"$1" ) &
  echo $! >$E/load.pid
}
load_stop() { rm -f $E/load; i=0; while kill -0 "$(cat $E/load.pid)" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done; }
failed() { grep -c FAILED "$1"; }
served() { grep -c ok "$1"; }
# Long-held connections: each a tail feeding nc; a line sent must come back. The router
# hashes each on its ports: connections are opened until every director carries one (at
# least six, at most 30).
entries_on() { on "$1" ipvsadm -Lnc | grep -c "$VIP:7000"; }
HELD=""
h=0
while [ $h -lt 30 ]; do
  h=$((h + 1))
  : >$E/in-$h
  tail -f $E/in-$h | on client busybox nc $VIP 7000 >$E/out-$h &
  echo "hello-$h" >>$E/in-$h
  HELD="$HELD $h"
  within 5 grep -q "hello-$h" $E/out-$h >/dev/null
  [ $h -ge 6 ] && [ "$(entries_on dir1)" -gt 0 ] && [ "$(entries_on dir2)" -gt 0 ] && [ "$(entries_on dir3)" -gt 0 ] && break
done
echo "   $h held connections opened"
held_all_answer() { # tag: every held connection echoes a new line
  for h in $HELD; do echo "$1-$h" >>$E/in-$h; done
  for h in $HELD; do within 8 grep -q "$1-$h" $E/out-$h >/dev/null || { echo "   held connection $h did not answer $1"; return 1; }; done
}
check "the held connections answer" held_all_answer start
for h in $HELD; do head -n 1 $E/out-$h; done >$E/held-who
carriers() { for d in dir1 dir2 dir3; do echo "$d: $(on $d ipvsadm -Lnc | grep -c "$VIP:7000")"; done | tr '\n' ' '; }
echo "   held connections' entries per director: $(carriers)"
check "every director carries a held connection before the drain" sh -c "[ \$($IP netns exec dir1 ipvsadm -Lnc | grep -c $VIP:7000) -gt 0 ] && [ \$($IP netns exec dir2 ipvsadm -Lnc | grep -c $VIP:7000) -gt 0 ] && [ \$($IP netns exec dir3 ipvsadm -Lnc | grep -c $VIP:7000) -gt 0 ]"

echo "--- 1. planned: dir1 out of rotation (drain --director --wait), then back"
load_start $E/load-drain
sleep 2
t0=$(cs)
on dir1 ./lvsd drain --director --reason "patch" --grace 3s --wait --timeout 60s --state-dir $E/dir1/st >$E/drain.out 2>&1; rc=$?
cat $E/drain.out
check "drain --director --wait returns 0 once dir1 is drained" [ $rc -eq 0 ]
echo "   drained $(( ($(cs) - t0) * 10 )) ms after the command"
check "... the router has two paths, none via dir1" sh -c "[ \$($IP netns exec router /sbin/ip route show $VIP | grep -c 'nexthop via') -eq 2 ] && ! $IP netns exec router /sbin/ip route show $VIP | grep -q 172.16.1.11"
check "... dir1's VIP left lvsd0" sh -c "! $IP -n dir1 addr show dev lvsd0 | grep -q $VIP/32"
check "... and is held on lo" sh -c "$IP -n dir1 addr show dev lo | grep -q $VIP/32"
check "lvsd status on dir1 says drained, with the reason" sh -c "$IP netns exec dir1 ./lvsd status --json --state-dir $E/dir1/st | grep -q '\"state\":\"drained\"' && $IP netns exec dir1 ./lvsd status --state-dir $E/dir1/st | grep -q 'director:   drained (out of rotation since .*: patch)'"
check "the metric says drained" sh -c "$IP netns exec dir1 sh -c \"printf 'GET /metrics HTTP/1.0\r\n\r\n' | busybox nc 127.0.0.1 9475\" | grep -q '^lvsd_director_state{state=\"drained\"} 1'"
check "the withdrawal is logged" grep -q "director out of rotation" $E/dir1/lvsd.log
check "held connections still answer (moved to dir2 and dir3)" held_all_answer drained
for h in $HELD; do head -n 1 $E/out-$h; done >$E/held-who-now
check "... each on the same real server as before" cmp -s $E/held-who $E/held-who-now
# The record survives a restart: a director taken out for patching does not come back alone.
kill "$(cat $E/dir1/lvsd.pid)"; sleep 0.5
$IP netns exec dir1 ./lvsd run -c $E/lvsd.yaml --state-dir $E/dir1/st --resync-interval 2s --metrics-listen 127.0.0.1:9475 >>$E/dir1/lvsd.log 2>&1 &
echo $! >$E/dir1/lvsd.pid
check "restarted, dir1 stays out of rotation" within 10 state_is dir1 drained
check "... announcing nothing" sh -c "! $IP -n dir1 addr show dev lvsd0 | grep -q $VIP/32"
t0=$(cs)
on dir1 ./lvsd undrain --director --reason "patched" --state-dir $E/dir1/st
check "undrain --director: dir1 announces again" within 10 announced dir1
check "... the router has three paths again" within 15 has_paths 3
echo "   three paths $(( ($(cs) - t0) * 10 )) ms after undrain"
check "... and dir1's VIP left lo" sh -c "! $IP -n dir1 addr show dev lo | grep -q $VIP/32"
check "lvsd status on dir1 says serving" state_is dir1 serving
sleep 3
load_stop
echo "   during the drain and the return: $(served $E/load-drain) requests served, $(failed $E/load-drain) failed"
check "no request failed during the planned drain and return" [ "$(failed $E/load-drain)" -eq 0 ]
check "... and requests were served throughout" [ "$(served $E/load-drain)" -gt 20 ]
check "held connections still answer" held_all_answer back
echo "   held connections' entries per director: $(carriers)"

echo "--- 2. unplanned: dir2's link lost"
check "dir2 holds a held connection's entry before its link goes" sh -c "[ \$($IP netns exec dir2 ipvsadm -Lnc | grep -c $VIP:7000) -gt 0 ]"
load_start $E/load-loss
sleep 1
$IP link set v-dir2-eth0 down
check "the router drops dir2's path (BGP hold time)" within 15 sh -c "[ \$($IP netns exec router /sbin/ip route show $VIP | grep -c 'nexthop via') -eq 2 ] && ! $IP netns exec router /sbin/ip route show $VIP | grep -q 172.16.1.12"
sleep 1
check "held connections still answer (dir2's moved to dir1 and dir3)" held_all_answer lost
sleep 2
load_stop
echo "   during the loss: $(served $E/load-loss) served, $(failed $E/load-loss) failed (those the router sent to dir2 before BGP's hold time ran out)"

echo "--- 3. dir2 rebuilt from nothing and added back"
kill "$(cat $E/dir2/lvsd.pid)" "$(cat $E/dir2/bird.pid)" 2>/dev/null; sleep 0.5
on dir2 ipvsadm -C; $IP -n dir2 link del lvsd0; rm -rf $E/dir2/st
$IP link set v-dir2-eth0 up
load_start $E/load-join
sleep 1
start_director dir2 172.16.1.12
check "dir2 announces once its table is programmed" within 20 announced dir2
check "the router has three paths again" within 20 has_paths 3
on router /sbin/ip route show $VIP
check "dir2 announced only after its table held the service" sh -c "[ \$(grep -n 'service TCP $VIP:80' $E/dir2/lvsd.log | head -n 1 | cut -d: -f1) -lt \$(grep -n 'announce: VIP $VIP' $E/dir2/lvsd.log | head -n 1 | cut -d: -f1) ]"
sleep 3
load_stop
echo "   during the join: $(served $E/load-join) served, $(failed $E/load-join) failed"
check "no request failed while dir2 joined" [ "$(failed $E/load-join)" -eq 0 ]
check "held connections still answer" held_all_answer joined
for d in dir1 dir2 dir3; do on $d ipvsadm -Sn >$E/table-$d; done
check "the three tables are identical again, line for line" sh -c "cmp -s $E/table-dir1 $E/table-dir2 && cmp -s $E/table-dir1 $E/table-dir3"
check "... and their fingerprints are equal again (the rebuilt director's included)" fingerprints_agree

[ "$FAIL" -eq 0 ] || show_logs
kill $(pidof tail) 2>/dev/null
for d in dir1 dir2 dir3; do kill "$(cat $E/$d/lvsd.pid)" "$(cat $E/$d/bird.pid)" 2>/dev/null; done
kill "$(cat $E/router.pid)" 2>/dev/null
sleep 0.5
result directors
