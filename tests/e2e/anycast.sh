#!/bin/sh
# Active/active directors in the test VM (busybox sh): a router running BIRD (Debian's binary)
# with ECMP and an L4 multipath hash, a client behind it, two directors each running BIRD and
# `lvsd run` with `ha: {mode: active-active}`, two real servers whose default route is the
# router (direct return). lvsd holds a VIP on its announce device only while a service on it
# can serve; BIRD exports what is there. A flow the router moves to the other director keeps
# its real server: with the sync daemon, and without it (mh with mh-port, sloppy TCP).
# Ends with a "test result:" line.
. ./checks.sh
E=/tmp/anycast
VIP=10.99.0.50
rm -rf $E; mkdir -p $E
. ./routed-lab.sh
routed_lab_up dir1:11 dir2:12

# A director's check fails while /tmp/anycast/fail-<director> exists.
printf '#!/bin/sh\n[ ! -e %s/fail-$1 ]\n' "$E" >$E/check.sh; chmod 755 $E/check.sh

conf() { # director, then extra ha lines, then extra service lines for every service
  d=$1; extra_ha=$2; extra_reals=$3
  cat <<YAML
host: {role: director, interface: eth0}
ha:
  mode: active-active
  announce_device: lvsd0
$extra_ha
services:
  - name: web
    address: $VIP:80
    scheduler: mh
    flags: [mh-port]
    check: {type: exec, command: [$E/check.sh, $d], interval: 500ms, timeout: 1s, rise: 1, fall: 2}
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
$extra_reals
  - name: echo
    address: $VIP:7000
    scheduler: mh
    flags: [mh-port]
    check: {type: exec, command: [$E/check.sh, $d], interval: 500ms, timeout: 1s, rise: 1, fall: 2}
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
YAML
}
SYNC='  sync: {interface: eth0, id: 52}'
router_up
for d in dir1:172.16.1.11 dir2:172.16.1.12; do
  n=${d%:*}; mkdir -p $E/$n
  bird_director "${d#*:}" >$E/$n/bird.conf
  on $n bird -c $E/$n/bird.conf -s $E/$n/bird.ctl -P $E/$n/bird.pid
  conf $n "$SYNC" >$E/$n/lvsd.yaml
  check "$n: lvsd check accepts the active-active config" ./lvsd check -c $E/$n/lvsd.yaml
done
check "lvsd check accepts deploy/ha/lvsd-anycast.yaml" ./lvsd check -c lvsd-anycast.yaml
# The real servers: the VIP on lo, ARP quiet (the same file, another role).
for rs in rs1 rs2; do on $rs ./lvsd apply --role real-server -c $E/dir1/lvsd.yaml --state-dir $E/st-$rs >/dev/null; done
for n in dir1 dir2; do
  $IP netns exec $n ./lvsd run -c $E/$n/lvsd.yaml --state-dir $E/$n/st --resync-interval 2s --metrics-listen 127.0.0.1:9474 >$E/$n/lvsd.log 2>&1 &
  echo $! >$E/$n/lvsd.pid
done

echo "--- 1. both directors announce; the router installs two equal paths"
announced() { $IP -n "$1" addr show dev lvsd0 2>/dev/null | grep -q "$VIP/32"; }
paths() { on router ip route show $VIP | grep -c 'nexthop via'; }
check "dir1 holds the VIP on its announce device" within 10 announced dir1
check "dir2 too" within 10 announced dir2
check "... and not on eth0" sh -c "! $IP -n dir1 addr show dev eth0 | grep -q $VIP"
check "sloppy TCP and SCTP are on (lvsd set them)" sh -c "[ \$($IP netns exec dir1 cat /proc/sys/net/ipv4/vs/sloppy_tcp) = 1 ] && [ \$($IP netns exec dir2 cat /proc/sys/net/ipv4/vs/sloppy_sctp) = 1 ]"
check "the router installs two equal paths" within 20 sh -c "[ \$($IP netns exec router /sbin/ip route show $VIP | grep -c 'nexthop via') -eq 2 ]"
on router /sbin/ip route show $VIP
check "metrics: each director says it announces 1 VIP" sh -c "[ \"\$(printf 'GET /metrics HTTP/1.0\r\n\r\n' | $IP netns exec dir1 busybox nc 127.0.0.1 9474 | grep '^lvsd_announced_vips ' | awk '{print \$2}')\" = 1 ]"
check "the announce is logged" grep -q "announce: VIP $VIP is on lvsd0" $E/dir1/lvsd.log

