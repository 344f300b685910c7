#!/bin/sh
# End-to-end tests of lvsd's host roles in the seed's lab, run as root inside the test VM
# (busybox sh). Only the lab is built by hand: namespaces, veth links, the hosts' own addresses,
# the web servers. Everything the seed did with `ip addr`, `sysctl` and `ipvsadm` on the
# director and the real servers is done by lvsd from ONE file, `--role` telling the hosts apart.
# Checks are on the kernel (addresses, /proc/sys, ipvsadm), the client's neighbour table and real
# traffic. Ends with a cargo-style "test result:" line for tests/run.sh.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/roles
mkdir -p $E
on() { h=$1; shift; $IP netns exec "$h" "$@"; }
# lvsd as host H with its own state directory (each host has its own /run in real life).
lvsd_on() { h=$1; shift; $IP netns exec "$h" ./lvsd "$@" --state-dir "$E/state-$h"; }
sysctl_on() { on "$1" cat "/proc/sys/$2"; }
is() { [ "$(sysctl_on "$1" "$2")" = "$3" ]; } # host path value
has_addr() { on "$1" $IP -o addr show dev "$2" | grep -q " $3 "; } # host dev addr/len
lacks_addr() { ! has_addr "$@"; }
ask() { # n vip port: n requests from the client; leaves the answers in $E/answers
  i=0; : >$E/answers
  while [ $i -lt "$1" ]; do lab_request "$2" "$3" >>$E/answers; i=$((i + 1)); done
  cat $E/answers | tr '\n' ' '; echo
}
answered_by() { grep -c "this is $1<" $E/answers; }
both_answered() { [ "$(answered_by "$1")" -ge 2 ] && [ "$(answered_by "$2")" -ge 2 ]; }
alternating() { # the answers alternate strictly between two servers
  awk 'NR > 1 && $0 == prev { bad = 1 } { prev = $0 } END { exit bad }' $E/answers
}
out_pkts() { # service (ipvsadm -t form): OutPkts of the director's service line
  on director ipvsadm -Ln --stats -t "$1" | awk 'NR == 4 { print $5 }'
}
in_pkts() { on director ipvsadm -Ln --stats -t "$1" | awk 'NR == 4 { print $4 }'; }

# One file for every host. The director's role is in it; real servers pass --role real-server.
conf() { # extra service lines
  cat <<YAML
host:
  role: director
  interface: ${IFACE:-eth0}
services:
  - name: web
    address: 172.16.1.50:80
    scheduler: wlc
    forward: dr
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
  - name: web-tunnel
    address: 172.16.1.51:80
    scheduler: rr
    forward: tunnel
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
  - name: web6
    address: "[2001:db8::50]:80"
    scheduler: rr
    forward: dr
    reals:
      - address: 2001:db8::101
      - address: 2001:db8::102
  - name: web6-tunnel
    address: "[2001:db8::51]:80"
    scheduler: rr
    forward: tunnel
    reals:
      - address: 2001:db8::101
      - address: 2001:db8::102
$1
YAML
}

lab_down
lab_up
# A hardened real server: strict reverse-path filtering everywhere (tunnel traffic would die).
on rs1 sh -c 'echo 1 > /proc/sys/net/ipv4/conf/all/rp_filter'
# Addresses that are not lvsd's: one on the director's interface that equals a VIP, one on a
# real server's lo. lvsd must use the first and remove neither.
on director $IP addr add 172.16.1.51/32 dev eth0
on rs2 $IP addr add 10.9.9.9/32 dev lo
conf >$E/lvsd.yaml
cat $E/lvsd.yaml
for h in director rs1 rs2; do
  for k in net/ipv4/ip_forward net/ipv6/conf/all/forwarding net/ipv4/conf/all/arp_ignore \
    net/ipv4/conf/all/arp_announce net/ipv4/conf/all/rp_filter net/ipv4/conf/tunl0/rp_filter; do
    echo "$k $(sysctl_on $h $k)"
  done >$E/before-$h
done
mac=$(on director cat /sys/class/net/eth0/address)
echo "director's MAC: $mac"

echo "--- 0. an interface that does not exist: a clear error, nothing changed"
IFACE=ens33 conf >$E/ens33.yaml
lvsd_on director apply -c $E/ens33.yaml >$E/out 2>&1; rc=$?
cat $E/out
check "apply with a missing interface exits 1" [ $rc -eq 1 ]
check "... naming the interface" grep -q 'interface `ens33` does not exist' $E/out
check "... and nothing in the table" [ -z "$(on director ipvsadm -Sn)" ]
check "... nor on the host" is director net/ipv4/ip_forward 0
lvsd_on director plan -c $E/ens33.yaml >$E/out 2>&1; rc=$?
check "plan says so too (exit 1)" [ $rc -eq 1 ]

