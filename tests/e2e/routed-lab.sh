# shellcheck shell=sh
# The routed lab of the active/active scenarios (anycast.sh, directors.sh), sourced: two LANs
# (br0: the router, the directors and the real servers; br1: the client), a router that
# forwards with an L4 multipath hash, real servers rs1 and rs2 with a web page and an echo
# service that say who answers, and BIRD's configurations (Debian's binary) for the router
# and a director, with timers short enough for a test. Needs $E (the scenario's directory).
IP=/sbin/ip
on() { h=$1; shift; $IP netns exec "$h" "$@"; }

routed_lab_up() { # director:octet... (each director at 172.16.1.<octet> on br0)
  local ns pid i br n
  for ns in $($IP netns list | awk '{print $1}'); do
    for pid in $($IP netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    $IP netns del "$ns"
  done
  $IP link del br0 2>/dev/null; $IP link del br1 2>/dev/null
  i=0; while $IP -o link show | grep -q 'v-' && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  for br in br0 br1; do $IP link add $br type bridge; $IP link set $br up; done
  node router; port router br0 eth0 172.16.1.1/24; port router br1 eth1 192.168.0.1/24
  on router sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv4/fib_multipath_hash_policy'
  node client; port client br1 eth0 192.168.0.2/24; $IP -n client route add default via 192.168.0.1
  for n in "$@" rs1:101 rs2:102; do
    node "${n%:*}"; port "${n%:*}" br0 eth0 "172.16.1.${n#*:}/24"
    $IP -n "${n%:*}" route add default via 172.16.1.1
  done
  for rs in rs1 rs2; do
    mkdir -p $E/www-$rs; echo "<h1>this is $rs</h1>" >$E/www-$rs/index.html
    on $rs busybox httpd -p 80 -h $E/www-$rs
    printf '#!/bin/sh\necho "this is %s"\nexec cat\n' "$rs" >$E/echo-$rs.sh; chmod 755 $E/echo-$rs.sh
    on $rs busybox nc -ll -p 7000 -e $E/echo-$rs.sh &
  done
}
port() { # ns bridge device address/len
  $IP link add "v-$1-$3" type veth peer name "$3" netns "$1"
  $IP link set "v-$1-$3" master "$2" up
  $IP -n "$1" addr add "$4" dev "$3"
  $IP -n "$1" link set "$3" up
}
node() { $IP netns add "$1"; $IP -n "$1" link set lo up; }

# BIRD on a director: announces the /32s on lvsd0 to the router.
bird_director() { # address
  cat <<BIRD
router id $1;
protocol device { scan time 2; }
protocol direct lvsd_vips { ipv4; interface "lvsd0"; }
protocol bgp upstream {
  local $1 as 65001;
  neighbor 172.16.1.1 as 65000;
  connect retry time 1;
  error wait time 1, 5;
  hold time 6;
  keepalive time 2;
  ipv4 { import none; export where source = RTS_DEVICE && net.len = 32; };
}
BIRD
}
# BIRD on the router: deploy/ha/bird-router.conf with short timers, and the third director's
# session when asked.
router_up() { # [dir3]
  {
    sed -e 's/log syslog all;//' -e 's/hold time 9;/hold time 6; keepalive time 2; connect retry time 1; error wait time 1, 5;/' \
      -e 's/scan time 10;/scan time 2;/' bird-router.conf
    [ "${1:-}" = dir3 ] && printf 'protocol bgp dir3 from director {\n    neighbor 172.16.1.13 as 65001;\n}\n'
  } >$E/router.conf
  on router bird -c $E/router.conf -s $E/router.ctl -P $E/router.pid
}
