#!/bin/sh
# End-to-end tests of the reconciler in the seed's LVS-DR lab, run as root inside the test VM
# (busybox sh). The lab is the seed's: director 172.16.1.100 with VIP 172.16.1.50, real servers
# .101 .102 .103 prepared as the seed prepares them, a client .200. Every check is on the real
# kernel table (ipvsadm -Sn) or on real traffic from the client. Convergence deadlines are
# measured on /proc/uptime. Ends with a cargo-style "test result:" line for tests/run.sh.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/e2e
C=$E/cm                 # the config, laid out as a Kubernetes ConfigMap volume
ST=$E/state
mkdir -p $E $ST
D() { $IP netns exec director "$@"; }
lvsd() { $IP netns exec director ./lvsd "$@"; }
table() { D ipvsadm -Sn | sort; }
has() { D ipvsadm -Sn | grep -q -F -- "$1"; }
lacks() { ! has "$1"; }
same_table() { [ "$(table)" = "$1" ]; }
gone() { [ ! -e /proc/$1 ] || grep -q '^[0-9]* ([^)]*) Z' /proc/$1/stat; }
table_without_foreign_is() { [ "$(D ipvsadm -Sn | grep -v 172.16.1.60 | sort)" = "$1" ]; }
established() { D ipvsadm -Lnc | grep -q ESTABLISHED; }
logged() { grep -q -F -- "$1" $E/daemon.log; }

# --- configs -------------------------------------------------------------------------------
# svc REAL-LINES [SCHED] [EXTRA-SERVICE]: the seed's service with the given reals.
conf() {
  cat <<YAML
# the seed's director, managed by lvsd
services:
  - name: web
    address: 172.16.1.50:80
    scheduler: ${2:-wlc}
    forward: dr
    drain_timeout: 8s
    reals:
$1
$3
host:                     # as in examples/seed-dr.yaml: the director's VIP is there already
  role: director
  interface: eth0
YAML
}
r() { printf '      - address: %s\n        weight: %s\n' "$1" "${2:-1}"; }
web8080='  - name: alt
    address: 172.16.1.50:8080
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102'

# The four ways a config changes under a running daemon.
edit_in_place() { cat >$C/lvsd.yaml; }
edit_rename() { cat >$C/..data/.lvsd.yaml.tmp && mv $C/..data/.lvsd.yaml.tmp $C/..data/lvsd.yaml; }
edit_swap() { # what the kubelet does: new timestamped dir, ..data symlink renamed over
  n=$(($(ls -d $C/..v* | wc -l) + 1)) # (runs in a pipeline's subshell: no counter survives)
  mkdir $C/..v$n && cat >$C/..v$n/lvsd.yaml
  ln -s ..v$n $C/..data_tmp
  mv -T $C/..data_tmp $C/..data 2>/dev/null || { rm $C/..data && mv $C/..data_tmp $C/..data; }
}
edit_unseen() { # through a hard link with another name: the watcher ignores it; SIGHUP and the resync do not
  ln -f $C/..data/lvsd.yaml $C/..data/hup-edit
  cat >$C/..data/hup-edit
}

echo "### lab: the seed's hosts"
lab_down # whatever a scenario run before it in this VM left
lab_up
lab_real_server rs3 172.16.1.103
lab_real_server rs4 172.16.1.104
lab_real_servers_by_hand rs1 rs2 rs3 rs4
lab_director_by_hand
cp seed-dr.yaml $E/seed-dr.yaml

echo "### 1. check, plan, apply"
check "check accepts examples/seed-dr.yaml" lvsd check -c $E/seed-dr.yaml
sed 's/scheduler: wlc/scheduler: dr/' $E/seed-dr.yaml >$E/mistake.yaml
lvsd check -c $E/mistake.yaml 2>$E/mistake.out; rc=$?
cat $E/mistake.out
check "check rejects the seed's -s dr with the fix (exit 1)" \
  sh -c "[ $rc -eq 1 ] && grep -q -F '$E/mistake.yaml:10:16: \`dr\` is a forwarding method, not a scheduler; write \`forward: dr\` and pick a scheduler such as wlc' $E/mistake.out"