echo "--- 1. plan shows host changes next to table changes"
lvsd_on director plan -c $E/lvsd.yaml >$E/plan 2>&1; rc=$?
cat $E/plan
check "director plan exits 2 (changes pending)" [ $rc -eq 2 ]
check "... with the VIP for eth0" grep -q -F '+ address 172.16.1.50/32 on eth0' $E/plan
check "... IPv6 VIP as /128" grep -q -F '+ address 2001:db8::50/128 on eth0' $E/plan
check "... forwarding" grep -q -F '~ sysctl net.ipv4.ip_forward = 1 (was 0)' $E/plan
check "... and the IPVS service" grep -q -F '+ service' $E/plan
check "... but not the VIP already on eth0 (172.16.1.51)" sh -c "! grep -q -F '172.16.1.51/32' $E/plan"
lvsd_on rs1 plan -c $E/lvsd.yaml --role real-server >$E/plan-rs 2>&1; rc=$?
cat $E/plan-rs
check "real-server plan exits 2" [ $rc -eq 2 ]
check "... and has no IPVS operations" sh -c "! grep -q -E 'service|real ' $E/plan-rs"

echo "--- 2. apply: the director and both real servers from the same file"
lvsd_on director apply -c $E/lvsd.yaml; rc=$?
check "director apply exits 0" [ $rc -eq 0 ]
for rs in rs1 rs2; do
  lvsd_on $rs apply -c $E/lvsd.yaml --role real-server; rc=$?
  check "$rs apply --role real-server exits 0" [ $rc -eq 0 ]
done
on director $IP addr show dev eth0
on rs1 $IP addr show dev lo
on rs1 $IP addr show dev tunl0
check "director: VIP 172.16.1.50/32 on eth0" has_addr director eth0 172.16.1.50/32
check "director: VIP 2001:db8::50/128 on eth0" has_addr director eth0 2001:db8::50/128
check "director: ... deprecated, so never a source address (the IPv6 tunnel needs that)" sh -c "$IP -n director -6 addr show dev eth0 | grep '2001:db8::50/128' | grep -q deprecated"
check "director: ... without duplicate address detection (usable at once, not tentative)" sh -c "$IP -n director -6 addr show dev eth0 | grep -A0 '2001:db8::50/128' | grep -q nodad && ! $IP -n director -6 addr show dev eth0 | grep '2001:db8::50/128' | grep -q tentative"
check "director: ip_forward = 1" is director net/ipv4/ip_forward 1
check "director: IPv6 forwarding = 1" is director net/ipv6/conf/all/forwarding 1
check "director: the IPVS table has the four services" [ "$(on director ipvsadm -Sn | grep -c '^-A')" -eq 4 ]
for rs in rs1 rs2; do
  check "$rs: VIP 172.16.1.50/32 on lo" has_addr $rs lo 172.16.1.50/32
  check "$rs: VIP 2001:db8::50/128 on lo" has_addr $rs lo 2001:db8::50/128
  check "$rs: ... deprecated: the host's own connections never come from the VIP" sh -c "$IP -n $rs -6 addr show dev lo | grep '2001:db8::50/128' | grep -q deprecated"
  check "$rs: tunnel VIP 172.16.1.51/32 on tunl0" has_addr $rs tunl0 172.16.1.51/32
  check "$rs: tunl0 is up" sh -c "$IP -n $rs link show tunl0 | grep -q '[<,]UP[,>]'"
  check "$rs: arp_ignore = 1" is $rs net/ipv4/conf/all/arp_ignore 1
  check "$rs: arp_announce = 2" is $rs net/ipv4/conf/all/arp_announce 2
  check "$rs: tunl0 rp_filter = 0" is $rs net/ipv4/conf/tunl0/rp_filter 0
  check "$rs: IPv6 tunnel VIP 2001:db8::51/128 on ip6tnl0" has_addr $rs ip6tnl0 2001:db8::51/128
  check "$rs: no IPVS table (a real server never programs IPVS)" [ -z "$(on $rs ipvsadm -Sn)" ]
