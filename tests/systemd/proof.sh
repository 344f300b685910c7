#!/bin/bash
# The Debian package on a real Debian 12 booted with systemd (PID 1), with dpkg, apt and
# journald as they come: run inside the VM tests/vm/debian.sh boots, from its second disk
# (this script, tests/e2e/checks.sh, lvsd_1.deb and lvsd_2.deb, one revision later). Every
# check reads what an operator would: systemctl, journalctl, /proc, dpkg, lvsd status and the
# kernel's table (ipvsadm). Ends with a "test result:" line.
cd "$(dirname "$0")" || exit 1
. ./checks.sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive SYSTEMD_PAGER='' SYSTEMD_COLORS=0 LC_ALL=C.UTF-8
CONF=/etc/lvsd/lvsd.yaml
E=/tmp/proof
mkdir -p $E
T0=$(cs)
step() { echo; echo "--- $* (at $(( ($(cs) - T0) / 100 )) s)"; }
prop() { systemctl show -p "$1" --value lvsd; }
mainpid() { prop MainPID; }
active() { [ "$(systemctl is-active lvsd)" = active ]; }
status_is() { [ "$(prop StatusText)" = "$1" ]; }
table() { ipvsadm -Sn; }
has_rule() { ipvsadm -Sn | grep -q -x -F -- "$1"; }
# The journal of lvsd.service's current run (its invocation), as text.
this_run() { journalctl --sync 2>/dev/null; journalctl -q --no-pager -o cat -u lvsd _SYSTEMD_INVOCATION_ID="$(prop InvocationID)"; }
logged() { journalctl -q --no-pager -o cat -u lvsd | grep -q -F -- "$1"; }
# Lines the daemon logs for each change it makes to the table ("+ service", "~ real", ...).
ops_in() { grep -E '"message":"[-+~] (service|real) ' "$1"; }
no_ops() { ! ops_in "$1" >/dev/null; }
lvsd_running() { local p; for p in /proc/[0-9]*; do [ "$(cat "$p/comm" 2>/dev/null)" = lvsd ] && return 0; done; return 1; }
system_user() { # name: a system uid, no login shell
  local _x _p uid _g _c _h shell
  IFS=: read -r _x _p uid _g _c _h shell <<<"$(getent passwd "$1")" && [ "$uid" -lt 1000 ] && [ "$shell" = /usr/sbin/nologin ]
}
not() { ! "$@"; }
same_table() { ipvsadm -Sn | cmp -s - "$1"; }
# The kernel's own count of the service's connections: a service deleted and added again
# starts from 0. (The kernel sums its counters every 2 s.)
conns() { ipvsadm -Ln --stats --exact -t 192.0.2.10:80 | awk '$1 == "TCP" { print $3 }'; }
# A local client's connection attempt through the service: the kernel schedules it to a real
# (on a dummy device, so nothing answers) and counts it.
knock() { timeout 1 bash -c ': </dev/tcp/192.0.2.10/80' 2>/dev/null; true; }

echo "kernel $(uname -r); $(systemctl --version | head -n1); Debian $(cat /etc/debian_version)"
check "systemd is PID 1" [ "$(cat /proc/1/comm)" = systemd ]
check "the system is up (multi-user, nothing failed)" sh -c 'systemctl is-active multi-user.target >/dev/null && [ -z "$(systemctl --failed --plain --no-legend | grep -v lvsd-proof)" ]'
check "before the package, ip_vs is not loaded" [ ! -e /proc/net/ip_vs ]

