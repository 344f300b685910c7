#!/bin/sh
# Faults, in the test VM (busybox sh): lvsd killed with SIGKILL in the middle of a large apply,
# config files written in pieces, its directory replaced, a scheduler module missing, the
# kernel refusing every command, and real traffic while the daemon takes 100 edits in a row.
# Each check looks at the kernel's table or at real requests. Ends with a "test result:" line.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/faults
mkdir -p $E
on() { h=$1; shift; $IP netns exec "$h" "$@"; }
services() { on "$1" ipvsadm -Sn | grep -c '^-A'; }
fresh_ns() { lab_routed_ns "$@"; }
table() { on "$1" ipvsadm -Sn | grep -v 10.99.0.1 | sort; }
gen() { # N: N services of two reals each
  awk -v n="$1" 'BEGIN {
    print "services:"
    for (i = 0; i < n; i++)
      printf "  - address: 10.10.%d.%d:80\n    scheduler: rr\n    reals:\n      - address: 10.20.0.1\n      - address: 10.20.0.2\n", int(i / 250), i % 250 + 1
  }'
}
first_write() { # ns pid: returns once a service of lvsd's is in the kernel (or pid ended)
  $IP netns exec "$1" sh -c "until grep -q ' 0A0A' /proc/net/ip_vs || [ ! -e /proc/$2 ]; do :; done"
}
foreign() { # a service somebody else owns, in namespace $1
  on "$1" ipvsadm -A -t 10.99.0.1:80 -s lc
  on "$1" ipvsadm -a -t 10.99.0.1:80 -r 10.99.0.2 -g -w 7
}

lab_down
echo "--- 1. SIGKILL in the middle of applying 2,000 services"
gen 2000 >$E/big.yaml
fresh_ns ref
t0=$(cs)
on ref ./lvsd apply -c $E/big.yaml --state-dir $E/st-ref >/dev/null
took=$(( ($(cs) - t0) * 10000 )) # microseconds
echo "   a clean apply takes $((took / 1000)) ms"
table ref >$E/ref.rules
check "reference: a clean apply gives 2,000 services" [ "$(services ref)" -eq 2000 ]
caught=0 n=0 attempt=0
while [ $caught -eq 0 ] && [ $attempt -lt 8 ]; do
  attempt=$((attempt + 1))
  ns=k$attempt
  fresh_ns $ns
  foreign $ns
  $IP netns exec $ns ./lvsd apply -c $E/big.yaml --state-dir $E/st-$ns >/dev/null 2>&1 &
  pid=$!
  # The writes go out in chunks of about 800 operations, each acknowledged before the next:
  # kill as soon as the first of lvsd's services (10.10.x.y = 0A0A…) is in the kernel.
  first_write $ns $pid
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  n=$(($(services $ns) - 1))
  echo "   attempt $attempt: killed with $n of 2000 services in the table"
  [ $n -gt 0 ] && [ $n -lt 2000 ] && caught=1
done
check "an apply was killed with the table half written ($n of 2000)" [ $caught -eq 1 ]
on $ns ./lvsd apply -c $E/big.yaml --state-dir $E/st-$ns >$E/apply2.out 2>&1; rc=$?
tail -n 2 $E/apply2.out
check "the next apply exits 0" [ $rc -eq 0 ]
check "... and the table is exactly the config's (nothing missing, nothing twice)" sh -c "[ \"\$($IP netns exec $ns ipvsadm -Sn | grep -v 10.99.0.1 | sort)\" = \"\$(cat $E/ref.rules)\" ]"
check "... with the foreign service untouched" sh -c "$IP netns exec $ns ipvsadm -Sn | grep -q -- '-a -t 10.99.0.1:80 -r 10.99.0.2:80 -g -w 7'"
on $ns ./lvsd apply -c $E/big.yaml --state-dir $E/st-$ns >$E/apply3.out 2>&1
check "... and a third apply has nothing to do" grep -q 'in sync: nothing to change' $E/apply3.out
# The same, with a daemon picking up after the kill.
fresh_ns d1
foreign d1
$IP netns exec d1 ./lvsd apply -c $E/big.yaml --state-dir $E/st-d1 >/dev/null 2>&1 &
pid=$!
first_write d1 $pid
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
echo "   killed with $(($(services d1) - 1)) services in the table; starting the daemon"
$IP netns exec d1 ./lvsd run -c $E/big.yaml --state-dir $E/st-d1 >$E/d1.log 2>&1 &
dpid=$!
converged_d1() { [ "$(table d1)" = "$(cat $E/ref.rules)" ]; }
check "a daemon started after the kill converges exactly" within 20 converged_d1
check "... leaving the foreign service alone" sh -c "$IP netns exec d1 ipvsadm -Sn | grep -q -- '-a -t 10.99.0.1:80 -r 10.99.0.2:80 -g -w 7'"
kill $dpid; wait $dpid 2>/dev/null
for ns in ref k1 k2 k3 k4 k5 k6 k7 k8 d1; do $IP netns del $ns 2>/dev/null; done