echo "--- 2. the client is served through the router; both directors carry traffic"
get() { printf 'GET / HTTP/1.0\r\n\r\n' | on client busybox nc -w 3 $VIP 80 | tail -n 1; }
: >$E/answers
i=0; while [ $i -lt 30 ]; do get >>$E/answers; i=$((i + 1)); done
check "30 requests, 30 answers" [ "$(grep -c 'this is' $E/answers)" -eq 30 ]
entries() { on "$1" ipvsadm -Lnc | grep -c "$VIP:80"; }
echo "   connection entries: dir1 $(entries dir1), dir2 $(entries dir2)"
check "both directors carried traffic" sh -c "[ \$($IP netns exec dir1 ipvsadm -Lnc | grep -c $VIP:80) -gt 0 ] && [ \$($IP netns exec dir2 ipvsadm -Lnc | grep -c $VIP:80) -gt 0 ]"

echo "--- 3. no healthy real server from dir1's view: dir1 withdraws; no request fails"
: >$E/during
touch $E/load
( while [ -e $E/load ]; do a=$(get); case "$a" in *"this is"*) echo ok ;; *) echo "FAILED: $a" ;; esac; done >$E/during ) &
sleep 1
t0=$(cs)
touch $E/fail-dir1
gone() { ! announced dir1; }
# fall x interval (1 s), then the pass, the device and BGP to the router
check "dir1 withdraws the VIP within fall x interval + 4 s" within 5 gone
echo "   withdrawn $(( ($(cs) - t0) * 10 )) ms after its checks started failing"
check "the router keeps one path (via dir2)" within 5 sh -c "$IP netns exec router /sbin/ip route show $VIP | grep -q 'via 172.16.1.12' && ! $IP netns exec router /sbin/ip route show $VIP | grep -q 172.16.1.11"
# A request the router hashed to dir1 between dir1's pass (reals drained, VIP off the device)
# and the router's new path fails: that window is BGP's convergence, and no director can close
# it. Every request that started after the router moved the path must be served. (The line
# being written now belongs to a request that started before.)
moved_at=$(( $(wc -l <$E/during) + 2 ))
check "the withdrawal is logged" grep -q "withdraw: VIP $VIP is off lvsd0" $E/dir1/lvsd.log
sleep 2
rm $E/load; sleep 3.5
echo "   $(grep -c ok $E/during) requests served during the withdrawal; failed before the router moved the path: $(head -n $((moved_at - 1)) $E/during | grep -c FAILED)"
check "once the router has one path, no request fails" sh -c "[ -n \"\$(tail -n +$moved_at $E/during)\" ] && ! tail -n +$moved_at $E/during | grep -q FAILED"
rm $E/fail-dir1
check "recovered: dir1 announces again" within 4 announced dir1
check "... and the router has two paths again" within 10 sh -c "[ \$($IP netns exec router /sbin/ip route show $VIP | grep -c 'nexthop via') -eq 2 ]"