step "1. apt install ./lvsd_*.deb: enabled, active, READY and STATUS through"
cp lvsd_1.deb lvsd_2.deb /tmp/   # apt wants packages it can read as _apt
t=$(cs)
apt-get install -y /tmp/lvsd_1.deb >$E/apt.log 2>&1; rc=$?
cat $E/apt.log
echo "   (apt-get install took $(( $(cs) - t ))0 ms)"
check "apt-get install ./lvsd_1.deb succeeds offline (its dependencies are Debian's own)" [ $rc -eq 0 ]
check "dpkg: lvsd is installed" sh -c "dpkg-query -W -f='\${Status}' lvsd | grep -qx 'install ok installed'"
check "systemctl is-enabled lvsd: enabled" [ "$(systemctl is-enabled lvsd)" = enabled ]
check "systemctl is-active lvsd: active, with the shipped config" active
check "StatusText carries lvsd's STATUS: in sync: 0 services" within 10 status_is "in sync: 0 services"
systemctl status lvsd --no-pager -l
check "the postinst loaded ip_vs (modules-load.d/lvsd.conf), for the daemon cannot" [ -e /proc/net/ip_vs ]
check "and the schedulers the file lists" sh -c 'for m in ip_vs_wlc ip_vs_rr ip_vs_sh ip_vs_mh; do [ -d /sys/module/$m ] || exit 1; done'
check "/etc/lvsd/lvsd.yaml is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}\n' lvsd | grep -q '^ /etc/lvsd/lvsd.yaml [0-9a-f]\{32\}$'"
check "... root's, 0644 (lvsd refuses a config others can write)" [ "$(stat -c '%U %a' $CONF)" = "root 644" ]
check "the installed unit verifies (systemd-analyze verify) and runs /usr/bin/lvsd" sh -c \
  'systemd-analyze verify --man=no lvsd.service && [ "$(systemctl show -p ExecStart --value lvsd | grep -o "path=[^ ;]*")" = "path=/usr/bin/lvsd" ]'
check "the lvsd user: a system user without a login shell (sysusers.d)" system_user lvsd
check "/run/lvsd (tmpfiles.d, and the unit's RuntimeDirectory): lvsd's, 0750" [ "$(stat -c '%U %G %a' /run/lvsd)" = "lvsd lvsd 750" ]
check "the man page and the completions are installed" sh -c \
  'zcat /usr/share/man/man1/lvsd.1.gz | grep -q "^\.TH lvsd 1" && [ -s /usr/share/bash-completion/completions/lvsd ] &&
   [ -s /usr/share/zsh/vendor-completions/_lvsd ] && [ -s /usr/share/fish/vendor_completions.d/lvsd.fish ]'
ls -l /var/lib/dpkg/info/lvsd.*
# cargo deb writes no md5sums into the package; dpkg computes them as it unpacks.
check "dpkg --verify lvsd: every installed file as packaged" sh -c '[ -s /var/lib/dpkg/info/lvsd.md5sums ] && [ -z "$(dpkg --verify lvsd)" ]'

step "2. the process: user lvsd, CAP_NET_ADMIN and nothing else (/proc)"
pid=$(mainpid)
grep -E '^(Name|Uid|Gid|Groups|Cap[A-Za-z]*|NoNewPrivs):' /proc/"$pid"/status
uid=$(id -u lvsd) gid=$(id -g lvsd)
check "MainPID $pid is lvsd" [ "$(cat /proc/"$pid"/comm)" = lvsd ]
check "real, effective, saved and fs uid are lvsd's ($uid)" sh -c "grep -qx 'Uid:[[:space:]]*${uid}[[:space:]]*${uid}[[:space:]]*${uid}[[:space:]]*$uid' /proc/$pid/status"
check "... and the gids ($gid), in no group but its own" sh -c "grep -qx 'Gid:[[:space:]]*${gid}[[:space:]]*${gid}[[:space:]]*${gid}[[:space:]]*$gid' /proc/$pid/status && grep -qx 'Groups:[[:space:]]*\($gid\)\{0,1\}[[:space:]]*' /proc/$pid/status"
# CAP_NET_ADMIN is capability 12: the mask 0x1000.
check "CapEff is exactly cap_net_admin (0000000000001000)" grep -qx 'CapEff:[[:space:]]0000000000001000' /proc/"$pid"/status
check "... CapPrm, CapBnd and CapAmb too" sh -c "for c in CapPrm CapBnd CapAmb; do grep -qx \"\$c:[[:space:]]0000000000001000\" /proc/$pid/status || exit 1; done"
check "NoNewPrivs is set" grep -qx 'NoNewPrivs:[[:space:]]1' /proc/"$pid"/status

step "3. an edit converges by itself (watch); systemctl reload works"
# In place, as an editor saves it.
cat >$CONF <<'YAML'
services:
  - name: web
    address: 192.0.2.10:80
    scheduler: wlc
    reals:
      - address: 198.51.100.11
      - address: 198.51.100.12
