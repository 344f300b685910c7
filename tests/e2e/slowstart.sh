#!/bin/sh
# End-to-end test of slow start in the seed's lab, run as root inside the test VM (busybox sh),
# under steady client load of new short connections to a wlc service (reals at weight 100):
# first, for contrast, a real added without slow start (measured and printed: under wlc a
# newcomer with no connections takes nearly every new one until its count has caught up); then,
# in a fresh lab, a real added with `slow_start: 20s`, whose weight the daemon raises from 1 in
# steps and whose share of new connections must be small in its first second and rise over the
# ramp (the client's answers per second, and the kernel's counters per 4 s, are printed). A
# restart of the daemon leaves every real at its weight (none goes back to 1); a new real with a
# health check is added at weight 0 and ramps once the check passes.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/slowstart
ST=$E/state
rm -rf $E
mkdir -p $E
on() { h=$1; shift; $IP netns exec "$h" "$@"; }
D() { on director "$@"; }
has() { D ipvsadm -Sn | grep -q -F -- "$1"; }
weight_of() { D ipvsadm -Sn | awk -v r="172.16.1.$1:80" '$5 == r { print $NF }'; }
logged() { grep -q -F -- "$1" $E/daemon.log; }
conns() { D ipvsadm -Ln --stats --exact -t $VIP:80 | awk -v r="$1:80" '$2 == r { print $3 }'; }
# Not through D: $! must be the daemon itself (ip netns exec execs it), not a subshell.
start_daemon() { $IP netns exec director ./lvsd run -c $E/lvsd.yaml --state-dir $ST --resync-interval 5s >>$E/daemon.log 2>&1 & pid=$!; }
gone() { [ ! -e /proc/$1 ] || grep -q '^[0-9]* ([^)]*) Z' /proc/$1/stat; }
# The config: web, wlc, .101 and .102 at weight 100, then what $1 adds (reals' lines).
config() { # file extra-real-lines
  cat >"$1.tmp" <<EOF
services:
  - name: web
    address: $VIP:80
    scheduler: wlc
    forward: dr
    $SERVICE_SLOW
    reals:
      - address: 172.16.1.101
        weight: 100
      - address: 172.16.1.102
        weight: 100
$2
host:
  role: director
  interface: eth0
EOF
  chmod 644 "$1.tmp" && mv "$1.tmp" "$1"
}
# Three clients in a loop of new short connections (each answer a line), until $E/stop.
load_start() {
  rm -f $E/stop; : >$E/answers
  for n in 1 2 3; do
    ( while [ ! -e $E/stop ]; do lab_request >>$E/answers 2>/dev/null; done ) &
  done
}
load_stop() { touch $E/stop; sleep 2.5; }
# The share of new connections of .$1 per second since the join: the client's answers, split by
# a MARK line written every second from the join on ($2 seconds).
marks() { # real seconds
  i=0
  while [ $i -lt "$2" ]; do echo MARK >>$E/answers; sleep 1; i=$((i + 1)); done
  echo MARK >>$E/answers
}
shares() { # real: prints "second share% (hits of all)" lines, to $E/shares
  awk -v r="172.16.1.$1<" '
    /^MARK/ { if (started) { printf "%d %d (%d of %d)\n", s, (all ? hits * 100 / all : 0), hits, all; s++ } started = 1; hits = 0; all = 0; next }
    /this is/ { all++; if (index($0, r)) hits++ }' $E/answers >$E/shares
  cat $E/shares
}
share_at() { awk -v s="$1" '$1 == s { print $2 }' $E/shares; }
# The same by 2-second windows (a step of the ramp): "seconds a-b: share% (hits of all)".
pairs() {
  awk '{ gsub(/\(/, "", $3); w = int($1 / 2); h[w] += $3; a[w] += $5; if (w > m) m = w }
    END { for (i = 0; i <= m; i++) printf "   seconds %d-%d: %d%% (%d of %d)\n", 2 * i, 2 * i + 1, a[i] ? h[i] * 100 / a[i] : 0, h[i], a[i] }' $E/shares
}
# Kernel counters of .$1 and all reals every 4 s while marks run: "t new-of-real new-of-all".
kernel_sample() { # real rounds
  b=$(conns 172.16.1.$1); ball=$(all_conns); j=0
  while [ $j -lt "$2" ]; do
    sleep 4; c=$(conns 172.16.1.$1); call=$(all_conns); j=$((j + 1))
    echo "$((j * 4)) s: .$1 $((c - b)) of $((call - ball)) new connections (kernel counters)"
    b=$c; ball=$call
  done
}
all_conns() { D ipvsadm -Ln --stats --exact -t $VIP:80 | awk '$1 == "->" && $2 ~ /:80$/ { n += $3 } END { print n + 0 }'; }
fresh_lab() {
  lab_down
  lab_up
  lab_real_server rs3 172.16.1.103
  lab_real_server rs4 172.16.1.104
  SERVICE_SLOW=""
  config $E/rs.yaml "      - address: 172.16.1.103
      - address: 172.16.1.104"
  for rs in rs1 rs2 rs3 rs4; do on $rs ./lvsd apply -c $E/rs.yaml --role real-server --state-dir $E/st-$rs >/dev/null; done
  rm -rf $ST
}

echo "--- 1. for contrast: .103 added without slow start under steady load"
fresh_lab
SERVICE_SLOW=""
config $E/lvsd.yaml ""
start_daemon
check "the daemon converges on .101 and .102 at weight 100" within 5 has "-a -t $VIP:80 -r 172.16.1.102:80 -g -w 100"
load_start
sleep 6
config $E/lvsd.yaml "      - address: 172.16.1.103
        weight: 100"