echo "--- 2. a config written in pieces never reaches the kernel as the first piece"
fresh_ns w
gen 4 >$E/four.yaml
mkdir -p $E/cfg && cp $E/four.yaml $E/cfg/lvsd.yaml
$IP netns exec w ./lvsd run -c $E/cfg/lvsd.yaml --state-dir $E/st-w --resync-interval 30s >$E/w.log 2>&1 &
wpid=$!
check "the daemon applies the four services" within 5 sh -c "[ \$($IP netns exec w ipvsadm -Sn | grep -c '^-A') -eq 4 ]"
# (a) the first two services (a valid file on its own!), then the rest 50 ms later
head -n 10 $E/four.yaml >$E/half
tail -n +11 $E/four.yaml >$E/rest
: >$E/seen
( i=0; while [ $i -lt 40 ]; do $IP netns exec w ipvsadm -Sn | grep -c '^-A' >>$E/seen; sleep 0.05; i=$((i + 1)); done ) &
watcher=$!
cat $E/half >$E/cfg/lvsd.yaml
sleep 0.05
cat $E/rest >>$E/cfg/lvsd.yaml
wait $watcher
check "written in two pieces 50 ms apart: the table never lost a service" sh -c "! grep -q -v '^4$' $E/seen"
# (b) a piece that breaks off mid-entry, the rest a second later
head -c 150 $E/four.yaml >$E/cfg/lvsd.yaml
sleep 1
check "a broken first piece is rejected with its location" within 3 grep -q 'lvsd.yaml:[0-9]*:[0-9]*:' $E/w.log
check "... and the table keeps all four services" [ "$(services w)" -eq 4 ]
tail -c +151 $E/four.yaml >>$E/cfg/lvsd.yaml
sleep 0.6
check "... until the rest arrives" [ "$(services w)" -eq 4 ]

echo "--- 3. the config directory replaced"
mv $E/cfg $E/cfg.old
mkdir $E/cfg
sleep 0.5
check "an empty new directory changes nothing" [ "$(services w)" -eq 4 ]
kill $wpid; wait $wpid 2>/dev/null
mkdir -p $E/cfg2 && cp $E/four.yaml $E/cfg2/lvsd.yaml
$IP netns exec w ./lvsd run -c $E/cfg2/lvsd.yaml --state-dir $E/st-w --resync-interval 1s >$E/w2.log 2>&1 &
wpid=$!
sleep 1
mv $E/cfg2 $E/cfg2.old
mkdir $E/cfg2
gen 5 >$E/cfg2/lvsd.yaml
check "a new file in the replaced directory is picked up by the resync" within 4 sh -c "[ \$($IP netns exec w ipvsadm -Sn | grep -c '^-A') -eq 5 ]"
rm -rf $E/cfg2
check "the directory gone: the last good config stays enforced" sh -c "sleep 2; [ \$($IP netns exec w ipvsadm -Sn | grep -c '^-A') -eq 5 ]"
on w ipvsadm -d -t 10.10.0.1:80 -r 10.20.0.1:80
check "... drift is still repaired from it" within 4 sh -c "$IP netns exec w ipvsadm -Sn | grep -q -- '-a -t 10.10.0.1:80 -r 10.20.0.1:80'"
kill $wpid; wait $wpid 2>/dev/null
$IP netns del w

echo "--- 4. a scheduler module missing: that service is reported, the others converge"
fresh_ns s
rmmod ip_vs_sed
cat >$E/sched.yaml <<'YAML'
services:
  - {name: fine, address: 10.30.0.1:80, scheduler: rr, reals: [{address: 10.30.0.11}]}
  - {name: needs-sed, address: 10.30.0.2:80, scheduler: sed, reals: [{address: 10.30.0.12}]}
  - {name: also-fine, address: 10.30.0.3:80, scheduler: wlc, reals: [{address: 10.30.0.13}]}