YAML
check "the edited file converges by itself: the service in the table" within 10 has_rule "-A -t 192.0.2.10:80 -s wlc"
check "... with both reals" within 5 sh -c 'ipvsadm -Sn | grep -q -x -- "-a -t 192.0.2.10:80 -r 198.51.100.11:80 -g -w 1" && ipvsadm -Sn | grep -q -x -- "-a -t 192.0.2.10:80 -r 198.51.100.12:80 -g -w 1"'
check "StatusText: in sync: 1 services" within 5 status_is "in sync: 1 services"
table
# The reload's own proof: a change written through a hard link in another directory, which the
# watch (on /etc/lvsd) is not told about; only the reload brings it in.
pid=$(mainpid)
ln -f $CONF /root/lvsd.yaml
sed 's/- address: 198.51.100.12/- address: 198.51.100.12\n        weight: 3/' $CONF >$E/next.yaml
cat $E/next.yaml >/root/lvsd.yaml
t=$(date +%s)
systemctl reload lvsd; rc=$?
check "systemctl reload lvsd succeeds" [ $rc -eq 0 ]
check "... the daemon reloads on it (SIGHUP, logged)" within 5 sh -c 'journalctl -q --no-pager -o cat -u lvsd | grep -q "SIGHUP: reloading the config"'
check "... and brings in the change the watch did not see (weight 3)" within 5 has_rule "-a -t 192.0.2.10:80 -r 198.51.100.12:80 -g -w 3"
check "... in the same process (a reload, not a restart)" [ "$(mainpid)" = "$pid" ]
lvsd status --json >$E/status.json
cat $E/status.json; echo
# The last reload's object, whatever the order of its keys: when it was taken, if it was.
reload=$(grep -o '"last_reload":{[^}]*}' $E/status.json)
at=$(echo "$reload" | grep -q '"result":"ok"' && echo "$reload" | sed -n 's/.*"at":\([0-9]*\).*/\1/p')
check "lvsd status: the last reload was taken, at the reload or after" [ "${at:-0}" -ge "$t" ]
rm -f /root/lvsd.yaml

step "4. journalctl -u lvsd shows what lvsd changed"
journalctl -q --no-pager -o cat -u lvsd >$E/journal.txt
ops_in $E/journal.txt
check "the service it added" grep -q -F '"message":"+ service TCP 192.0.2.10:80 (web)' $E/journal.txt
check "the reals it added" sh -c "grep -q -F '\"message\":\"+ real 198.51.100.11:80 of TCP 192.0.2.10:80' $E/journal.txt && grep -q -F '\"message\":\"+ real 198.51.100.12:80 of TCP 192.0.2.10:80' $E/journal.txt"
check "the weight it changed on reload" grep -q -F '"message":"~ real 198.51.100.12:80 of TCP 192.0.2.10:80' $E/journal.txt
check "journald files them under lvsd.service, from lvsd's pid, as lvsd's uid" sh -c \
  "journalctl -q --no-pager -o verbose -u lvsd _PID=$pid | grep -q '_UID=$uid' && journalctl -q --no-pager -o verbose -u lvsd _PID=$pid | grep -q '_SYSTEMD_UNIT=lvsd.service'"

step "5. a broken config: the service stays, with the last good table, and says why"
table >$E/good.table
pid=$(mainpid)
cp $CONF $E/good.yaml
sed 's/scheduler: wlc/scheduler: wlcc/' $E/good.yaml >$CONF   # in place
check "lvsd check names the place (what ExecStartPre runs)" sh -c "! lvsd check -c $CONF >$E/check.out 2>&1; cat $E/check.out; grep -q 'lvsd.yaml:4:16: unknown scheduler \`wlcc\`' $E/check.out"
check "the daemon rejects the broken file, logged with file:line:col" within 5 logged '/etc/lvsd/lvsd.yaml:4:16: unknown scheduler `wlcc`'
check "... and keeps the last good config (logged)" logged 'config rejected; keeping the last good config'
systemctl reload lvsd; rc=$?
check "systemctl reload with the broken file: the reload is refused, not the service" sh -c "[ $rc -eq 0 ] && sleep 1 && [ \"\$(systemctl is-active lvsd)\" = active ]"
check "the service stays active, the same process" sh -c "[ \"\$(systemctl is-active lvsd)\" = active ] && [ \"\$(systemctl show -p MainPID --value lvsd)\" = $pid ]"
check "the table is the last good one" same_table $E/good.table
systemctl status lvsd --no-pager -l >$E/systemctl-status.txt
cat $E/systemctl-status.txt
check "systemctl status says why (the rejection, with its place)" sh -c "grep -q 'active (running)' $E/systemctl-status.txt && grep -q 'lvsd.yaml:4:16: unknown scheduler' $E/systemctl-status.txt"
lvsd status >$E/lvsd-status.txt
cat $E/lvsd-status.txt
check "lvsd status says why" grep -q '^reload: *rejected at [0-9]* /etc/lvsd/lvsd.yaml:4:16: unknown scheduler `wlcc`' $E/lvsd-status.txt
check "StatusText says it too: in sync with the last good config, the file rejected" sh -c \
  "systemctl show -p StatusText --value lvsd | grep -q '^in sync: 1 services; config rejected: /etc/lvsd/lvsd.yaml:4:16: unknown scheduler'"
