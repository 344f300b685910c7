#!/bin/sh
# End-to-end tests of health checks in the seed's lab, run as root inside the test VM (busybox
# sh). The director runs `lvsd run` with http, tcp and exec checks; real servers and a sorry
# server are set up by lvsd (`--role real-server`). Web servers are stopped and started for
# real; every deadline is the issue's (fall x interval + timeout + 1 s; rise x interval + 1 s),
# measured on /proc/uptime; traffic comes from the client. Ends with a "test result:" line.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/health
mkdir -p $E
on() { h=$1; shift; $IP netns exec "$h" "$@"; }
rule() { on director ipvsadm -Sn | grep -F -- "-t $1 -r $2 "; } # service real
weight_is() { rule "$1" "$2" | grep -q -- "-w $3\$"; }
absent() { ! rule "$1" "$2" >/dev/null; }
httpd_stop() { # host port
  for d in /proc/[0-9]*; do
    case "$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)" in
      *"httpd -p $2 -h /tmp/www-$1"*) kill "${d#/proc/}" ;;
    esac
  done
}
httpd_start() { on "$1" busybox httpd -p "$2" -h "/tmp/www-$1"; }
ask() { # n [port]: n requests from the client to the VIP; the answers in $E/answers
  i=0; : >$E/answers
  while [ $i -lt "$1" ]; do lab_request "$VIP" "${2:-80}" >>$E/answers; i=$((i + 1)); done
  tr '\n' ' ' <$E/answers; echo
}
only() { [ -s $E/answers ] && ! grep -v -q "this is $1<" $E/answers; } # every answer from $1
count() { grep -c "this is $1<" $E/answers; }
logged() { grep -q -F -- "$1" $E/lvsd.log; }

# A check that never answers: it starts a child and waits, so killing only the script would
# leave the child behind.
cat >$E/hang.sh <<'EOF'
#!/bin/sh
sleep 1000 &
wait
EOF
chmod 755 $E/hang.sh

cat >$E/lvsd.yaml <<YAML
host: {role: director, interface: eth0}
services:
  - name: web
    address: 172.16.1.50:80
    scheduler: rr
    forward: dr
    check: {type: http, path: /, expect_status: [200], interval: 1s, timeout: 500ms, rise: 2, fall: 2}
    drain_timeout: 2s          # bounds how long an open connection keeps the sorry server
    fallback: 172.16.1.110
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
  - name: alt
    address: 172.16.1.50:8080
    scheduler: rr
    check: {type: tcp, interval: 1s, timeout: 500ms, rise: 2, fall: 2}
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
  - name: hung
    address: 172.16.1.50:81
    check: {type: exec, command: [$E/hang.sh, "{address}", "{port}"], interval: 1s, timeout: 1s, fall: 1, initial: up}
    reals:
      - address: 172.16.1.101:81
YAML
cat $E/lvsd.yaml

lab_down
lab_up
lab_real_server sorry 172.16.1.110
for h in rs1 rs2 sorry; do
  on $h ./lvsd apply -c $E/lvsd.yaml --role real-server --state-dir $E/state-$h >/dev/null
done
on director ./lvsd check -c $E/lvsd.yaml

echo "--- 1. new reals are checked before they take traffic"
on director ./lvsd run -c $E/lvsd.yaml --state-dir $E/state-director --resync-interval 5s >$E/lvsd.log 2>&1 &
check "the reals are added at weight 0" within 10 weight_is 172.16.1.50:80 172.16.1.101:80 0
check "... and raised once their checks pass (rise 2 x 1 s)" within 5 weight_is 172.16.1.50:80 172.16.1.101:80 1
check "both reals of web are in" within 1 weight_is 172.16.1.50:80 172.16.1.102:80 1
check "the log shows the real added at weight 0 first" logged "+ real 172.16.1.101:80 of TCP 172.16.1.50:80: dr weight 0"
check "the tcp-checked service's reals come in too" within 3 weight_is 172.16.1.50:8080 172.16.1.102:8080 1
first_web_standing() { grep -F '(web): ' $E/lvsd.log | grep -F 'health: service' | head -n 1; }
check "the first checks are awaited quietly (not an ERROR: the reals are new)" sh -c "echo '$(first_web_standing)' | grep -q 'INFO.*waiting for the first check results'"
ask 6
check "traffic alternates between both real servers" sh -c "[ $(count 172.16.1.101) -eq 3 ] && [ $(count 172.16.1.102) -eq 3 ]"

