#!/bin/sh
# End-to-end tests of day-2 overrides in the seed's lab, run as root inside the test VM (busybox
# sh), with live traffic from the client: `lvsd drain --for 20s --wait` sends no new connection
# to the drained real while its established one finishes, returns when it has, and the real
# takes traffic again by itself when the drain ends; a weight override changes the share of new
# connections as the kernel's counters show; overrides survive a kill and start of the daemon;
# a client of the socket's group that is not root reads them but cannot change them.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/overrides
ST=$E/state
rm -rf $E
mkdir -p $E
on() { h=$1; shift; $IP netns exec "$h" "$@"; }
D() { on director "$@"; }
lvsd() { D ./lvsd "$@" --state-dir $ST; }
has() { D ipvsadm -Sn | grep -q -F -- "$1"; }
logged() { grep -q -F -- "$1" $E/daemon.log; }
held_on() { D ipvsadm -Lnc | grep ESTABLISHED | grep -q "$1"; }
conns() { D ipvsadm -Ln --stats --exact -t $VIP:80 | awk -v r="$1:80" '$2 == r { print $3 }'; }
# A connection that stays open for $1 seconds (the request is finished only then).
hold() { ( printf 'GET / HTTP/1.0\r\n'; sleep "$1"; printf '\r\n' ) | on client busybox nc -w 30 $VIP 80 >"$2" & }
# Not through D: $! must be the daemon itself (ip netns exec execs it), not a subshell.
start_daemon() { $IP netns exec director ./lvsd run -c $E/lvsd.yaml --state-dir $ST --resync-interval 5s >>$E/daemon.log 2>&1 & pid=$!; }
gone() { [ ! -e /proc/$1 ] || grep -q '^[0-9]* ([^)]*) Z' /proc/$1/stat; }
R1="-a -t $VIP:80 -r 172.16.1.101:80 -g"

lab_down
lab_up
# wrr: the share of new connections follows the weights exactly (wlc would too, on average).
sed 's/scheduler: wlc/scheduler: wrr/' seed-dr.yaml >$E/lvsd.yaml && chmod 644 $E/lvsd.yaml
for rs in rs1 rs2; do on $rs ./lvsd apply -c $E/lvsd.yaml --role real-server --state-dir $E/st-$rs >/dev/null; done
start_daemon
check "the daemon converges on the seed's table" within 5 has "$R1 -w 1"

echo "--- 1. drain --for 20s --wait with live traffic"
# Connections held 6 s, until one is on .101.
i=0
while [ $i -lt 4 ] && ! held_on 172.16.1.101; do
  hold 6 $E/held$i
  i=$((i + 1))
  sleep 0.5
done
D ipvsadm -Lnc
check "a connection is established to .101" held_on 172.16.1.101
d0=$(cs)
lvsd drain web 172.16.1.101 --for 20s --wait --reason "kernel upgrade" >$E/drain.out 2>&1 &
drain=$!
check ".101 goes to weight 0 and stays in the table" within 2 has "$R1 -w 0"
n=0; other=0
while [ $n -lt 10 ]; do
  lab_request | grep -q 'this is 172.16.1.102' || other=$((other + 1))
  n=$((n + 1))
done
check "while drained, every new connection goes to .102 ($n requests, $other elsewhere)" [ $other -eq 0 ]
check "... while --wait is still waiting for .101's connection" [ -e /proc/$drain ]
wait $drain; rc=$?
t1=$(cs)
cat $E/drain.out
echo "   drain --wait returned after $(( (t1 - d0) / 100 )).$(( (t1 - d0) % 100 / 10 )) s"
check "drain --wait exits 0" [ $rc -eq 0 ]
check "... once .101 had no connection left" grep -q 'drained: no connections left' $E/drain.out
check "... after showing progress" grep -q '^waiting (' $E/drain.out
check "... and not before the held connection ended (~6 s after it opened)" [ $((t1 - d0)) -ge 300 ]
check "the established connection finished on .101" sh -c "cat $E/held* | grep -q 'this is 172.16.1.101'"
check "the drain is logged with uid, pid and reason" sh -c "grep 'override set' $E/daemon.log | grep -q 'uid=0' && grep 'override set' $E/daemon.log | grep -q 'kernel upgrade'"

echo "--- 2. the drain survives a kill and start of the daemon"
old=$pid
kill -9 $pid
check "the daemon is killed (SIGKILL)" within 3 gone $old
wait $old 2>/dev/null
start_daemon
check "a new daemon starts" within 5 sh -c "grep -c 'lvsd running' $E/daemon.log | grep -q 2"
check "the restarted daemon (pid $pid) keeps the override" within 5 logged "override kept from before the start"
sleep 1
check "... .101 stays at weight 0 through the first pass" has "$R1 -w 0"
check "... no write of the restarted daemon puts it back" sh -c "! grep -q '101:80 of TCP 172.16.1.50:80: weight 0 → 1' $E/daemon.log"


