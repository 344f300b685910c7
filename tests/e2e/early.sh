#!/bin/sh
# After the modules are loaded: what tests/e2e/early-pre.sh saw and started before ip_vs existed.
. ./checks.sh
E=/tmp/early
cat $E/check.out $E/apply.out
check "lvsd check works without the ip_vs module" sh -c "[ \"\$(cat $E/check.rc)\" = 0 ] && grep -q valid $E/check.out"
check "lvsd apply without it exits 1" [ "$(cat $E/apply.rc)" = 1 ]
check "... and says exactly what to do" grep -q 'modprobe ip_vs' $E/apply.out
echo "   what the notify socket got before the module was loaded:"; cat $E/notify-pre.log
check "the daemon said READY=1 while the module was missing (systemd does not kill it)" grep -q '^READY=1$' $E/notify-pre.log
check "... and STATUS says what is not in sync and why" grep -q '^STATUS=not in sync: table failing: the ip_vs kernel module is not loaded' $E/notify-pre.log
check "the host part converged though the table could not: the VIP on d0" grep -q 172.16.1.50/32 $E/pre-addr
check "... and ip_forward" [ "$(cat $E/pre-forward)" = 1 ]
converged() { /sbin/ip netns exec early ipvsadm -Sn | grep -q -- '-a -t 172.16.1.50:80 -r 172.16.1.101:80'; }
check "a daemon started before the module converges once it is loaded" within 10 converged
cat $E/daemon.log
check "... having retried with backoff meanwhile" sh -c "grep -q 'retrying in 500ms' $E/daemon.log && grep -q 'modprobe ip_vs' $E/daemon.log"
check "... and says so on the notify socket" within 3 grep -q '^STATUS=in sync: 1 services' $E/notify.log
kill "$(cat $E/daemon.pid)" "$(cat $E/notify.pid)"
/sbin/ip netns del early
result early