done
check "rs1: strict rp_filter on all loosened to 2 (tunnelled packets would be dropped)" is rs1 net/ipv4/conf/all/rp_filter 2
check "rs2: rp_filter on all left at 0 (already fine)" is rs2 net/ipv4/conf/all/rp_filter 0
for h in director rs1 rs2; do
  role=director; [ $h = director ] || role=real-server
  lvsd_on $h plan -c $E/lvsd.yaml --role $role >$E/out 2>&1; rc=$?
  check "$h: plan is in sync afterwards (exit 0)" [ $rc -eq 0 ]
  lvsd_on $h apply -c $E/lvsd.yaml --role $role >$E/out 2>&1
  check "$h: a second apply changes nothing" grep -q 'in sync: nothing to change' $E/out
done

echo "--- 3. traffic: DR, direct return, ARP"
on client $IP neigh flush dev eth0
ask 8 172.16.1.50 80
check "DR: both real servers answer" both_answered 172.16.1.101 172.16.1.102
check "DR: the answers alternate" alternating
on client $IP neigh show 172.16.1.50
check "the client's neighbour table maps the VIP to the director's MAC" sh -c "$IP -n client neigh show 172.16.1.50 | grep -q -i 'lladdr $mac'"
on client $IP neigh flush dev eth0
on client busybox arping -b -c 3 -w 3 -I eth0 172.16.1.50 >$E/arping 2>&1
cat $E/arping
check "ARP for the VIP: answered" grep -q -i 'reply from 172.16.1.50' $E/arping
check "ARP for the VIP: only by the director (real servers stay quiet)" sh -c "! grep -i 'reply from' $E/arping | grep -v -i '$mac'"

echo "--- 4. traffic: the tunnel service"
ask 6 172.16.1.51 80
check "tunnel: both real servers answer" both_answered 172.16.1.101 172.16.1.102

echo "--- 5. traffic: the IPv6 DR service"
ask 6 2001:db8::50 80
# (the pages name each server by its IPv4 address; nc to 2001:db8::50 can only go over IPv6)
check "IPv6 DR: both real servers answer" both_answered 172.16.1.101 172.16.1.102
check "IPv6 DR: the client's neighbour entry for the VIP is the director's MAC" sh -c "$IP -n client -6 neigh show 2001:db8::50 | grep -q -i 'lladdr $mac'"
ask 6 2001:db8::51 80
check "IPv6 tunnel (ip6ip6 to ip6tnl0): both real servers answer" both_answered 172.16.1.101 172.16.1.102

echo "--- the director's counters (summed by the kernel's 2 s estimator): requests in, no replies out"
sleep 3
on director ipvsadm -Ln --stats
for svc in 172.16.1.50:80 172.16.1.51:80 '[2001:db8::50]:80' '[2001:db8::51]:80'; do
  check "$svc: the director saw the requests (InPkts > 0)" [ "$(in_pkts "$svc")" -gt 0 ]
  check "$svc: and no replies (OutPkts 0: true direct return)" [ "$(out_pkts "$svc")" = 0 ]
done

echo "--- 6. drift is repaired by the daemons"
lvsd_on rs1 run -c $E/lvsd.yaml --role real-server --resync-interval 1s >$E/rs1.log 2>&1 &
lvsd_on director run -c $E/lvsd.yaml --resync-interval 1s >$E/director.log 2>&1 &
sleep 2
rs1_pid=$(pidof lvsd | tr ' ' '\n' | while read -r p; do grep -q -a real-server /proc/$p/cmdline && echo $p; done)
dir_pid=$(pidof lvsd | tr ' ' '\n' | while read -r p; do grep -q -a real-server /proc/$p/cmdline || echo $p; done)
on rs1 $IP addr del 172.16.1.50/32 dev lo
on rs1 sh -c 'echo 0 > /proc/sys/net/ipv4/conf/all/arp_ignore'
check "rs1: a removed VIP is back within 3 s" within 3 has_addr rs1 lo 172.16.1.50/32
check "rs1: a reset arp_ignore is 1 again" within 3 is rs1 net/ipv4/conf/all/arp_ignore 1
on director $IP addr del 172.16.1.50/32 dev eth0
on director sh -c 'echo 0 > /proc/sys/net/ipv4/ip_forward'
check "director: a removed VIP is back within 3 s" within 3 has_addr director eth0 172.16.1.50/32
check "director: ip_forward is 1 again" within 3 is director net/ipv4/ip_forward 1

echo "--- 7. a live edit: a service added, then removed; its VIP follows"
conf "  - name: extra
    address: 172.16.1.52:80
    reals:
      - address: 172.16.1.101" >$E/next.yaml
