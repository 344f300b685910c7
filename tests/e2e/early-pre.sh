#!/bin/sh
# Runs before the ip_vs module is loaded (the VM's pre-ipvs phase): `lvsd check` must work,
# `apply` must say what to do, and a daemon started now must converge once the module is there
# (tests/e2e/early.sh checks that, after the modules are loaded).
E=/tmp/early
mkdir -p $E
cat >$E/lvsd.yaml <<'YAML'
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
/sbin/ip netns exec early ./lvsd run -c $E/lvsd.yaml --state-dir $E/st --resync-interval 2s >$E/daemon.log 2>&1 &
echo $! >$E/daemon.pid
# Return (and let the modules load) only once the daemon has met the missing module.
i=0
while ! grep -q 'retrying in' $E/daemon.log 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
true