echo "--- 2. a web server stops: out within fall x interval + timeout + 1 s = 3.5 s"
httpd_stop rs1 80
check "rs1 is drained (http check: connection refused)" within 3.5 weight_is 172.16.1.50:80 172.16.1.101:80 0
check "the transition is logged once, with the reason" sh -c "[ \$(grep -c 'real 172.16.1.101:80 of TCP 172.16.1.50:80 is DOWN (connection refused)' $E/lvsd.log) -eq 1 ]"
ask 6
check "all new requests go to the other real server" only 172.16.1.102
check "the tcp check on :8080 still sees rs1 up" weight_is 172.16.1.50:8080 172.16.1.101:8080 1
httpd_stop rs2 8080
check "a tcp check takes rs2 out of :8080 as well" within 3.5 weight_is 172.16.1.50:8080 172.16.1.102:8080 0
ask 4 8080
check "... and :8080 is served by rs1 alone" only 172.16.1.101

echo "--- 3. it starts again: back after rise x interval (2 s)"
httpd_start rs1 80
check "rs1 rejoins" within 5 weight_is 172.16.1.50:80 172.16.1.101:80 1
check "... logged as up" logged "real 172.16.1.101:80 of TCP 172.16.1.50:80 is up"
ask 6
check "traffic reaches rs1 again" sh -c "[ $(count 172.16.1.101) -ge 2 ]"
httpd_start rs2 8080

echo "--- 4. both stop: the fallback (sorry) server answers"
httpd_stop rs1 80
httpd_stop rs2 80
check "the fallback is added" within 3.5 weight_is 172.16.1.50:80 172.16.1.110:80 1
both_drained() { weight_is 172.16.1.50:80 172.16.1.101:80 0 && weight_is 172.16.1.50:80 172.16.1.102:80 0; }
check "... with both reals drained" both_drained
check "the service going down is logged loudly" sh -c "grep -F 'ERROR' $E/lvsd.log | grep -q -F 'DOWN: no healthy real server, 0 of 2 real servers healthy; the fallback server takes the traffic'"
ask 4
check "the sorry server answers every request" only 172.16.1.110
on director ./lvsd plan -c $E/lvsd.yaml --state-dir $E/state-director >$E/plan 2>&1
cat $E/plan
check "plan shows the daemon's health: the service down, the fallback in" grep -q 'fallback server takes the traffic' $E/plan
check "... and each real's state with its reason" grep -q 'real 172.16.1.101:80 of TCP 172.16.1.50:80: DOWN (connection refused)' $E/plan
httpd_start rs1 80
httpd_start rs2 80
check "recovered: the reals come back" within 5 weight_is 172.16.1.50:80 172.16.1.102:80 1
check "... and the fallback leaves (drained, then deleted at drain_timeout)" within 5 absent 172.16.1.50:80 172.16.1.110:80
ask 4
check "traffic is back on the real servers" sh -c "! grep -q 172.16.1.110 $E/answers && [ -s $E/answers ]"

echo "--- 5. an exec check that hangs is killed at its timeout and counts as a failure"
check "the hung check takes its real down (fall 1)" within 3 weight_is 172.16.1.50:81 172.16.1.101:81 0
check "... with the reason" logged "real 172.16.1.101:81 of TCP 172.16.1.50:81 is DOWN (timeout after 1s (killed))"
n=0
for i in 1 2 3 4 5; do
  c=$(ps | grep -c '[s]leep 1000'); [ "$c" -gt "$n" ] && n=$c
  sleep 0.7
done
check "its children are killed with it (never more than one hung check alive; saw $n)" [ "$n" -le 1 ]

echo "--- 6. a reload keeps the health of unchanged reals"
httpd_stop rs2 80
check "rs2 down" within 3.5 weight_is 172.16.1.50:80 172.16.1.102:80 0
sed 's/name: alt/name: alt2/' $E/lvsd.yaml >$E/next.yaml
mv $E/next.yaml $E/lvsd.yaml
check "the edit is taken" within 2 grep -q 'config changed' $E/lvsd.log
sleep 1.5
check "rs2 stays drained across the reload (no flapping)" weight_is 172.16.1.50:80 172.16.1.102:80 0
check "rs1 stays in" weight_is 172.16.1.50:80 172.16.1.101:80 1
pid=$(pidof lvsd)
kill $pid
sleep 1

echo "--- 7. a restarted daemon adopts the kernel's weights until its checks say otherwise"
on director ./lvsd run -c $E/lvsd.yaml --state-dir $E/state-director --resync-interval 5s >$E/lvsd2.log 2>&1 &
sleep 0.6
as_before() { weight_is 172.16.1.50:80 172.16.1.102:80 0 && weight_is 172.16.1.50:80 172.16.1.101:80 1; }
check "right after the restart rs2 is still drained and rs1 still in" as_before
check "nothing was raised or drained at start" sh -c "! grep -q ' INFO [-+~] ' $E/lvsd2.log"
httpd_start rs2 80
check "rs2 rejoins by its checks" within 5 weight_is 172.16.1.50:80 172.16.1.102:80 1
kill $(pidof lvsd)
sleep 0.5

echo "--- daemon logs ---"; cat $E/lvsd.log; echo "--- restarted ---"; cat $E/lvsd2.log
result health