mv $E/next.yaml $E/lvsd.yaml
check "the new service's VIP appears on the director within 2 s" within 2 has_addr director eth0 172.16.1.52/32
check "... and on the real server's lo" within 2 has_addr rs1 lo 172.16.1.52/32
conf >$E/next.yaml
mv $E/next.yaml $E/lvsd.yaml
check "removed: the service leaves the table within 3 s" within 3 sh -c "! $IP netns exec director ipvsadm -Sn | grep -q 172.16.1.52"
check "... and its VIP leaves the director" within 2 lacks_addr director eth0 172.16.1.52/32
check "... and rs1's lo" within 2 lacks_addr rs1 lo 172.16.1.52/32
check "the other VIPs stay" has_addr director eth0 172.16.1.50/32
echo "--- guards: a file that lost its host section does not take the director's role away"
conf | sed '/^host:/,/^  interface:/d' >$E/next.yaml
mv $E/next.yaml $E/lvsd.yaml
check "the director daemon refuses it and says why" within 3 grep -q "takes this host's role away" $E/director.log
check "... and keeps its VIPs" has_addr director eth0 172.16.1.50/32
check "... and forwarding" is director net/ipv4/ip_forward 1
conf >$E/next.yaml
mv $E/next.yaml $E/lvsd.yaml
kill $rs1_pid $dir_pid
sleep 1
cat $E/rs1.log $E/director.log
echo "# emptied by a failed push" >$E/empty.yaml
lvsd_on rs2 apply -c $E/empty.yaml --role real-server >$E/out 2>&1; rc=$?
cat $E/out
check "an emptied file on a real server is refused (exit 1)" [ $rc -eq 1 ]
check "... saying why" grep -q 'refusing to apply: the plan removes 4 of the 4 VIPs' $E/out
check "... and the VIPs stay" has_addr rs2 lo 172.16.1.50/32
lvsd_on rs2 plan -c $E/lvsd.yaml --role real-server >$E/out 2>&1; rc=$?
check "... so the real server is still in sync with the real file" [ $rc -eq 0 ]

echo "--- 8. removing the role restores everything lvsd changed, and only that"
lvsd_on director apply -c $E/lvsd.yaml --role none; rc=$?
check "director apply --role none exits 0" [ $rc -eq 0 ]
for rs in rs1 rs2; do
  lvsd_on $rs apply -c $E/lvsd.yaml --role none; rc=$?
  check "$rs apply --role none exits 0" [ $rc -eq 0 ]
done
for h in director rs1 rs2; do
  for k in net/ipv4/ip_forward net/ipv6/conf/all/forwarding net/ipv4/conf/all/arp_ignore \
    net/ipv4/conf/all/arp_announce net/ipv4/conf/all/rp_filter net/ipv4/conf/tunl0/rp_filter; do
    echo "$k $(sysctl_on $h $k)"
  done >$E/after-$h
  diff $E/before-$h $E/after-$h
  check "$h: every sysctl is back to its original value" cmp -s $E/before-$h $E/after-$h
  check "$h: the host record is empty" sh -c "grep -q '\"addresses\": \[\]' $E/state-$h/host && grep -q '\"links_up\": \[\]' $E/state-$h/host && grep -q '\"sysctls\": \[\]' $E/state-$h/host"
done
check "director: lvsd's VIPs are gone" sh -c "! $IP -n director addr show dev eth0 | grep -q -E '172.16.1.50/|2001:db8::50/'"
check "director: the VIP that was there before lvsd stays" has_addr director eth0 172.16.1.51/32
check "director: its own address stays" has_addr director eth0 172.16.1.100/16
check "rs1: lvsd's VIPs are gone from lo, tunl0 and ip6tnl0" sh -c "! $IP -n rs1 addr | grep -q -E '172.16.1.5[01]/|2001:db8::5[01]/'"
check "rs1: tunl0 is down again" sh -c "! $IP -n rs1 link show tunl0 | grep -q '[<,]UP[,>]'"
check "rs2: the address lvsd did not add stays on lo" has_addr rs2 lo 10.9.9.9/32
check "the director's IPVS table is still there (role none manages the table only)" [ "$(on director ipvsadm -Sn | grep -c '^-A')" -eq 4 ]

echo "--- control: the ARP check can fail. The VIP on a real server's lo without the sysctls"
on rs2 $IP addr add 172.16.1.50/32 dev lo
on client busybox arping -b -c 3 -w 3 -I eth0 172.16.1.50 >$E/arping 2>&1
cat $E/arping
check "control: a real server without arp_ignore answers ARP for the VIP (the seed's problem)" sh -c "grep -i 'reply from' $E/arping | grep -v -q -i '$mac'"
on rs2 $IP addr del 172.16.1.50/32 dev lo

result roles