lvsd plan -c $E/seed-dr.yaml --state-dir $ST; rc=$?
check "plan on the empty table exits 2 (changes pending)" [ $rc -eq 2 ]
check "plan changed nothing" [ -z "$(D ipvsadm -Sn)" ]
lvsd apply -c $E/seed-dr.yaml --state-dir $ST; rc=$?
check "apply exits 0" [ $rc -eq 0 ]
D ipvsadm -Ln
check "the table is the seed's: -A -t 172.16.1.50:80 -s wlc, two -g reals" same_table "$(printf '%s\n' '-A -t 172.16.1.50:80 -s wlc' '-a -t 172.16.1.50:80 -r 172.16.1.101:80 -g -w 1' '-a -t 172.16.1.50:80 -r 172.16.1.102:80 -g -w 1' | sort)"
for i in 1 2 3 4 5 6 7 8 9 10; do lab_request; done | tee $E/answers
n1=$(grep -c 172.16.1.101 $E/answers); n2=$(grep -c 172.16.1.102 $E/answers)
check "the client is answered by both real servers ($n1 / $n2)" [ "$n1" -ge 4 -a "$n2" -ge 4 ]
check "answers alternate between the real servers" sh -c "! uniq -d $E/answers | grep -q ."
lvsd plan -c $E/seed-dr.yaml --state-dir $ST; rc=$?
check "plan then exits 0 (in sync)" [ $rc -eq 0 ]
before=$(table)
lvsd apply -c $E/seed-dr.yaml --state-dir $ST >$E/apply2.out; rc=$?
cat $E/apply2.out
check "a second apply changes nothing" sh -c "[ $rc -eq 0 ] && grep -q 'in sync: nothing to change' $E/apply2.out && ! grep -q '^[-+~] ' $E/apply2.out"
check "... and the table is as it was" same_table "$before"

echo "### 2. the daemon: edits through every path converge within 2 s"
mkdir -p $C/..v1
cp $E/seed-dr.yaml $C/..v1/lvsd.yaml
ln -s ..v1 $C/..data
ln -s ..data/lvsd.yaml $C/lvsd.yaml
# Started directly (not through the lvsd function) so that $! is the daemon itself.
$IP netns exec director ./lvsd run -c $C/lvsd.yaml --state-dir $ST --resync-interval 3s >$E/daemon.log 2>&1 &
pid=$!
sleep 2
check "the daemon adopts the applied table: no writes at start" sh -c "! grep -q ' INFO [-+~] ' $E/daemon.log"
touch $E/traffic.on
( while [ -f $E/traffic.on ]; do
    a=$(lab_request)
    case "$a" in *"this is"*) echo "$(cs) $a" ;; *) echo "$(cs) FAILED REQUEST: $a" ;; esac
    sleep 0.2
  done >$E/traffic ) &

conf "$(r 172.16.1.101; r 172.16.1.102; r 172.16.1.103)" | edit_in_place
check "add a real (in-place write)" within 2 has "-a -t 172.16.1.50:80 -r 172.16.1.103:80 -g -w 1"
conf "$(r 172.16.1.101 3; r 172.16.1.102; r 172.16.1.103)" | edit_rename
check "change a weight (atomic rename)" within 2 has "-r 172.16.1.101:80 -g -w 3"
conf "$(r 172.16.1.101 3; r 172.16.1.102 0; r 172.16.1.103)" | edit_swap
check "drain a real, weight 0 (ConfigMap ..data swap)" within 2 has "-r 172.16.1.102:80 -g -w 0"
conf "$(r 172.16.1.101 3; r 172.16.1.102 0; r 172.16.1.103)" rr | edit_unseen
kill -HUP $pid
check "change the scheduler (an edit the watcher cannot see, then SIGHUP)" within 2 has "-A -t 172.16.1.50:80 -s rr"
conf "$(r 172.16.1.101 4; r 172.16.1.102 0; r 172.16.1.103)" rr | edit_unseen
check "an edit the watcher cannot see, without SIGHUP, is taken by the next resync (3 s)" within 6 has "-r 172.16.1.101:80 -g -w 4"
conf "$(r 172.16.1.101 3; r 172.16.1.102 0; r 172.16.1.103)" rr "$web8080" | edit_in_place
check "add a service (in-place write)" within 2 has "-A -t 172.16.1.50:8080 -s wlc"
conf "$(r 172.16.1.101 3; r 172.16.1.102 0; r 172.16.1.103)" rr | edit_rename
check "remove a service (atomic rename)" within 2 lacks "172.16.1.50:8080"
conf "$(r 172.16.1.101 3; r 172.16.1.102 0)" rr | edit_swap
check "remove a real (ConfigMap ..data swap): drained at once" within 2 has "-r 172.16.1.103:80 -g -w 0"
# It served requests: the kernel keeps the closed connections' entries for a while (counted
# as inactive); a drained TCP real waits only for established connections (or drain_timeout).
check "... and deleted with its closed connections' entries, which carry nothing" within 15 lacks "172.16.1.103"
conf "$(r 172.16.1.101 3; r 172.16.1.102 1)" rr | edit_unseen
kill -HUP $pid
check "undrain a real (SIGHUP)" within 2 has "-r 172.16.1.102:80 -g -w 1"
check "edits were in place: the service was never re-created or deleted" \
  sh -c "! grep -q -F '+ service TCP 172.16.1.50:80 ' $E/daemon.log && ! grep -q -F -- '- service TCP 172.16.1.50:80 ' $E/daemon.log && grep -q -F '~ service TCP 172.16.1.50:80: scheduler wlc → rr' $E/daemon.log"