# The good file back (what the daemon still runs: nothing to change, and nothing changed).
cat $E/good.yaml >$CONF
sleep 1
check "the good file back: still active, in sync, the same table" sh -c \
  "[ \"\$(systemctl is-active lvsd)\" = active ] && [ \"\$(systemctl show -p StatusText --value lvsd)\" = 'in sync: 1 services' ] && ipvsadm -Sn | cmp -s - $E/good.table"
check "... and lvsd status no longer says rejected" sh -c "lvsd status | grep -q '^reload: *ok .*the file is the config in force again'"

step "6a. systemctl restart writes nothing to the table (adoption)"
# Something the kernel counts, to tell a service kept from one removed and added again.
ip link add lvsdtest0 type dummy && ip addr add 198.51.100.1/24 dev lvsdtest0 && ip link set lvsdtest0 up &&
  ip route add 192.0.2.10/32 dev lvsdtest0
knock; knock
sleep 2.5
c0=$(conns)
check "the kernel counted connections through the service ($c0)" [ "${c0:-0}" -ge 1 ]
table >$E/before.table
pid=$(mainpid)
systemctl restart lvsd; rc=$?
check "systemctl restart lvsd succeeds: active, a new process" sh -c "[ $rc -eq 0 ] && [ \"\$(systemctl is-active lvsd)\" = active ] && [ \"\$(systemctl show -p MainPID --value lvsd)\" != $pid ]"
check "the restarted daemon is in sync" within 10 status_is "in sync: 1 services"
this_run >$E/restart.log
cat $E/restart.log
check "it logged no change to the table" no_ops $E/restart.log
# The last reconcile's object, whatever the order of its keys: no change, no failure.
no_changes() {
  r=$(lvsd status --json | grep -o '"last_reconcile":{[^}]*}')
  echo "$r" | grep -q '"changes":\[\]' && echo "$r" | grep -q '"failed":\[\]'
}
check "lvsd status: its passes made no changes" no_changes
check "the table is as it was" same_table $E/before.table
sleep 2.5
check "the service is the same kernel object: its counters kept ($(conns) >= $c0)" [ "$(conns)" -ge "$c0" ]

step "7. the watchdog: a daemon that stops answering is restarted by systemd"
pid=$(mainpid)
n0=$(prop NRestarts)
echo "WatchdogUSec=$(prop WatchdogUSec); SIGSTOP to $pid"
kill -STOP "$pid"
check "systemd restarts it within WatchdogSec (30 s) + RestartSec, a new process" within 60 sh -c \
  "[ \"\$(systemctl show -p MainPID --value lvsd)\" != $pid ] && [ \"\$(systemctl show -p MainPID --value lvsd)\" != 0 ] && [ \"\$(systemctl is-active lvsd)\" = active ]"
check "journald has systemd's word for it: a watchdog timeout" logged 'lvsd.service: Watchdog timeout'
check "NRestarts counted it" [ "$(prop NRestarts)" -gt "$n0" ]
check "the old process is gone" [ ! -e /proc/"$pid" ]
check "the new daemon is in sync" within 10 status_is "in sync: 1 services"
this_run >$E/watchdog.log
check "... and wrote nothing (adoption again): no change logged" no_ops $E/watchdog.log
check "... the table as it was" same_table $E/before.table
journalctl -q --no-pager -u lvsd -n 12

