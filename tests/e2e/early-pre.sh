#!/bin/sh
# Runs before the ip_vs module is loaded (the VM's pre-ipvs phase): `lvsd check` must work,
# `apply` must say what to do, and a daemon started now (under a notify socket, as systemd
# starts it) must say READY at once, set up its host role although the table cannot be
# programmed, and converge once the module is there (tests/e2e/early.sh checks all of that,
# after the modules are loaded, from what is recorded here).
E=/tmp/early
mkdir -p $E
cat >$E/lvsd.yaml <<'YAML'
host: {role: director, interface: d0}
services:
  - name: web
    address: 172.16.1.50:80
    reals:
      - address: 172.16.1.101
YAML
./lvsd check -c $E/lvsd.yaml >$E/check.out 2>&1; echo $? >$E/check.rc
/sbin/ip netns add early
/sbin/ip -n early link set lo up
/sbin/ip -n early link add d0 type dummy
/sbin/ip -n early addr add 172.16.1.1/16 dev d0
/sbin/ip -n early link set d0 up
/sbin/ip netns exec early ./lvsd apply -c $E/lvsd.yaml --state-dir $E/st >$E/apply.out 2>&1; echo $? >$E/apply.rc
./notify-receiver $E/notify.sock 240 >$E/notify.log 2>&1 &
echo $! >$E/notify.pid
sleep 0.3
/sbin/ip netns exec early env NOTIFY_SOCKET=$E/notify.sock ./lvsd run -c $E/lvsd.yaml --state-dir $E/st --resync-interval 2s >$E/daemon.log 2>&1 &
echo $! >$E/daemon.pid
# Return (and let the modules load) only once the daemon has met the missing module and its
# host part had a chance to converge on its own.
i=0
while ! { grep -q 'retrying in' $E/daemon.log 2>/dev/null && /sbin/ip -n early addr show dev d0 | grep -q 172.16.1.50/32; } && [ $i -lt 100 ]; do
  sleep 0.1; i=$((i + 1))
done
/sbin/ip -n early addr show dev d0 >$E/pre-addr
/sbin/ip netns exec early cat /proc/sys/net/ipv4/ip_forward >$E/pre-forward
cp $E/notify.log $E/notify-pre.log
true
