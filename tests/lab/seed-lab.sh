# shellcheck shell=sh
# The seed's LVS-DR lab, inside the test VM, with the seed's own addresses: a bridge as the LAN,
# one network namespace per host. Only the lab is built by hand here (links, addresses of the
# hosts themselves, web servers); what the seed did with ipvsadm and sysctl is lvsd's job.
#   director 172.16.1.100 (VIP 172.16.1.50), real servers 172.16.1.101 and .102, client .200
# Every host also has 2001:db8::<last octet>/64, for the IPv6 services.
IP=/sbin/ip
VIP=172.16.1.50

lab_host() { # name address
  $IP netns add "$1"
  $IP link add "veth-$1" type veth peer name eth0 netns "$1"
  $IP link set "veth-$1" master br0 up
  $IP -n "$1" addr add "$2/16" dev eth0
  $IP -n "$1" addr add "2001:db8::${2##*.}/64" dev eth0 nodad
  $IP -n "$1" link set eth0 up
  $IP -n "$1" link set lo up
}

# An empty namespace where 10/8 is reachable (through a dummy interface): the kernel takes a DR
# real server only at an address it can route to (an unroutable one is EINVAL).
lab_routed_ns() { # name
  $IP netns add "$1"
  $IP -n "$1" link set lo up
  $IP -n "$1" link add d0 type dummy
  $IP -n "$1" addr add 10.0.0.254/8 dev d0
  $IP -n "$1" link set d0 up
}

# Takes the lab down, so another scenario can build it afresh in the same VM.
lab_down() {
  for pid in $(pidof httpd) $(pidof busybox); do
    case "$(cat /proc/$pid/cmdline 2>/dev/null | tr '\0' ' ')" in *httpd*) kill "$pid" ;; esac
  done
  for ns in $($IP netns list | awk '{print $1}'); do
    # Anything still running there (a health check's child…) would keep the namespace alive.
    for pid in $($IP netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    $IP netns del "$ns"
  done
  $IP link del br0 2>/dev/null
  # A namespace goes away asynchronously, and its veth peers with it: wait until the names are
  # free again, or the next lab_up cannot create them.
  i=0
  while $IP -o link show | grep -q 'veth-' && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  # A namespace something still holds (it outlives its name) keeps its end of the pair, with
  # the lab's addresses: take the pair away here, or the next lab's bridge would reach it.
  for l in $($IP -o link show | sed -n 's/^[0-9]*: \(veth-[^@:]*\).*/\1/p'); do
    echo "lab: $l outlived its namespace; deleting it"
    $IP link del "$l"
  done
  return 0
}

# A real server host with a web page naming it, on ports 80 and 8080.
lab_real_server() { # name address
  lab_host "$1" "$2"
  mkdir -p "/tmp/www-$1"
  echo "<h1>this is $2</h1>" >"/tmp/www-$1/index.html"
  $IP netns exec "$1" busybox httpd -p 80 -h "/tmp/www-$1"
  $IP netns exec "$1" busybox httpd -p 8080 -h "/tmp/www-$1"
}

lab_up() {
  $IP link add br0 type bridge
  $IP link set br0 up
  lab_host director 172.16.1.100
  lab_real_server rs1 172.16.1.101
  lab_real_server rs2 172.16.1.102
  lab_host client 172.16.1.200
}

# The seed's real-server preparation (step 3-4 of the seed) by hand: for the scenarios where
# lvsd manages the table only and somebody else set up the hosts.
lab_real_servers_by_hand() {
  [ $# -gt 0 ] || set -- rs1 rs2
  for rs in "$@"; do
    $IP -n "$rs" addr add "$VIP/32" dev lo
    $IP netns exec "$rs" sh -c 'echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore; echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce'
  done
}

# The director's VIP and forwarding (step 1-2 of the seed) by hand, for the same scenarios.
lab_director_by_hand() {
  $IP -n director addr add "$VIP/32" dev eth0
  $IP netns exec director sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
}

# One HTTP request from the client to the VIP (or $1, port $2); prints the body.
lab_request() {
  printf 'GET / HTTP/1.0\r\n\r\n' | $IP netns exec client busybox nc -w 2 "${1:-$VIP}" "${2:-80}" | tail -n 1
}