echo "--- 3. who may change: reading is open to the socket's group"
check "the socket is mode 0660" [ "$(stat -c %a $ST/lvsd.sock)" = 660 ]
D /usr/bin/setpriv --reuid=65534 --regid=0 --clear-groups ./lvsd overrides --state-dir $ST >$E/nobody.out 2>&1; rc=$?
cat $E/nobody.out
check "uid 65534 in the socket's group lists the overrides" sh -c "[ $rc -eq 0 ] && grep -q '172.16.1.101:80: weight 1 in the file, 0 by drain until' $E/nobody.out"
D /usr/bin/setpriv --reuid=65534 --regid=0 --clear-groups ./lvsd undrain web 172.16.1.101 --state-dir $ST >$E/nobody.out 2>&1; rc=$?
cat $E/nobody.out
check "... but cannot undrain (exit 1, said why)" sh -c "[ $rc -eq 1 ] && grep -q 'uid 65534 may not change overrides' $E/nobody.out"
check "... and the refusal is logged" logged "override refused: uid 65534"
check "... and .101 stays drained" has "$R1 -w 0"
lvsd status >$E/status.out
cat $E/status.out
check "lvsd status shows the override next to the file's value" grep -q "override: .*weight 1 in the file, 0 by drain until .*'kernel upgrade', uid 0" $E/status.out
lvsd plan -c $E/lvsd.yaml >$E/plan.out; rc=$?
cat $E/plan.out
check "lvsd plan is in sync with the override laid over the file, and shows it" sh -c "[ $rc -eq 0 ] && grep -q 'override: .*0 by drain' $E/plan.out"
lvsd overrides --json >$E/list.json
check "overrides --json" grep -q '"overrides":\[{' $E/list.json

echo "--- 4. the drain ends by itself: .101 takes traffic again with no edit"
check ".101 is back at weight 1 about 20 s after the drain" within 20 has "$R1 -w 1"
t2=$(cs)
echo "   back $(( (t2 - d0) / 100 )).$(( (t2 - d0) % 100 / 10 )) s after the drain was set (--for 20s)"
check "... not before its 20 s" [ $((t2 - d0)) -ge 1950 ]
check "... logged as its end" logged "override ended (its time is up)"
n=0; hits=0
while [ $n -lt 6 ]; do
  lab_request | grep -q 'this is 172.16.1.101' && hits=$((hits + 1))
  n=$((n + 1))
done
check ".101 takes new connections again ($hits of $n)" [ $hits -ge 2 ]

echo "--- 5. a weight override changes the share of new connections"
lvsd weight web 172.16.1.102 3 --for 10m --reason "bigger box" >$E/weight.out 2>&1; rc=$?
cat $E/weight.out
check "weight exits 0" [ $rc -eq 0 ]
check ".102 goes to weight 3" within 2 has "-a -t $VIP:80 -r 172.16.1.102:80 -g -w 3"
sleep 2.5 # the kernel sums its counters every 2 s: what came before is counted by now
b1=$(conns 172.16.1.101); b2=$(conns 172.16.1.102)
n=0
while [ $n -lt 40 ]; do lab_request >/dev/null; n=$((n + 1)); done
sleep 2.5
D ipvsadm -Ln --stats --exact
c1=$(( $(conns 172.16.1.101) - b1 )); c2=$(( $(conns 172.16.1.102) - b2 ))
echo "   new connections: .101 $c1, .102 $c2 (weights 1 and 3)"
check "the kernel's counters show the 1:3 share ($c1:$c2)" sh -c "[ $((c1 + c2)) -ge 38 ] && [ $c2 -ge $((c1 * 5 / 2)) ] && [ $c2 -le $((c1 * 7 / 2)) ]"
lvsd restore web 172.16.1.102 --reason "test over" >$E/restore.out 2>&1; rc=$?
cat $E/restore.out
check "restore brings back the file's weight" sh -c "[ $rc -eq 0 ]" && check "... in the table" within 2 has "-a -t $VIP:80 -r 172.16.1.102:80 -g -w 1"
lvsd overrides >$E/none.out
check "no override is left" grep -q '^no overrides' $E/none.out
kill $pid; wait $pid 2>/dev/null

echo "--- daemon log ---"; cat $E/daemon.log
lab_down
result overrides