kernel_sample 103 2 >$E/kernel1 &
marks 103 8
wait $!
load_stop
echo "   .103's share of new connections, per second since the edit (no slow start):"
shares 103
pairs
cat $E/kernel1
no1=$(share_at 0); no2=$(share_at 1)
echo "   without slow start: ${no1}% in its first second, ${no2}% in its second"
check "without slow start .103 takes its full weight at once" has "-a -t $VIP:80 -r 172.16.1.103:80 -g -w 100"
kill $pid; wait $pid 2>/dev/null

echo "--- 2. .103 added with slow_start: 20s under the same load"
fresh_lab
SERVICE_SLOW="slow_start: 20s"
config $E/lvsd.yaml ""
start_daemon
check "the daemon converges on .101 and .102 at weight 100" within 5 has "-a -t $VIP:80 -r 172.16.1.102:80 -g -w 100"
check "... at once: reals that come in together with nobody else serving do not ramp" sh -c "! grep -q 'joins at weight' $E/daemon.log"
load_start
sleep 6
t0=$(cs)
config $E/lvsd.yaml "      - address: 172.16.1.103
        weight: 100"
kernel_sample 103 6 >$E/kernel2 &
ks=$!
(
  # The weights the kernel has for .103 about every second of the ramp, stamped in tenths of a
  # second since the edit.
  i=0; while [ $i -lt 24 ]; do echo "$(( ($(cs) - t0) / 10 )) $(weight_of 103)"; sleep 1; i=$((i + 1)); done
) >$E/weights &
ws=$!
marks 103 24
wait $ks $ws
load_stop
echo "   .103's share of new connections, per second since the edit (slow_start: 20s):"
shares 103
pairs
cat $E/kernel2
echo "   .103's weight in the kernel (tenths of a second since the edit, weight):"; tr '\n' ' ' <$E/weights; echo
s0=$(share_at 0); s1=$(share_at 1)
late=$(awk '$1 >= 14 && $1 < 20 { gsub(/\(/, "", $3); h += $3; a += $5 } END { printf "%d", a ? h * 100 / a : 0 }' $E/shares)
early=$(awk '$1 < 2 { gsub(/\(/, "", $3); h += $3; a += $5 } END { printf "%d", a ? h * 100 / a : 0 }' $E/shares)
echo "   with slow start: ${s0}% in its first second, ${s1}% in its second; first 2 s ${early}%, seconds 14-19 ${late}%"
echo "   without (part 1): ${no1}% in its first second, ${no2}% in its second"
check "the join is logged" logged "slow start: 172.16.1.103:80 of TCP 172.16.1.50:80 joins at weight 1"
# The sampler wakes about once a second, later when the VM is loaded: the first weight it sees
# is where the ramp stood by then (1 at the start, rising 5 a second over 20 s), never more.
check ".103 started low: its first weight in the kernel is the ramp's (at most 5 a second since the edit, plus a step)" \
  awk '!seen && NF == 2 { seen = 1; ok = ($1 <= 100 && $2 <= $1 / 2 + 10) } END { exit !(seen && ok) }' $E/weights
check "... its weight rose in steps (more than 3 distinct weights below 100)" sh -c "[ \$(awk '\$2 > 0 && \$2 < 100 { print \$2 }' $E/weights | sort -u | wc -l) -gt 3 ]"
check "... and not to 100 before about 20 s" sh -c "! awk '\$1 < 190 && \$2 == 100' $E/weights | grep -q ."
echo "   $(( ($(cs) - t0) / 100 )) s since the edit"
check ".103 has its whole weight after the ramp" has "-a -t $VIP:80 -r 172.16.1.103:80 -g -w 100"
check "not the bulk of new connections in its first second (${s0}% <= 25%)" [ "${s0:-100}" -le 25 ]
check "... nor in its first 2 s (${early}% <= 25%)" [ "${early:-100}" -le 25 ]
check "a rising share: seconds 14-19 (${late}%) above the first 2 s (${early}%)" [ "$late" -gt "$early" ]

echo "--- 3. a restart of the daemon leaves every real at its weight"
old=$pid
kill -9 $pid
check "the daemon is killed" within 3 gone $old
wait $old 2>/dev/null
start_daemon
check "a new daemon starts" within 5 sh -c "grep -c 'lvsd running' $E/daemon.log | grep -q 2"
sleep 2
check "... and no real went back to weight 1" sh -c "[ $(weight_of 101) = 100 ] && [ $(weight_of 102) = 100 ] && [ $(weight_of 103) = 100 ]"
check "... nor was logged joining" sh -c "[ \$(grep -c 'joins at weight' $E/daemon.log) -eq 1 ]"

echo "--- 4. a new real with a health check starts at weight 0, and ramps once it passes"
config $E/lvsd.yaml "      - address: 172.16.1.103
        weight: 100
      - address: 172.16.1.104
        weight: 100
        check: {type: tcp, interval: 1s, rise: 2}"
check ".104 is added at weight 0 (its check has not passed yet)" within 3 has "-a -t $VIP:80 -r 172.16.1.104:80 -g -w 0"
check "... then, its check up, ramps from weight 1" within 6 has "-a -t $VIP:80 -r 172.16.1.104:80 -g -w 1"
D ./lvsd status --state-dir $ST >$E/status.out 2>&1
cat $E/status.out
check "lvsd status shows the ramp" grep -q "ramp: .*real 172.16.1.104:80: weight .* of 100, slow start of 20s" $E/status.out
D ./lvsd status --json --state-dir $ST >$E/status.json
check "... and in --json" grep -q '"ramps":\[{' $E/status.json
kill $pid; wait $pid 2>/dev/null

if [ "$FAIL" -ne 0 ]; then echo "--- daemon log ---"; cat $E/daemon.log; fi
lab_down
result slowstart
