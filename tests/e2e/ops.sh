#!/bin/sh
# End-to-end tests of how lvsd is operated, in the seed's lab inside the test VM (busybox sh):
# the daemon as an unprivileged user holding only CAP_NET_ADMIN (as deploy/systemd/lvsd.service
# runs it), systemd's notify protocol, the Prometheus endpoint with the kernel's true counters,
# and `lvsd status` over the 0660 socket reporting a rejected reload. Uses the static binary
# (`lvsd-static`, what the container image holds) when the payload has one.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/ops
mkdir -p $E
LVSD=./lvsd
[ -x ./lvsd-static ] && LVSD=./lvsd-static
on() { h=$1; shift; $IP netns exec "$h" "$@"; }
# "As nobody" below is setpriv to uid/gid 65534 with CAP_NET_ADMIN as the only capability
# (inheritable + ambient + bounding: what AmbientCapabilities=CAP_NET_ADMIN gives), or none.
metrics() { printf 'GET /metrics HTTP/1.0\r\n\r\n' | on director busybox nc 127.0.0.1 9474; }
metric() { awk -v k="$1" 'index($0, k " ") == 1 { print $NF }' $E/metrics; } # exact name{labels}

lab_down
lab_up
mkdir -p $E/state && chown 65534:65534 $E/state
cp seed-dr.yaml $E/lvsd.yaml && chmod 644 $E/lvsd.yaml
for rs in rs1 rs2; do on $rs ./lvsd apply -c $E/lvsd.yaml --role real-server --state-dir $E/st-$rs >/dev/null; done
echo "daemon under test: $LVSD"

echo "--- 1. least privilege"
on director /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all $LVSD apply -c $E/lvsd.yaml --state-dir $E/state >$E/out 2>&1; rc=$?
cat $E/out
check "without CAP_NET_ADMIN, apply fails (exit 1)" [ $rc -eq 1 ]
check "... saying what is missing" grep -q 'CAP_NET_ADMIN' $E/out
check "... and changes nothing" [ -z "$(on director ipvsadm -Sn)" ]
on director /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all,+net_admin --ambient-caps=-all,+net_admin --bounding-set=-all,+net_admin $LVSD apply -c $E/lvsd.yaml --state-dir $E/state >$E/out 2>&1; rc=$?
cat $E/out
check "as nobody with only CAP_NET_ADMIN, apply works: the table" sh -c "[ $rc -eq 0 ] && $IP netns exec director ipvsadm -Sn | grep -q -- '-a -t 172.16.1.50:80 -r 172.16.1.102:80 -g -w 1'"
check "... the VIP on eth0 (rtnetlink)" sh -c "$IP -n director addr show dev eth0 | grep -q 172.16.1.50/32"
check "... and ip_forward (/proc/sys)" [ "$(on director cat /proc/sys/net/ipv4/ip_forward)" = 1 ]
check "... with its records owned by nobody" [ "$(stat -c %u $E/state/owned)" = 65534 ]