inpkts() { on "$1" ipvsadm -Ln --stats --exact -t $VIP:7000 | awk '$1 == "TCP" { print $4 }'; }
moved() { # label: a long-lived connection moved by the router to the other director keeps working
  p1=$(inpkts dir1); p2=$(inpkts dir2)
  : >$E/in
  tail -f $E/in | $IP netns exec client busybox nc $VIP 7000 >$E/out &
  for w in one two three four; do echo $w >>$E/in; sleep 0.3; done
  within 3 grep -q four $E/out >/dev/null
  who=$(head -n 1 $E/out)
  sleep 2.5 # the kernel sums its counters every 2 s
  # The director that carried the packets (with sync, both hold the connection's entry).
  via=dir2; [ $(( $(inpkts dir1) - p1 )) -gt $(( $(inpkts dir2) - p2 )) ] && via=dir1
  other=dir1; [ $via = dir1 ] && other=dir2
  echo "   ($1) the connection went through $via to: $who"
  touch $E/fail-$via
  check "($1) $via withdraws the VIP" within 3 sh -c "! $IP -n $via addr show dev lvsd0 | grep -q $VIP/32"
  check "($1) the router sends the flow to $other only" within 5 sh -c "! $IP netns exec router /sbin/ip route show $VIP | grep -q nexthop"
  echo "after-move-$1" >>$E/in
  check "($1) the connection keeps working through $other" within 5 grep -q "after-move-$1" $E/out
  check "($1) ... on the same real server" [ "$(head -n 1 $E/out)" = "$who" ]
  check "($1) ... and $other holds its entry" sh -c "$IP netns exec $other ipvsadm -Lnc | grep -q '$VIP:7000'"
  rm $E/fail-$via
  within 4 sh -c "$IP -n $via addr show dev lvsd0 | grep -q $VIP/32" >/dev/null
  within 10 sh -c "[ \$($IP netns exec router /sbin/ip route show $VIP | grep -c 'nexthop via') -eq 2 ]" >/dev/null
  kill $(pidof tail) 2>/dev/null
  sleep 0.5
}

echo "--- 4a. a flow the router moves keeps its real server: with the sync daemon"
check "both directors run the sync daemon" sh -c "$IP netns exec dir1 ipvsadm -L --daemon | grep -q 'backup sync daemon (mcast=eth0, syncid=52' && $IP netns exec dir2 ipvsadm -L --daemon | grep -q 'master sync daemon (mcast=eth0, syncid=52'"
moved sync

echo "--- 4b. ... and without it: mh with mh-port and sloppy TCP alone"
for n in dir1 dir2; do conf $n "" >$E/$n/next.yaml; mv $E/$n/next.yaml $E/$n/lvsd.yaml; done
check "sync leaves the files: no sync daemon on either director" within 5 sh -c "[ -z \"\$($IP netns exec dir1 ipvsadm -L --daemon)\" ] && [ -z \"\$($IP netns exec dir2 ipvsadm -L --daemon)\" ]"
moved nosync

echo "--- 5. the same edits leave both tables identical, line for line"
edit() { for n in dir1 dir2; do conf $n "" "$1" >$E/$n/next.yaml; mv $E/$n/next.yaml $E/$n/lvsd.yaml; done; }
edit '      - address: 172.16.1.103'
edit '      - {address: 172.16.1.103, weight: 3}'
# A real that sorts before the others, added last: a fresh director would hold it last.
edit '      - {address: 172.16.1.103, weight: 3}
      - address: 172.16.1.99'
has99() { on "$1" ipvsadm -Sn | grep -q 172.16.1.99; }
check "the edits reach dir1" within 5 has99 dir1
check "... and dir2" within 5 has99 dir2
sleep 1
on dir1 ipvsadm -Sn >$E/t1; on dir2 ipvsadm -Sn >$E/t2
cat $E/t1
check "both tables are identical, line for line (the kernel's order included)" cmp -s $E/t1 $E/t2
on dir1 ./lvsd plan -c $E/dir1/lvsd.yaml --state-dir $E/dir1/st >$E/plan.out 2>&1
cat $E/plan.out
check "plan warns that an edit history reordered the mh service, and says how to realign" sh -c "grep -q 'warning: service TCP $VIP:80 (mh)' $E/plan.out && grep -q 'To realign' $E/plan.out"

for n in dir1 dir2 router; do kill "$(cat $E/$n/lvsd.pid 2>/dev/null)" "$(cat $E/$n/bird.pid $E/router.pid 2>/dev/null)" 2>/dev/null; done
sleep 0.5
result anycast