step "6b. an upgrade (revision 2): restarted through systemd, the table untouched, the edited conffile kept"
pid=$(mainpid)
apt-get install -y /tmp/lvsd_2.deb >$E/apt2.log 2>&1; rc=$?
cat $E/apt2.log
check "apt-get install ./lvsd_2.deb upgrades (no conffile prompt)" sh -c "[ $rc -eq 0 ] && dpkg-query -W -f='\${Version}' lvsd | grep -q -- '-2\$'"
check "the service was restarted by the upgrade, and is active" sh -c "[ \"\$(systemctl is-active lvsd)\" = active ] && [ \"\$(systemctl show -p MainPID --value lvsd)\" != $pid ]"
check "the administrator's edit of lvsd.yaml is kept" cmp -s $CONF $E/good.yaml
check "the upgraded daemon is in sync" within 10 status_is "in sync: 1 services"
this_run >$E/upgrade.log
check "... and wrote nothing to the table: no change logged" no_ops $E/upgrade.log
check "... the table as it was" same_table $E/before.table

step "6c. systemctl stop leaves the table"
knock
sleep 2.5
c1=$(conns)
systemctl stop lvsd; rc=$?
check "systemctl stop lvsd: inactive" sh -c "[ $rc -eq 0 ] && [ \"\$(systemctl is-active lvsd)\" = inactive ]"
check "... no lvsd process left" not lvsd_running
check "the daemon said it leaves the table" logged 'stopping; the IPVS table and the host stay as they are'
check "the table is as it was" same_table $E/before.table
check "... and still counts ($c1)" sh -c "[ \"\$(ipvsadm -Ln --stats --exact -t 192.0.2.10:80 | awk '\$1 == \"TCP\" { print \$3 }')\" -ge $c1 ]"
check "/run/lvsd stays across the stop (the ownership records)" [ -s /run/lvsd/owned ]
# /run/lvsd is the lvsd user's (tmpfiles.d); root's apply works in it as the daemon does.
lvsd apply -c $CONF >$E/root-apply.out 2>&1; rc=$?
cat $E/root-apply.out
check "root's lvsd apply in the package's /run/lvsd (the lvsd user's) works: exit 0" [ $rc -eq 0 ]
check "... and finds the table in sync: nothing to change" sh -c "! grep -q '^[+~-] ' $E/root-apply.out"

step "6d. apt purge removes the config and lvsd's files, not the table"
systemctl start lvsd
check "started again for the purge: active, in sync" within 10 status_is "in sync: 1 services"
apt-get purge -y lvsd >$E/purge.log 2>&1; rc=$?
cat $E/purge.log
check "apt-get purge lvsd succeeds" [ $rc -eq 0 ]
check "dpkg knows it no more" sh -c "! dpkg-query -W -f='\${Status}' lvsd 2>/dev/null | grep -q installed"
check "the daemon is stopped" not lvsd_running
check "... its unit gone" sh -c '[ ! -e /usr/lib/systemd/system/lvsd.service ] && [ "$(systemctl is-enabled lvsd 2>&1)" != enabled ]'
check "/etc/lvsd is gone (the conffile, and the directory)" [ ! -e /etc/lvsd ]
check "/run/lvsd is gone (the files lvsd kept)" [ ! -e /run/lvsd ]
check "no file owned by lvsd is left" sh -c "[ -z \"\$(find / -xdev \\( -path /proc -o -path /sys \\) -prune -o -user $uid -print 2>/dev/null | head -n 5)\" ] && [ -z \"\$(find /run -user $uid -print 2>/dev/null | head -n 5)\" ]"
check "the enablement symlink and deb-systemd-helper's state are gone" sh -c \
  '[ ! -e /etc/systemd/system/multi-user.target.wants/lvsd.service ] && [ ! -e /var/lib/systemd/deb-systemd-helper-enabled/lvsd.service.dsh-also ]'
check "the table stays, as it was" same_table $E/before.table
check "... and still counts" sh -c "[ \"\$(ipvsadm -Ln --stats --exact -t 192.0.2.10:80 | awk '\$1 == \"TCP\" { print \$3 }')\" -ge $c1 ]"
getent passwd lvsd >/dev/null && echo "   (the lvsd user stays, as Debian leaves system users in place)"
ipvsadm -Ln

echo
echo "the proof took $(( ($(cs) - T0) / 100 )) s"
result debian-systemd
