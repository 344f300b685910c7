#!/bin/sh
# ip_vs unloaded and loaded again under a running daemon, in the test VM (busybox sh): the
# kernel gives the IPVS family a new id, so the daemon's connection answers nothing any more.
# The daemon must notice, connect again and put the table back; an edit made while the module
# is gone cannot be checked against the table, so it waits (the last good config stays) and is
# taken once the table can be read. Runs last: it unloads every IPVS module.
# Ends with a "test result:" line.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/modules
mkdir -p $E
on() { h=$1; shift; $IP netns exec "$h" "$@"; }
lab_down
lab_routed_ns m
conf() { # services...: "ADDR SCHED"
  echo "services:"
  for s in "$@"; do
    set -- $s
    printf '  - address: %s:80\n    scheduler: %s\n    reals:\n      - address: 10.20.0.1\n' "$1" "$2"
  done
}
conf "10.40.0.1 rr" "10.40.0.2 wlc" >$E/lvsd.yaml
on m ./lvsd run -c $E/lvsd.yaml --state-dir $E/st --resync-interval 2s >$E/d.log 2>&1 &
pid=$!
has() { on m ipvsadm -Sn 2>/dev/null | grep -q -- "-A -t $1:80"; }
check "the daemon programs the table" within 5 has 10.40.0.2
ipvs_loaded() { grep -q '^ip_vs ' /proc/modules; }
unload() { # every IPVS module, schedulers first; the daemon may put a service back in between
  i=0
  while ipvs_loaded && [ $i -lt 50 ]; do
    ipvsadm -C 2>/dev/null; on m ipvsadm -C 2>/dev/null
    for mod in $(awk '/^ip_vs_/ { print $1 }' /proc/modules); do rmmod "$mod" 2>/dev/null; done
    rmmod ip_vs 2>/dev/null
    i=$((i + 1))
  done
  ! ipvs_loaded
}
check "every IPVS module unloads" unload
check "the daemon notices the module is gone" within 5 grep -q 'modprobe ip_vs' $E/d.log
# An edit while the module is gone: not checkable against a table, so not taken yet.
conf "10.40.0.1 rr" "10.40.0.2 wlc" "10.40.0.3 rr" >$E/next.yaml && mv $E/next.yaml $E/lvsd.yaml
check "an edit that cannot be checked is deferred, not taken unchecked" within 5 grep -q 'cannot check the new config' $E/d.log
phase=
while read -r m; do
  [ "$m" = "--" ] && { phase=ipvs; continue; }
  [ "$phase" = ipvs ] && insmod "$m" 2>/dev/null
done </modules.order
check "the modules are back" ipvs_loaded
check "the daemon connects again and puts the table back" within 10 has 10.40.0.2
check "... with the edit made meanwhile, taken once it could be checked" within 10 has 10.40.0.3
check "the daemon ran through it" [ -e /proc/$pid ]
grep -E 'ERROR|WARN|config changed' $E/d.log | tail -n 8
kill $pid; wait $pid 2>/dev/null
$IP netns del m
result modules
