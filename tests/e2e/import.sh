#!/bin/sh
# Migration and the configuration directory, in the test VM (busybox sh).
# 1. keepalived (Debian's binary, checkers only) builds its table from a keepalived.conf
#    written the way its documentation writes them, in its own namespace, its checkers
#    succeeding against the lab's real listeners (HTTP, TLS, TCP, a script); `lvsd import
#    --from keepalived` converts the same file, `lvsd check` accepts it, and `lvsd run` in
#    another namespace builds the same table (`ipvsadm -Sn`, sorted). Every Debian sample
#    keepalived.conf converts and passes `lvsd check`.
# 2. An ldirectord.cf converts, passes `lvsd check` and gives the table ldirectord would.
# 3. include: conf.d/*.yaml under the daemon: a file added, replaced by rename, removed, a
#    broken one refused whole, a ConfigMap-style ..data swap; plan/check --json; a bulk
#    apply's summary.
# Ends with a "test result:" line.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/import
rm -rf $E; mkdir -p $E
on() { h=$1; shift; $IP netns exec "$h" "$@"; }
sorted() { on "$1" ipvsadm -Sn | sort; }

lab_down
lab_up                               # director .100, rs1 .101, rs2 .102 (httpd on 80 and 8080), client .200
lab_host kad 172.16.1.98             # keepalived's director
lab_host lvs 172.16.1.97             # lvsd's director
lab_real_servers_by_hand rs1 rs2
# TLS on 8443 and a plain TCP service on 7000, on both real servers.
printf '#!/bin/sh\nprintf "HTTP/1.0 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n"\n' >$E/tls-answer.sh
chmod 755 $E/tls-answer.sh
for rs in rs1 rs2; do
  $IP netns exec $rs socat OPENSSL-LISTEN:8443,fork,reuseaddr,cert=lab.crt,key=lab.key,verify=0 EXEC:$E/tls-answer.sh >$E/socat-$rs.log 2>&1 &
  $IP netns exec $rs busybox nc -ll -p 7000 -e /bin/cat >/dev/null 2>&1 &
done
sleep 1

echo "--- 1. keepalived.conf: keepalived's table and lvsd's"
mkdir -p $E/ka/conf.d
cat >$E/ka/keepalived.conf <<'CONF'
! Configuration File for keepalived

global_defs {
   router_id LVS_LAB
   script_user root
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress {
        172.16.1.50
    }
}

# HTTP, direct routing, a status range, weights and thresholds
virtual_server 172.16.1.50 80 {
    delay_loop 1
    lb_algo wrr
    lb_kind DR
    protocol TCP

    real_server 172.16.1.101 80 {
        weight 3
        inhibit_on_failure
        HTTP_GET {
            url {
              path /
              status_code 200-299
            }
            connect_timeout 2
            retry 2
            delay_before_retry 1
        }
    }
  real_server 172.16.1.102 80 {    # odd indentation and a trailing comment
      weight 1
      uthreshold 100
      lthreshold 10
      HTTP_GET
      {
        url { path / }
        connect_port 8080
        connect_timeout 2
      }
  }
}