echo "### 3. a broken edit is rejected with its location; the table stays; the daemon lives"
before=$(table)
conf "$(r 172.16.1.101 3; r 172.16.1.102 -1)" rr | edit_in_place
check "the daemon logs file:line:col and the problem" within 2 logged "$C/lvsd.yaml:12:17: weight -1 is out of range"
sleep 1
check "the table is untouched" same_table "$before"
check "the daemon is still running" kill -0 $pid
conf "$(r 172.16.1.101 3; r 172.16.1.102 1; r 172.16.1.103 2)" rr | edit_in_place
check "the fixed edit converges" within 2 has "-r 172.16.1.103:80 -g -w 2"
rm $C/lvsd.yaml
sleep 1
check "a deleted config file changes nothing" has "-r 172.16.1.103:80 -g -w 2"
check "... and the daemon lives" kill -0 $pid
ln -s ..data/lvsd.yaml $C/lvsd.yaml

echo "### 4. no client request failed during the edits of 2 and 3"
rm $E/traffic.on
sleep 3
total=$(wc -l <$E/traffic); fails=$(grep -c FAILED $E/traffic)
echo "   $total requests during the edits, $fails failed"; grep FAILED $E/traffic
check "every client request during the edits succeeded ($total requests)" [ "$total" -ge 10 -a "$fails" -eq 0 ]

echo "### 5. drift is repaired by the resync; foreign services survive"
before=$(table)
D ipvsadm -e -t 172.16.1.50:80 -r 172.16.1.101:80 -g -w 9
D ipvsadm -d -t 172.16.1.50:80 -r 172.16.1.102:80
D ipvsadm -a -t 172.16.1.50:80 -r 172.16.1.104:80 -g -w 1
D ipvsadm -E -t 172.16.1.50:80 -s lc
D ipvsadm -A -t 172.16.1.60:80 -s rr
D ipvsadm -a -t 172.16.1.60:80 -r 172.16.1.101:80 -g -w 1
foreign="-A -t 172.16.1.60:80 -s rr"
check "changes made with ipvsadm are repaired by the next resync" within 6 table_without_foreign_is "$before"
sleep 4
check "the foreign service survives every pass" has "$foreign"
check "... with its real" has "-a -t 172.16.1.60:80 -r 172.16.1.101:80 -g -w 1"
lvsd plan -c $C/lvsd.yaml --state-dir $ST >$E/plan.out; rc=$?
cat $E/plan.out
check "plan lists the foreign service and exits 0" sh -c "[ $rc -eq 0 ] && grep -q 'foreign: service TCP 172.16.1.60:80' $E/plan.out"

echo "### 6. a held connection drains before its real is deleted"
( printf 'GET / HTTP/1.0\r\n'; sleep 6; printf '\r\n' ) | $IP netns exec client busybox nc -w 15 172.16.1.50 80 >$E/held &
held=$!
within 3 established
D ipvsadm -Lnc
R=$(D ipvsadm -Lnc | awk '/ESTABLISHED/ { print $6; exit }')
echo "   the held connection went to $R"
keep=""
for a in 172.16.1.101 172.16.1.102 172.16.1.103; do [ "$a:80" = "$R" ] || keep="$keep$(r $a)
"; done
conf "$keep" rr | edit_in_place
check "the real holding a connection goes to weight 0" within 2 has "-r $R -g -w 0"
sleep 2
check "... and stays while the connection is open" has "-r $R -g -w 0"
wait $held
cat $E/held; echo
check "the held connection kept working to the end" grep -q "this is ${R%:80}" $E/held
check "the drained real is deleted once the connection closed (its closed entry is not waited for)" within 6 lacks "-r $R"

