#!/bin/sh
# The daemon under failure, in the seed's lab inside the test VM (busybox sh): a host part that
# cannot converge never holds back the table; READY comes though it never converges; a UDP
# real drained with a live flow stays until the flow's entry expires (or drain_timeout); one
# lvsd per state directory; a kill between recording intent and writing loses nothing. Every
# check is on the real kernel table, the host, the notify socket or lvsd's own answers.
# Ends with a "test result:" line.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/daemon
mkdir -p $E
on() { h=$1; shift; $IP netns exec "$h" "$@"; }
rule() { on director ipvsadm -Sn | grep -F -- "$1 -r $2 "; } # service real
weight_is() { rule "$1" "$2" | grep -q -- "-w $3\$"; }
absent() { ! rule "$1" "$2" >/dev/null; }
logged() { grep -q -F -- "$2" "$1"; }
status_has() { on director ./lvsd status --json --state-dir "$1" | grep -q -F -- "$2"; }
httpd_stop() { # host port
  for d in /proc/[0-9]*; do
    case "$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)" in
      *"httpd -p $2 -h /tmp/www-$1"*) kill "${d#/proc/}" ;;
    esac
  done
}

lab_down
lab_up
lab_director_by_hand

echo "--- 1. a host that lacks its interface does not hold the table back"
# The director's VIPs are to go on lvsd9, which does not exist yet; the table has http checks.
cat >$E/h.yaml <<'YAML'
host: {role: director, interface: lvsd9}
services:
  - name: web
    address: 172.16.1.50:80
    scheduler: rr
    check: {type: http, path: /, interval: 500ms, timeout: 500ms, rise: 1, fall: 2}
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
YAML
./notify-receiver $E/notify.sock 120 >$E/notify.log 2>&1 &
nr=$!
sleep 0.3
$IP netns exec director env NOTIFY_SOCKET=$E/notify.sock ./lvsd run -c $E/h.yaml --state-dir $E/st-h --resync-interval 3s >$E/h.log 2>&1 &
hpid=$!
check "READY=1 though the host part cannot converge" within 5 grep -q '^READY=1$' $E/notify.log
both_in() { weight_is "-t 172.16.1.50:80" 172.16.1.101:80 1 && weight_is "-t 172.16.1.50:80" 172.16.1.102:80 1; }
check "the table converges regardless: both reals in after their first checks" within 5 both_in
check "the host's failure is logged with what is missing" logged $E/h.log 'interface `lvsd9` does not exist'
check "STATUS says the table is in sync and the host is not, and why" grep -q '^STATUS=not in sync: host failing: interface `lvsd9` does not exist' $E/notify.log
check "lvsd status says the same" status_has $E/st-h '"host":"failing: interface `lvsd9` does not exist'
check "... and that the table is in sync" status_has $E/st-h '"table":"in sync"'
httpd_stop rs1 80
# fall x interval + timeout + 1 s
check "a real whose check fails is drained while the host still fails" within 2.5 weight_is "-t 172.16.1.50:80" 172.16.1.101:80 0
ino1=$(stat -c %i $E/st-h/health)
sleep 4
ino2=$(stat -c %i $E/st-h/health)
check "the health file is not rewritten while nothing changes (passes ran meanwhile)" [ "$ino1" = "$ino2" ]
$IP -n director link add lvsd9 type dummy
$IP -n director link set lvsd9 up
# Its backoff is capped at the resync period (3 s).
check "once the interface exists, the host converges on its own retry" within 5 sh -c "$IP -n director addr show dev lvsd9 | grep -q 172.16.1.50/32"
check "... and STATUS says in sync" within 2 grep -q '^STATUS=in sync: 1 services' $E/notify.log
on rs1 busybox httpd -p 80 -h /tmp/www-rs1
check "the real comes back" within 3 weight_is "-t 172.16.1.50:80" 172.16.1.101:80 1
kill $hpid $nr; wait $hpid 2>/dev/null
$IP -n director link del lvsd9
on director ipvsadm -C