include conf.d/*.conf
CONF
cat >$E/ka/conf.d/more.conf <<'CONF'
# TLS, NAT, sh with sh-port, persistence with a granularity, a sorry server, a quorum
virtual_server 172.16.1.50 443 {
    delay_loop 1
    lvs_sched sh
    sh-port
    lvs_method NAT
    persistence_timeout
    persistence_granularity 255.255.255.0
    protocol TCP
    quorum 2
    sorry_server 172.16.1.110 8443
    real_server 172.16.1.101 8443 {
        SSL_GET {
            url {
                path /
            }
            connect_timeout 2
        }
    }
    real_server 172.16.1.102 8443 {
        alpha
        TCP_CHECK { connect_timeout 2 }
    }
}

! A group: two addresses of a range and a firewall mark, UDP with one-packet scheduling
virtual_server_group DNS {
    172.16.1.60-61 53
    fwmark 7
}

virtual_server group DNS {
    delay_loop 1
    lb_algo rr
    lb_kind DR
    protocol UDP
    ops
    real_server 172.16.1.101 53 {
        MISC_CHECK {
            misc_path "/bin/true"
            misc_timeout 2
        }
    }
}

# IPv6, tunnelled over GUE with checksums
virtual_server 2001:db8::50 7000 {
    delay_loop 1
    lb_algo rr
    lb_kind TUN type gue port 6080 csum
    protocol TCP
    real_server 2001:db8::101 7000 {
        weight 2
        TCP_CHECK { connect_timeout 2 }
    }
}

# No protocol (keepalived takes UDP), a DR real on another port (keepalived resets it)
virtual_server 172.16.1.70 9000 {
    lb_kind DR
    real_server 172.16.1.101 9999 {
    }
}

# No real servers: keepalived leaves it out
virtual_server 172.16.1.71 80 {
    lb_algo rr
}
CONF
# (Not `keepalived -t`: it exits non-zero for the constructs this file holds on purpose, a
# virtual server without protocol, one without real servers, a DR port that does not match.)
$IP netns exec kad keepalived -C -n -l -D -f $E/ka/keepalived.conf -p $E/ka/k.pid -c $E/ka/c.pid >$E/ka/keepalived.log 2>&1 &
check "keepalived starts its checkers on the file" within 10 grep -q "Startup complete" $E/ka/keepalived.log
./lvsd import --from keepalived $E/ka/keepalived.conf >$E/ka/lvsd.yaml 2>$E/ka/summary.txt
check "lvsd import --from keepalived converts it" [ -s $E/ka/lvsd.yaml ]
cat $E/ka/summary.txt
check "... and names what it could not convert (delay_before_retry) and what it left (vrrp_instance VI_1)" sh -c "grep -q 'delay_before_retry' $E/ka/summary.txt && grep -q 'vrrp_instance VI_1' $E/ka/summary.txt"
check "the converted file passes lvsd check" ./lvsd check -c $E/ka/lvsd.yaml
chmod 644 $E/ka/lvsd.yaml
$IP netns exec lvs ./lvsd run -c $E/ka/lvsd.yaml --state-dir $E/ka/st --resync-interval 2s >$E/ka/lvsd.log 2>&1 &
echo $! >$E/ka/lvsd.pid
same() { sorted kad >$E/ka/k.tab; sorted lvs >$E/ka/l.tab; [ -s $E/ka/k.tab ] && cmp -s $E/ka/k.tab $E/ka/l.tab; }
# Both tables once every checker has passed: the alpha real (down until its first check)
# is in both.
full() { same && grep -q -- '-a -t 172.16.1.50:443 -r 172.16.1.102:8443 -m -w 1' $E/ka/k.tab; }
check "lvsd builds the table keepalived builds (ipvsadm -Sn, sorted)" within 30 full
echo "   keepalived:"; sed 's/^/     /' $E/ka/k.tab
if ! same; then echo "   lvsd:"; sed 's/^/     /' $E/ka/l.tab; diff $E/ka/k.tab $E/ka/l.tab; tail -n 20 $E/ka/keepalived.log; tail -n 5 $E/socat-rs1.log; grep -i health $E/ka/lvsd.log | tail -n 5; fi
check "... holding UDP with one-packet, fwmark, IPv6 over GUE with csum, sh-port and persistence /24" sh -c "grep -q -- '-A -u 172.16.1.60:53 -s rr -o' $E/ka/l.tab && grep -q -- '-A -f 7 -s rr -o' $E/ka/l.tab && grep -q -- '--tun-type gue --tun-port 6080 --tun-csum' $E/ka/l.tab && grep -q -- '-A -t 172.16.1.50:443 -s sh -p 360 -M 255.255.255.0 -b sh-port' $E/ka/l.tab"
kill "$(cat $E/ka/lvsd.pid)" 2>/dev/null
kill "$(cat $E/ka/k.pid)" 2>/dev/null
n=0 ok=0
for f in samples/keepalived.conf.*; do
  n=$((n + 1))
  if ./lvsd import --from keepalived "$f" >$E/sample.yaml 2>/dev/null && ./lvsd check -c $E/sample.yaml >/dev/null; then
    ok=$((ok + 1))
  else
    echo "   $f: not converted"
  fi
done
check "every Debian sample keepalived.conf ($n) converts and passes lvsd check" [ "$n" -gt 10 ] && [ "$ok" -eq "$n" ]

# The corpus (crates/config/tests/fixtures/corpus: files written by others, sources in its
# SOURCES.md): for each keepalived.conf its verdict says converts, keepalived (checkers only)
# and lvsd each build a table from it in an empty namespace whose default route leads into a
# dummy interface (every real is routable, as the kernel wants for DR; checks hang until their
# timeout, so every real is up at first); the two tables must become the same.
echo "--- 1b. the corpus: keepalived's table and lvsd's from files written by others"
corpus_ns() { # name
  $IP netns add "$1"
  $IP -n "$1" link set lo up
  $IP -n "$1" link add d0 type dummy
  $IP -n "$1" addr add 10.255.255.254/32 dev d0
  $IP -n "$1" link set d0 up
  $IP -n "$1" route add default dev d0
  $IP -n "$1" -6 route add default dev d0 2>/dev/null
}
csame() { on kc ipvsadm -Sn | sort >$E/c/k.tab; on lc ipvsadm -Sn | sort >$E/c/l.tab; [ -s $E/c/k.tab ] && cmp -s $E/c/k.tab $E/c/l.tab; }
ccompare() { # file: keepalived's table and lvsd's from it become the same (0), or not (1)
  rm -rf $E/c; mkdir -p $E/c/st
  corpus_ns kc; corpus_ns lc
  $IP netns exec kc keepalived -C -n -l -D -f "$1" -p $E/c/k.pid -c $E/c/c.pid >$E/c/keepalived.log 2>&1 &
  kpid=$!
  cres=1
  if ./lvsd import --from keepalived "$1" >$E/c/lvsd.yaml 2>/dev/null; then
    chmod 644 $E/c/lvsd.yaml
    $IP netns exec lc ./lvsd run -c $E/c/lvsd.yaml --state-dir $E/c/st --resync-interval 2s >$E/c/lvsd.log 2>&1 &
    lpid=$!
    if within 20 csame; then
      cres=0
    else
      echo "   $1: the tables differ"; echo "   keepalived:"; sed 's/^/     /' $E/c/k.tab
      echo "   lvsd:"; sed 's/^/     /' $E/c/l.tab; tail -n 5 $E/c/keepalived.log; tail -n 5 $E/c/lvsd.log
    fi
    kill "$lpid" 2>/dev/null; wait "$lpid" 2>/dev/null
  else
    echo "   $1: lvsd import refused it"
  fi
  kill "$kpid" 2>/dev/null; wait "$kpid" 2>/dev/null
  $IP netns del kc; $IP netns del lc
  return $cres
}
n=0 ok=0
while read -r f v; do
  case "$f" in keepalived/*) ;; *) continue ;; esac
  [ "$v" = ok ] || continue
  n=$((n + 1))
  ccompare "corpus/$f" && ok=$((ok + 1))
done <corpus/expected.txt
check "keepalived and lvsd build the same table from each converting corpus keepalived.conf ($ok of $n)" [ "$n" -ge 20 ] && [ "$ok" -eq "$n" ]
# Class 8: one VIP:port in two virtual_server blocks (DR reals in one, TUN in the other, the
# second with another scheduler, and a real in both): keepalived makes one service of them.
cat >$E/mixed.conf <<'CONF'
virtual_server 172.16.1.50 80 {
    delay_loop 30
    lb_algo wrr
    lb_kind DR
    persistence_timeout 50
    persistence_granularity 0.0.0.0
    protocol TCP
    real_server 10.1.0.1 80 {
        weight 2
    }
    real_server 10.1.0.2 80 {
        weight 3
    }
}
virtual_server 172.16.1.50 80 {
    delay_loop 30
    lb_algo rr
    lb_kind TUN
    protocol TCP
    real_server 10.2.0.1 80 {
        weight 1
    }
    real_server 10.1.0.2 80 {
        weight 7
    }
}
CONF
check "keepalived's mixed mode (DR and TUN blocks for one VIP:port, netmask 0.0.0.0): lvsd builds keepalived's table" ccompare $E/mixed.conf
check "... one service (the first block's wrr, -p 50 -M 0.0.0.0) with both blocks' reals, each with its block's forwarding" sh -c "grep -c -- '^-A' $E/c/k.tab | grep -qx 1 && grep -q -- '-A -t 172.16.1.50:80 -s wrr -p 50 -M 0.0.0.0' $E/c/k.tab && grep -q -- '-r 10.2.0.1:80 -i -w 1' $E/c/k.tab && grep -q -- '-r 10.1.0.2:80 -g -w 3' $E/c/k.tab"

echo "--- 2. ldirectord.cf"
on lvs ipvsadm -C                    # the table of part 1 stays when its daemon stops
mkdir -p $E/ld
cat >$E/ld/ldirectord.cf <<'CONF'
# Global Directives
checktimeout=3
checkinterval=1
autoreload=yes
quiescent=yes

virtual=172.16.1.50:80
	real=172.16.1.101:80 gate
	real=172.16.1.102:80 gate 2
	service=http
	request="index.html"
	receive="this is"
	scheduler=rr
	protocol=tcp
	checktype=negotiate

virtual=172.16.1.51:8080
    real=172.16.1.101->172.16.1.102:8080 masq 3
    checktype=connect
    persistent=600
    netmask=255.255.255.0
CONF
./lvsd import --from ldirectord $E/ld/ldirectord.cf >$E/ld/lvsd.yaml 2>$E/ld/summary.txt
check "lvsd import --from ldirectord converts it and passes lvsd check" ./lvsd check -c $E/ld/lvsd.yaml
chmod 644 $E/ld/lvsd.yaml
$IP netns exec lvs ./lvsd run -c $E/ld/lvsd.yaml --state-dir $E/ld/st --resync-interval 2s >$E/ld/lvsd.log 2>&1 &
echo $! >$E/ld/lvsd.pid
cat >$E/ld/want <<'TAB'
-A -t 172.16.1.50:80 -s rr
-A -t 172.16.1.51:8080 -s wrr -p 600 -M 255.255.255.0
-a -t 172.16.1.50:80 -r 172.16.1.101:80 -g -w 1
-a -t 172.16.1.50:80 -r 172.16.1.102:80 -g -w 2
-a -t 172.16.1.51:8080 -r 172.16.1.101:8080 -m -w 3
-a -t 172.16.1.51:8080 -r 172.16.1.102:8080 -m -w 3
TAB
sort -o $E/ld/want $E/ld/want
ld_same() { sorted lvs >$E/ld/got; cmp -s $E/ld/want $E/ld/got; }
check "applied, it is the table ldirectord builds once its checks pass" within 20 ld_same
ld_same || diff $E/ld/want $E/ld/got
kill "$(cat $E/ld/lvsd.pid)" 2>/dev/null
sleep 1

echo "--- 3. include: a directory of services under the daemon"
D=$E/dir; mkdir -p $D/conf.d
on lvs ipvsadm -C
cat >$D/lvsd.yaml <<YAML
include: [conf.d/*.yaml]
services:
  - name: main
    address: 172.16.1.80:80
    reals: [{address: 172.16.1.101}]
YAML
put() { printf '%s\n' "$2" >"$D/conf.d/.$1.tmp" && chmod 644 "$D/conf.d/.$1.tmp" && mv "$D/conf.d/.$1.tmp" "$D/conf.d/$1"; }
svc() { printf 'services:\n  - name: %s\n    address: %s:80\n    reals: [{address: 172.16.1.%s}]\n' "$1" "$2" "$3"; }
put web.yaml "$(svc web 172.16.1.81 101)"
chmod 755 $D $D/conf.d; chmod 644 $D/lvsd.yaml
./lvsd check -c $D/lvsd.yaml >$E/check.txt
check "lvsd check names each file and its services" grep -q "conf.d/web.yaml: 1 services" $E/check.txt
$IP netns exec lvs ./lvsd run -c $D/lvsd.yaml --state-dir $D/st --resync-interval 30s >$D/lvsd.log 2>&1 &
echo $! >$D/lvsd.pid
has() { on lvs ipvsadm -Sn | grep -q -- "$1"; }
check "the daemon applies the main file and the included one" within 10 sh -c "$IP netns exec lvs ipvsadm -Sn | grep -q 172.16.1.80:80 && $IP netns exec lvs ipvsadm -Sn | grep -q 172.16.1.81:80"
put api.yaml "$(svc api 172.16.1.82 102)"
check "a file added (renamed into place) is a change" within 5 has "172.16.1.82:80"
put api.yaml "$(svc api 172.16.1.82 101)"
check "a file replaced by rename is a change" within 5 has "-a -t 172.16.1.82:80 -r 172.16.1.101:80"
put bad.yaml "services:
  - address: 172.16.1.83:80
    reals:
      - address: 172.16.1.101
        wieght: 2"
check "a broken file is refused with its file:line:col" within 5 grep -q "conf.d/bad.yaml:5:9: unknown key .wieght." $D/lvsd.log
check "... and nothing of that generation is applied" sh -c "! $IP netns exec lvs ipvsadm -Sn | grep -q 172.16.1.83"
rm $D/conf.d/bad.yaml
rm $D/conf.d/web.yaml
check "a file removed takes its service away (drained, then deleted)" within 10 sh -c "! $IP netns exec lvs ipvsadm -Sn | grep -q 172.16.1.81:80"
check "... and the others stay" sh -c "$IP netns exec lvs ipvsadm -Sn | grep -q 172.16.1.80:80 && $IP netns exec lvs ipvsadm -Sn | grep -q 172.16.1.82:80"
# A ConfigMap mounted as the directory: files are links through ..data, swapped at once.
K=$E/cm; mkdir -p $K/v1 $K/v2
svc cm1 172.16.1.84 101 >$K/v1/a.yaml; svc cm2 172.16.1.85 101 >$K/v2/a.yaml
chmod 755 $K $K/v1 $K/v2; chmod 644 $K/v1/a.yaml $K/v2/a.yaml
ln -s v1 $K/..data; ln -s ..data/a.yaml $K/a.yaml
printf 'include: [%s/*.yaml]\nservices: []\n' "$K" >$E/cm.yaml; chmod 644 $E/cm.yaml
kill "$(cat $D/lvsd.pid)"; sleep 1; on lvs ipvsadm -C
$IP netns exec lvs ./lvsd run -c $E/cm.yaml --state-dir $E/cmst --resync-interval 30s --force >$E/cm.log 2>&1 &
echo $! >$E/cm.pid
check "a ConfigMap directory's services are applied" within 10 has "172.16.1.84:80"
ln -s v2 $K/..data_tmp && { mv -T $K/..data_tmp $K/..data 2>/dev/null || { rm $K/..data && mv $K/..data_tmp $K/..data; }; }
check "a ..data swap is a change" within 10 has "172.16.1.85:80"
kill "$(cat $E/cm.pid)"; sleep 1

echo "--- 4. machine-readable plans and a bulk apply's summary"
on lvs ipvsadm -C
i=0; { echo "services:"; while [ $i -lt 150 ]; do echo "  - address: 10.9.$((i / 250)).$((i % 250 + 1)):80"; echo "    reals: [{address: 172.16.1.101}]"; i=$((i + 1)); done; } >$E/bulk.yaml
chmod 644 $E/bulk.yaml
on lvs ./lvsd plan -c $E/bulk.yaml --state-dir $E/bst --json >$E/plan.json; rc=$?
check "plan --json exits 2 with changes pending" [ "$rc" -eq 2 ]
check "... one document: version, every operation, totals" sh -c "grep -q '\"version\":1' $E/plan.json && grep -q '\"add_service\":150' $E/plan.json && grep -q '\"kind\":\"add_real\"' $E/plan.json"
on lvs ./lvsd apply -c $E/bulk.yaml --state-dir $E/bst >$E/apply.txt
check "a bulk apply prints one summary, counts by kind" sh -c "[ \$(wc -l <$E/apply.txt) -le 3 ] && grep -q 'applied 300 changes: 150 add_service, 150 add_real' $E/apply.txt" || head -n 5 $E/apply.txt
on lvs ./lvsd plan -c $E/bulk.yaml --state-dir $E/bst --json >$E/plan2.json; rc=$?
check "plan --json exits 0 in sync (changed_when: false)" sh -c "[ $rc -eq 0 ] && grep -q '\"in_sync\":true' $E/plan2.json"
printf 'services:\n  - address: 10.1.1.1:80\n    scheduler: dr\n' >$E/badcheck.yaml
./lvsd check -c $E/badcheck.yaml --json >$E/check.json; rc=$?
check "check --json: exit 1, the problem with file, line, column, message and hint" sh -c "[ $rc -eq 1 ] && grep -q '\"line\":3,\"column\":16' $E/check.json || grep -q '\"column\":16' $E/check.json"
cat $E/check.json
result import