echo "### 7. restart: the table does not change"
before=$(table)
kill -TERM $pid
check "SIGTERM stops the daemon" within 3 gone $pid
check "the table stays after the daemon stops" same_table "$before"
$IP netns exec director ./lvsd run -c $C/lvsd.yaml --state-dir $ST --resync-interval 3s >$E/daemon2.log 2>&1 &
pid=$!
sleep 3
check "a restarted daemon writes nothing" sh -c "! grep -q ' INFO [-+~] ' $E/daemon2.log"
check "the table is unchanged after the restart" same_table "$before"

echo "### 8. the guard refuses an emptied file; the director keeps its VIPs"
web51='  - name: web51
    address: 172.16.1.51:80
    reals:
      - address: 172.16.1.101'
vip51() { D ip -o addr show dev eth0 | grep -q ' 172.16.1.51/32 '; }
conf "$keep" rr "$web51" | edit_in_place
check "a service on a new VIP: lvsd puts the VIP on eth0" within 4 vip51
sleep 1
before=$(table)
printf 'services: []\nhost: {role: director, interface: eth0}\n' | edit_in_place
check "the daemon refuses the emptied file" within 2 grep -q "refusing to apply" $E/daemon2.log
sleep 4 # a resync too
check "... and keeps the table" same_table "$before"
check "... and the VIP it added" vip51
kill -TERM $pid; wait $pid
# A daemon started on the emptied file has no last good config to keep: its first pass is
# refused by the guard, and the host's part must keep the VIPs of the services still there.
$IP netns exec director ./lvsd run -c $C/lvsd.yaml --state-dir $ST --resync-interval 3s >$E/daemon3.log 2>&1 &
pid=$!
check "a daemon started on the emptied file refuses it" within 4 grep -q "refusing to apply" $E/daemon3.log
sleep 4 # a resync too
check "... keeps the table" same_table "$before"
check "... and keeps the VIP lvsd added (its service is still in the table)" vip51
kill -TERM $pid; wait $pid
printf 'services: []\n' >$E/empty.yaml
lvsd apply -c $E/empty.yaml --state-dir $ST >$E/guard.out 2>&1; rc=$?
cat $E/guard.out
check "apply refuses it too (exit 1)" sh -c "[ $rc -eq 1 ] && grep -q 'refusing to apply: the plan removes 2 of 2 managed services' $E/guard.out"
check "... and changes nothing" same_table "$before"

echo "### 9. export -> apply and import of ipvsadm -Sn reproduce the table"
D ipvsadm -A -u 10.9.0.1:53 -s rr -p 120 -M 255.255.255.0 -o
D ipvsadm -a -u 10.9.0.1:53 -r 10.9.0.2:5353 -m -w 4 -x 100 -y 10
D ipvsadm -A -f 7 -s sh -b sh-port
D ipvsadm -a -f 7 -r 10.9.0.3:0 -g -w 2
D ipvsadm -A -t [2001:db8::50]:443 -s mh -b mh-fallback
D ipvsadm -a -t [2001:db8::50]:443 -r [2001:db8::1]:443 -g -w 1
D ipvsadm -A --sctp-service 10.9.0.9:3868 -s lc
D ipvsadm -A -t 10.9.0.10:80 -s wrr -p 300
D ipvsadm -a -t 10.9.0.10:80 -r 10.9.0.11:80 -i -w 5
full=$(table)
echo "$full"
lvsd export >$E/export.yaml
cat $E/export.yaml
D ipvsadm -C
lvsd apply -c $E/export.yaml --state-dir $E/st-export >/dev/null; rc=$?
check "export -> apply exits 0" [ $rc -eq 0 ]
check "export -> apply reproduces the table exactly" same_table "$full"
lvsd plan -c $E/export.yaml --state-dir $E/st-export >/dev/null; rc=$?
check "... and plan is in sync against it" [ $rc -eq 0 ]
D ipvsadm -Sn >$E/rules
lvsd import $E/rules >$E/import.yaml
D ipvsadm -C
lvsd apply -c $E/import.yaml --state-dir $E/st-import >/dev/null; rc=$?
check "import -> apply exits 0" [ $rc -eq 0 ]
check "import of ipvsadm -Sn -> apply reproduces the table exactly" same_table "$full"
D ipvsadm -Sn | lvsd import - >$E/import2.yaml
check "import reads standard input too" cmp -s $E/import.yaml $E/import2.yaml

echo "--- daemon log ---"; cat $E/daemon.log; echo "--- restarted daemon log ---"; cat $E/daemon2.log; echo "--- daemon started on the emptied file ---"; cat $E/daemon3.log
result reconciler