echo "--- 2. the daemon as nobody: READY, STATUS, metrics, status socket"
./notify-receiver $E/notify.sock 20 >$E/notify.log 2>&1 &
sleep 0.3
on director env NOTIFY_SOCKET=$E/notify.sock /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all,+net_admin --ambient-caps=-all,+net_admin --bounding-set=-all,+net_admin $LVSD run -c $E/lvsd.yaml --state-dir $E/state --resync-interval 2s --metrics-listen 127.0.0.1:9474 >$E/daemon.log 2>&1 &
check "READY=1 reaches the notify socket" within 5 grep -q '^READY=1$' $E/notify.log
check "... and a STATUS line once the first pass is done" within 5 grep -q '^STATUS=in sync: 1 services' $E/notify.log
cat $E/notify.log
check "the status socket is mode 0660, owned by the daemon's user" sh -c "[ \"\$(stat -c '%a %u' $E/state/lvsd.sock)\" = '660 65534' ]"
i=0; while [ $i -lt 6 ]; do lab_request >/dev/null; i=$((i + 1)); done
sleep 2.5 # the kernel sums its counters every 2 s
metrics >$E/metrics
grep -E '^lvsd_(reconcile|operations|config|services|drift)|^lvsd_(service|real)_[a-z_]*\{service="TCP 172.16.1.50:80"' $E/metrics
on director ipvsadm -Ln --stats -t 172.16.1.50:80
conns=$(on director ipvsadm -Ln --stats --exact -t 172.16.1.50:80 | awk '$1 == "TCP" { print $3 }')
check "metrics: reconcile passes counted" [ "$(metric lvsd_reconcile_passes_total)" -ge 1 ]
check "metrics: the pass-duration histogram" grep -q '^lvsd_reconcile_duration_seconds_count ' $E/metrics
check "metrics: services by owner" [ "$(metric 'lvsd_services{owner="managed"}')" = 1 ]
check "metrics: the last good config's time" [ "$(metric lvsd_config_last_good_timestamp_seconds)" -gt 1000000000 ]
check "metrics: the config's path and hash (its SHA-256, as sha256sum prints it)" grep -q "^lvsd_config_info{path=\"$E/lvsd.yaml\",hash=\"$(sha256sum $E/lvsd.yaml | cut -d' ' -f1)\"} 1$" $E/metrics
check "metrics: the service's connections are the kernel's ($conns)" [ "$(metric 'lvsd_service_connections_total{service="TCP 172.16.1.50:80"}')" = "$conns" ]
check "metrics: packets in are counted" [ "$(metric 'lvsd_service_in_packets_total{service="TCP 172.16.1.50:80"}')" -gt 0 ]
check "metrics: none out (DR: replies bypass the director)" [ "$(metric 'lvsd_service_out_packets_total{service="TCP 172.16.1.50:80"}')" = 0 ]
check "metrics: per-real weights" [ "$(metric 'lvsd_real_weight{service="TCP 172.16.1.50:80",real="172.16.1.101:80"}')" = 1 ]
check "metrics: anything but /metrics is 404" sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | $IP netns exec director busybox nc 127.0.0.1 9474 | head -n 1 | grep -q 404"

echo "--- 3. a rejected reload, as status reports it"
sed 's/scheduler: wlc/scheduler: wlcc/' $E/lvsd.yaml >$E/next.yaml && mv $E/next.yaml $E/lvsd.yaml
check "the daemon rejects the broken edit" within 3 grep -q 'config rejected' $E/daemon.log
on director ./lvsd status --state-dir $E/state --json >$E/status.json; rc=$?
cat $E/status.json; echo
check "lvsd status --json answers" [ $rc -eq 0 ]
# The last reload's object, whatever the order of its keys.
rejected_with_location() {
  r=$(grep -o '"last_reload":{[^}]*}' $E/status.json)
  echo "$r" | grep -q '"result":"rejected"' && echo "$r" | grep -q 'lvsd.yaml:10:16: unknown scheduler `wlcc`'
}
check "... reporting the rejected reload with its location" rejected_with_location
check "... the last reconcile" grep -q '"last_reconcile":{"at":[0-9]*' $E/status.json
on director ./lvsd status --state-dir $E/state >$E/status.txt
cat $E/status.txt
check "lvsd status for people says it too" grep -q '^reload: *rejected' $E/status.txt
metrics >$E/metrics
check "metrics: the rejected reload is counted" [ "$(metric 'lvsd_config_reloads_total{result="rejected"}')" -ge 1 ]
on director /usr/bin/setpriv --reuid=1000 --regid=1000 --clear-groups ./lvsd status --state-dir $E/state >$E/out 2>&1; rc=$?
check "another user cannot read the status socket" sh -c "[ $rc -ne 0 ] && grep -q 'no daemon answers' $E/out"
kill $(pidof lvsd lvsd-static) 2>/dev/null
sleep 0.5

echo "--- daemon log ---"; cat $E/daemon.log
result ops