YAML
on s ./lvsd apply -c $E/sched.yaml --state-dir $E/st-s >$E/sched.out 2>&1; rc=$?
cat $E/sched.out
check "apply exits 1" [ $rc -eq 1 ]
check "... naming the missing module" grep -q 'ip_vs_sed' $E/sched.out
check "... while the other services converged" sh -c "$IP netns exec s ipvsadm -Sn | grep -q -- '-A -t 10.30.0.1:80 -s rr' && $IP netns exec s ipvsadm -Sn | grep -q -- '-a -t 10.30.0.3:80 -r 10.30.0.13:80'"
insmod "$(find /lib/modules -name ip_vs_sed.ko | head -n 1)"
on s ./lvsd apply -c $E/sched.yaml --state-dir $E/st-s >/dev/null 2>&1; rc=$?
check "with the module back, it converges" sh -c "[ $rc -eq 0 ] && $IP netns exec s ipvsadm -Sn | grep -q -- '-A -t 10.30.0.2:80 -s sed'"
$IP netns del s

echo "--- 5. the kernel refuses every command: clear errors, backoff, no busy loop"
fresh_ns p
mkdir -p $E/st-p && chown 65534:65534 $E/st-p
$IP netns exec p /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all ./lvsd run -c $E/four.yaml --state-dir $E/st-p --resync-interval 4s >$E/p.log 2>&1 &
ppid=$!
sleep 6
kill $ppid; wait $ppid 2>/dev/null
grep 'retrying' $E/p.log | head -n 5
attempts=$(grep -c 'reconcile failed' $E/p.log)
check "the error says what is missing" grep -q 'needs CAP_NET_ADMIN' $E/p.log
check "the retries back off (0.5 s, 1 s, 2 s, then the resync interval)" sh -c "grep -q 'retrying in 500ms' $E/p.log && grep -q 'retrying in 1s' $E/p.log && grep -q 'retrying in 2s' $E/p.log"
check "no busy loop: $attempts attempts in 6 s" [ "$attempts" -le 6 ]
$IP netns del p

echo "--- 6. traffic continuity: 100 edits under load, zero failed requests"
lab_up
lab_real_server rs3 172.16.1.103
lab_real_server rs4 172.16.1.104
cp seed-dr.yaml $E/seed.yaml
for rs in rs1 rs2 rs3 rs4; do on $rs ./lvsd apply -c $E/seed.yaml --role real-server --state-dir $E/st-$rs >/dev/null; done
mkdir -p $E/live
edit() { # n: the n-th edit: .101 (changing weight) and .104 always in; .102 and .103 come and go
  w1=$(($1 % 5 + 1))
  {
    echo "host: {role: director, interface: eth0}"
    echo "services:"
    echo "  - name: web"
    echo "    address: 172.16.1.50:80"
    echo "    scheduler: wrr"
    echo "    drain_timeout: 5s"
    echo "    reals:"
    echo "      - {address: 172.16.1.101, weight: $w1}"
    [ $(($1 % 3)) -ne 0 ] && echo "      - {address: 172.16.1.102, weight: $(($1 % 4))}"
    [ $(($1 % 2)) -eq 0 ] && echo "      - {address: 172.16.1.103, weight: 2}"
    echo "      - {address: 172.16.1.104, weight: 1}"
  } >$E/live/.lvsd.yaml.tmp
  mv $E/live/.lvsd.yaml.tmp $E/live/lvsd.yaml
}
edit 1
on director ./lvsd apply -c $E/live/lvsd.yaml --state-dir $E/st-live >/dev/null
$IP netns exec director ./lvsd run -c $E/live/lvsd.yaml --state-dir $E/st-live --resync-interval 5s >$E/live.log 2>&1 &
lpid=$!
sleep 1
: >$E/answers
rm -f $E/stop
( while [ ! -e $E/stop ]; do r=$(lab_request); echo "answer: $r" >>$E/answers; done ) &
client=$!
applied() { [ "$(grep -c 'config changed' $E/live.log)" -ge "$1" ]; }
i=2
while [ $i -le 101 ]; do
  edit $i
  # the next edit once this one is in (at most 3 s), so that each of the 100 is applied
  within 3 applied $((i - 1)) >/dev/null
  i=$((i + 1))
done
sleep 1
touch $E/stop
wait $client
kill $lpid; wait $lpid 2>/dev/null
total=$(grep -c '^answer:' $E/answers)
good=$(grep -c 'this is 172.16.1.10[1-4]<' $E/answers)
changes=$(grep -c 'config changed' $E/live.log)
echo "   $total requests, $good answered, $changes config changes applied"
check "the daemon took every one of the 100 edits ($changes)" [ "$changes" -ge 100 ]
check "every request during the edits was answered ($good of $total)" sh -c "[ $total -ge 100 ] && [ $good -eq $total ]"
grep -v 'this is' $E/answers | head -n 5
grep -E 'ERROR|refus' $E/live.log | head -n 5
check "all four real servers answered along the way" sh -c "grep -q 172.16.1.101 $E/answers && grep -q 172.16.1.102 $E/answers && grep -q 172.16.1.103 $E/answers && grep -q 172.16.1.104 $E/answers"

result faults