echo "--- 2. a drained UDP real with a live flow stays until its entry expires"
# UDP entries expire 3 s after their last packet here (ipvsadm --set tcp tcpfin udp).
on director ipvsadm --set 0 0 3
udp() { # drain_timeout, then reals as ADDRESS:WEIGHT
  printf 'host: {role: director, interface: eth0}\nservices:\n  - name: dns\n    address: 172.16.1.50:5353\n    protocol: udp\n    scheduler: rr\n    drain_timeout: %s\n    reals:\n' "$1"
  shift
  for r in "$@"; do printf '      - {address: %s, weight: %s}\n' "${r%:*}" "${r#*:}"; done
}
# .102 at weight 0 takes no new flow: the flow below goes to .101.
udp 30s 172.16.1.101:1 172.16.1.102:0 >$E/u.yaml
$IP netns exec director ./lvsd run -c $E/u.yaml --state-dir $E/st-u --resync-interval 30s >$E/u.log 2>&1 &
upid=$!
check "the UDP service is there" within 10 weight_is "-u 172.16.1.50:5353" 172.16.1.101:5353 1
flow() { # a datagram every 0.3 s from one source port, while $E/flow exists
  touch $E/flow
  ( while [ -e $E/flow ]; do echo ping; sleep 0.3; done ) | $IP netns exec client socat -u - UDP:172.16.1.50:5353,sourceport=40000 &
}
flow
check "the flow has an entry on .101" within 3 sh -c "$IP netns exec director ipvsadm -Lnc | grep -q '172.16.1.101:5353'"
udp 30s 172.16.1.102:1 >$E/u.next && mv $E/u.next $E/u.yaml
check "removed from the file: drained to weight 0" within 2 weight_is "-u 172.16.1.50:5353" 172.16.1.101:5353 0
sleep 2
check "... and kept while the flow goes on (UDP entries count as inactive connections)" weight_is "-u 172.16.1.50:5353" 172.16.1.101:5353 0
check "... said in the log: waiting, with an inactive connection" within 3 logged $E/u.log 'inactive=1'
rm -f $E/flow
# The entry expires 3 s after the last datagram; the drain poll runs every 0.5 s.
check "deleted once the flow's entry expired" within 6 absent "-u 172.16.1.50:5353" 172.16.1.101:5353
udp 2s 172.16.1.101:1 172.16.1.102:0 >$E/u.next && mv $E/u.next $E/u.yaml
check ".101 is back" within 3 weight_is "-u 172.16.1.50:5353" 172.16.1.101:5353 1
sleep 4 # the first flow's entry is gone
flow
check "a new flow has an entry on .101" within 3 sh -c "$IP netns exec director ipvsadm -Lnc | grep -q '172.16.1.101:5353'"
udp 2s 172.16.1.102:1 >$E/u.next && mv $E/u.next $E/u.yaml
check "drained again" within 2 weight_is "-u 172.16.1.50:5353" 172.16.1.101:5353 0
check "... and deleted at drain_timeout (2 s) though the flow goes on" within 6 absent "-u 172.16.1.50:5353" 172.16.1.101:5353
rm -f $E/flow

echo "--- 3. one lvsd per table"
on director ./lvsd run -c $E/u.yaml --state-dir $E/st-u >$E/second.out 2>&1; rc=$?
cat $E/second.out
check "a second daemon on the same state directory exits 1" [ $rc -eq 1 ]
check "... naming the first one's pid" grep -q "lvsd run (pid $upid) already manages" $E/second.out
on director ./lvsd apply -c $E/u.yaml --state-dir $E/st-u >$E/apply.out 2>&1; rc=$?
cat $E/apply.out
check "an apply beside the daemon exits 1 naming it" sh -c "[ $rc -eq 1 ] && grep -q 'pid $upid' $E/apply.out"
check "the first daemon still answers on its status socket" status_has $E/st-u "\"pid\":$upid"
on director ./lvsd plan -c $E/u.yaml --state-dir $E/st-u >$E/plan.out 2>$E/plan.err; rc=$?
check "plan beside the daemon works (exit 0) and says a daemon manages the table" sh -c "[ $rc -eq 0 ] && grep -q 'pid $upid' $E/plan.err"
kill $upid; wait $upid 2>/dev/null
on director ipvsadm --set 900 120 300

echo "--- 4. killed between intent and write, and between write and record; then the services leave the file"
gen() { # N: N services of two reals each
  awk -v n="$1" 'BEGIN {
    print "services:"
    for (i = 0; i < n; i++)
      printf "  - address: 10.10.%d.%d:80\n    scheduler: rr\n    reals:\n      - address: 10.20.0.1\n      - address: 10.20.0.2\n", int(i / 250), i % 250 + 1
  }'
}
one() { printf 'services:\n  - address: 10.30.0.1:80\n    reals:\n      - address: 10.20.0.1\n'; }
gen 2000 >$E/big.yaml
one >$E/one.yaml
stopped() { [ "$(awk '{ print $3 }' /proc/$1/stat 2>/dev/null)" = T ]; }
for point in after-intent after-write; do
  ns=k$point
  lab_routed_ns $ns
  on $ns ipvsadm -A -t 10.99.0.1:80 -s lc
  on $ns ipvsadm -a -t 10.99.0.1:80 -r 10.99.0.2 -g -w 7
  st=$E/st-$point
  # LVSD_FAULT stops lvsd at that point; the SIGKILL then lands exactly there.
  $IP netns exec $ns env LVSD_FAULT=$point ./lvsd apply -c $E/big.yaml --state-dir $st >/dev/null 2>&1 &
  pid=$!
  check "$point: the apply reaches the point" within 20 stopped $pid
  kill -9 $pid; wait $pid 2>/dev/null
  n=$(($(on $ns ipvsadm -Sn | grep -c '^-A') - 1))
  echo "   killed $point with $n of 2000 services in the table"
  # The file now has none of them: whatever the kill left in the kernel is lvsd's, and goes.
  on $ns ./lvsd apply --force -c $E/one.yaml --state-dir $st >$E/after-$point.out 2>&1; rc=$?
  tail -n 2 $E/after-$point.out
  check "$point: the next apply exits 0" [ $rc -eq 0 ]
  check "... removes every service the killed apply wrote ($n)" sh -c "[ \$($IP netns exec $ns ipvsadm -Sn | grep -c '^-A -t 10.10.') -eq 0 ]"
  check "... keeps the foreign service" sh -c "$IP netns exec $ns ipvsadm -Sn | grep -q -- '-a -t 10.99.0.1:80 -r 10.99.0.2:80 -g -w 7'"
  check "... and has the file's one service" sh -c "$IP netns exec $ns ipvsadm -Sn | grep -q -- '-A -t 10.30.0.1:80'"
  $IP netns del $ns
done
check "killed after the write, the table held the services (the window that lost them before)" [ "$n" -eq 2000 ]

result daemon
