#!/bin/bash
# The shipped Ansible tasks (deploy/config-management/ansible-lvsd.yml) run by Ansible itself
# (Debian's ansible-core) against lvsd from the Debian package, inside the Debian 12 VM that
# tests/vm/debian.sh boots (after tests/systemd/proof.sh, from the same disk: this script,
# checks.sh, ansible-lvsd.yml and lvsd_1.deb). What an operator sees: the play recap's
# `changed=`, the validate failure's message, the files in /etc/lvsd and the kernel's table.
# Ends with a "test result: ... e2e ansible" line.
cd "$(dirname "$0")" || exit 1
. ./checks.sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive SYSTEMD_PAGER='' SYSTEMD_COLORS=0 LC_ALL=C.UTF-8 HOME=/root
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 \
  ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_DEPRECATION_WARNINGS=0
E=/tmp/ansible
W=$E/play
T0=$(cs)
rm -rf $E; mkdir -p $W/templates
step() { echo; echo "--- $* (at $(( ($(cs) - T0) / 100 )) s)"; }
prop() { systemctl show -p "$1" --value lvsd; }
status_is() { [ "$(prop StatusText)" = "$1" ]; }
# The recap's count of changed tasks for localhost ("" when there is no recap).
changed() { sed -n 's/^localhost *:.* changed=\([0-9]*\) .*/\1/p' "$1" | tail -n1; }
failed() { sed -n 's/^localhost *:.* failed=\([0-9]*\) .*/\1/p' "$1" | tail -n1; }
# Everything an ansible run could change: the files under /etc/lvsd and the kernel's table.
host_state() { (cd /etc/lvsd && find . -type f | sort | xargs sha256sum; stat -c '%n %a %U' . conf.d conf.d/* 2>/dev/null); ipvsadm -Sn; }
play() { # log, extra ansible-playbook arguments...: runs the play, prints its output
  local log=$1; shift
  local t=$(cs)
  ansible-playbook -i localhost, -c local "$W/site.yml" "$@" >"$log" 2>&1
  local rc=$?
  cat "$log"
  echo "   (ansible-playbook took $(( ($(cs) - t) / 100 )) s, exit $rc)"
  return $rc
}

echo "$(ansible-playbook --version | head -n1); lvsd from the package"
check "ansible-playbook is there (Debian's ansible-core)" command -v ansible-playbook

step "0. the package installed, its daemon running (the package's way: lvsd_daemon true)"
cp lvsd_1.deb /tmp/ansible-lvsd.deb
if ! dpkg-query -W -f='${Status}' lvsd 2>/dev/null | grep -qx 'install ok installed'; then
  apt-get install -y /tmp/ansible-lvsd.deb >$E/apt.log 2>&1 || cat $E/apt.log
fi
check "lvsd is installed from the package (/usr/bin/lvsd)" sh -c "dpkg-query -W -f='\${Status}' lvsd | grep -qx 'install ok installed' && [ -x /usr/bin/lvsd ]"
check "the daemon is active, in sync with the shipped config" within 30 status_is "in sync: 0 services"

# The play: the shipped tasks, imported as they are, with the templates and variables a site
# would have. The main file takes conf.d/*.yaml (and what `lvsd_include` names instead).
cp ansible-lvsd.yml $W/ansible-lvsd.yml
cat >$W/site.yml <<'YML'
- hosts: all
  gather_facts: false
  vars:
    lvsd_bin: /usr/bin/lvsd
    lvsd_role: none
    lvsd_services:
      - { name: web, address: "198.51.100.1:80", reals: ["10.0.9.1:80", "10.0.9.2:80"] }
      - { name: dns, address: "198.51.100.2:53", protocol: udp, reals: ["10.0.9.3:53"] }
  tasks:
    - ansible.builtin.import_tasks: ansible-lvsd.yml
YML
cat >$W/templates/lvsd.yaml.j2 <<'J2'
# Managed by Ansible.
include: {{ lvsd_include | default(['conf.d/*.yaml']) | to_json }}
J2
cat >$W/templates/lvsd-service.yaml.j2 <<'J2'
# Managed by Ansible: {{ item.name }}.
services:
  - name: {{ item.name }}
    address: "{{ item.address }}"
{% if item.protocol is defined %}
    protocol: {{ item.protocol }}
{% endif %}
    scheduler: wlc
    reals:
{% for r in item.reals %}
      - address: "{{ r }}"
{% endfor %}
J2
ipvsadm -Sn >$E/table.0

step "1. the first run writes the files; the daemon takes them: changed"
play $E/run1.log; rc=$?
check "ansible-playbook succeeds" [ $rc -eq 0 ]
check "the recap reports changes (changed=$(changed $E/run1.log))" sh -c "[ \"$(changed $E/run1.log)\" -gt 0 ] 2>/dev/null"
check "the main file's validate (--as /etc/lvsd/lvsd.yaml) passed: it is in place" grep -q '^include: \["conf.d/\*.yaml"\]' /etc/lvsd/lvsd.yaml
check "conf.d holds web.yaml and dns.yaml" sh -c '[ -f /etc/lvsd/conf.d/web.yaml ] && [ -f /etc/lvsd/conf.d/dns.yaml ]'
check "lvsd check: the generation is valid (2 services, 3 real servers)" sh -c 'lvsd check -c /etc/lvsd/lvsd.yaml | grep -q "valid (2 services, 3 real servers"'
check "the daemon took the files by itself: in sync, 2 services" within 30 status_is "in sync: 2 services"
check "the table has both services" sh -c 'ipvsadm -Sn | grep -q -- "-A -t 198.51.100.1:80 -s wlc" && ipvsadm -Sn | grep -q -- "-A -u 198.51.100.2:53 -s wlc"'
check "... and their reals" sh -c 'ipvsadm -Sn | grep -q -- "-a -t 198.51.100.1:80 -r 10.0.9.2:80" && ipvsadm -Sn | grep -q -- "-a -u 198.51.100.2:53 -r 10.0.9.3:53"'
ipvsadm -Sn

step "2. the second run: nothing to do, changed=0"
host_state >$E/state.1
play $E/run2.log; rc=$?
check "ansible-playbook succeeds" [ $rc -eq 0 ]
check "the recap reports changed=0" [ "$(changed $E/run2.log)" = 0 ]
check "lvsd plan found nothing pending (the pending list and apply skipped)" [ "$(grep -c 'skipping: \[localhost\]' $E/run2.log)" = 2 ]
host_state >$E/state.2
check "the files and the table are as they were" cmp -s $E/state.1 $E/state.2

step "3. a broken service file: refused by validate with lvsd's message, nothing changed"
cat >$E/broken-service.yml <<'YML'
lvsd_services:
  - { name: web, address: "198.51.100.1:99999", reals: ["10.0.9.1:80"] }
  - { name: dns, address: "198.51.100.2:53", protocol: udp, reals: ["10.0.9.3:53"] }
YML
play $E/run3.log -e @$E/broken-service.yml; rc=$?
check "ansible-playbook fails" [ $rc -ne 0 ]
check "the recap reports the failure (failed=1)" [ "$(failed $E/run3.log)" = 1 ]
check "Ansible says the file failed to validate" grep -q 'failed to validate' $E/run3.log
check "with lvsd's message at the file's line: <file>:4:14: port 99999 is out of range" grep -q -E ':4:14: port 99999 is out of range' $E/run3.log
host_state >$E/state.3
check "the files and the table are as they were" cmp -s $E/state.1 $E/state.3
diff $E/state.1 $E/state.3

step "4. a broken main file (includes a directory that does not exist at the destination): refused, nothing changed"
play $E/run4.log -e '{"lvsd_include": ["nosuch.d/*.yaml"]}'; rc=$?
check "ansible-playbook fails" [ $rc -ne 0 ]
check "Ansible says the file failed to validate" grep -q 'failed to validate' $E/run4.log
check "with lvsd's message at the copy's line, naming the destination's directory" grep -q -F ':2:11: the directory `/etc/lvsd/nosuch.d` does not exist' $E/run4.log
host_state >$E/state.4
check "the files and the table are as they were" cmp -s $E/state.1 $E/state.4

check "the daemon stayed in sync with the last good files" status_is "in sync: 2 services"

echo
echo "the ansible test took $(( ($(cs) - T0) / 100 )) s"
result ansible
