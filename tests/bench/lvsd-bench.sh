#!/bin/sh
# The lvsd benchmark, run inside the VM by tests/bench/run.sh (busybox sh). Every measurement
# gets a fresh network namespace, and lvsd is compared with the limit and with its peers in the
# same boot:
# - the raw writer and raw dump (`ipvs-raw`: the ipvs crate alone, no file, no plan): the
#   floors of a cold apply and of a no-op;
# - `ipvsadm -R` and `ipvsadm -Sn`;
# - keepalived (Debian's binary): loading the same services, the same weight edit by SIGHUP
#   reload, and the same TCP health checks.
# Edits are timed from outside the daemon: `ipvs-raw rename-wait` renames the new file into
# place and polls the one service over netlink until the kernel holds the change.
# Prints the detail of each part, then one table of every target, met or missed.
. ./seed-lab.sh
B=/tmp/bench
mkdir -p $B
: >$B/rows
SIZES=${SIZES:-1000 10000}
LARGEST=${SIZES##* }
REALS=${REALS:-10}
KA_SIZE=${KA_SIZE:-3000}
# Health checks: the probe rate lvsd and keepalived are compared at (tcp every 1 s, a distinct
# listener per check), the rates lvsd alone is pushed to, and the shared case (services x reals
# over fewer distinct reals, every 2 s).
HC_RATE=${HC_RATE:-500}
HC_RATES=${HC_RATES:-1000 2000 3000}
HC_SHARED=${HC_SHARED:-1000 100}
BIG=${BIG:-100000}
BIG_REALS=${BIG_REALS:-4}
# Seconds each steady-state measurement waits, then lasts (the small mode shortens them).
WARM=${WARM:-20}
WINDOW=${WINDOW:-60}

cs() { awk '{ printf "%d", $1 * 100 }' /proc/uptime; }
secs() { awk -v c="$1" 'BEGIN { printf "%.2f", c / 100 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "" && b != "") printf "%.2f", a / b; else printf "n/a" }'; }
# met when $1 >= $2 (or <= with `le`)
verdict() { awk -v a="$1" -v t="$2" -v op="$3" 'BEGIN { if (a == "n/a" || a == "") print "n/a"; else if (op == "le" ? a + 0 <= t + 0 : a + 0 >= t + 0) print "met"; else print "MISSED" }'; }
row() { # what, lvsd, against, ratio, target, verdict
  printf '%-50s | %-18s | %-24s | %-7s | %-9s | %s\n' "$1" "$2" "$3" "$4" "$5" "$6" >>$B/rows
}
max() { printf '%s\n' "$@" | awk 'NR == 1 || $1 > m { m = $1 } END { print m }'; }
min() { printf '%s\n' "$@" | awk 'NR == 1 || $1 < m { m = $1 } END { print m }'; }
# the middle one (the lower middle of an even count)
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# utime + stime of the processes, in clock ticks (1/100 s)
cpu() { local t=0 p; for p in "$@"; do set -- $(cut -d' ' -f14,15 /proc/$p/stat); t=$((t + $1 + $2)); done; echo $t; }
rss() { awk '/VmHWM/ { printf "%d", $2 / 1024 }' /proc/$1/status; }

gen_yaml() { # services reals [check]
  awk -v n="$1" -v r="$2" -v chk="${3:-}" 'BEGIN {
    print "services:"
    for (i = 0; i < n; i++) {
      printf "  - address: 10.%d.%d.%d:80\n    scheduler: wlc\n", 1 + 99 * int(i / 64000), int(i % 64000 / 250), i % 250 + 1
      if (chk != "") printf "    check:\n      type: tcp\n      interval: %s\n      timeout: 1s\n      initial: up\n", chk
      print "    reals:"
      for (j = 1; j <= r; j++) printf "      - address: 10.2.%d.%d\n", int(j / 250), j % 250 + 1
    }
  }'
}
gen_rules() { # services reals
  awk -v n="$1" -v r="$2" 'BEGIN {
    for (i = 0; i < n; i++) {
      s = sprintf("10.%d.%d.%d:80", 1 + 99 * int(i / 64000), int(i % 64000 / 250), i % 250 + 1)
      printf "-A -t %s -s wlc\n", s
      for (j = 1; j <= r; j++) printf "-a -t %s -r 10.2.%d.%d:80 -g -w 1\n", s, int(j / 250), j % 250 + 1
    }
  }'
}
gen_keepalived() { # services reals [delay_loop: TCP_CHECK on every real]
  awk -v n="$1" -v r="$2" -v chk="${3:-}" 'BEGIN {
    print "global_defs {\n  router_id bench\n}"
    for (i = 0; i < n; i++) {
      printf "virtual_server 10.1.%d.%d 80 {\n  lb_algo wlc\n  lb_kind DR\n  protocol TCP\n", int(i / 250), i % 250 + 1
      if (chk != "") printf "  delay_loop %s\n", chk
      for (j = 1; j <= r; j++) {
        printf "  real_server 10.2.%d.%d 80 {\n    weight 1\n", int(j / 250), j % 250 + 1
        if (chk != "") print "    TCP_CHECK {\n      connect_timeout 1\n    }"
        print "  }"
      }
      print "}"
    }
  }'
}
# Checks against distinct listeners: service i's real j is target (i x reals + j) mod distinct,
# 10.3.a.b:80 (its own address, so one check is one probe unless targets are shared).
target() { echo "10.3.$(($1 / 250)).$(($1 % 250 + 1))"; }
gen_hc_yaml() { # services reals distinct interval
  awk -v n="$1" -v r="$2" -v d="$3" -v chk="$4" 'BEGIN {
    print "services:"
    for (i = 0; i < n; i++) {
      printf "  - address: 10.1.%d.%d:80\n    scheduler: wlc\n", int(i / 250), i % 250 + 1
      printf "    check:\n      type: tcp\n      interval: %s\n      timeout: 1s\n      initial: up\n", chk
      print "    reals:"
      for (j = 0; j < r; j++) { k = (i * r + j) % d; printf "      - address: 10.3.%d.%d\n", int(k / 250), k % 250 + 1 }
    }
  }'
}
gen_hc_keepalived() { # services reals distinct delay_loop
  awk -v n="$1" -v r="$2" -v d="$3" -v chk="$4" 'BEGIN {
    print "global_defs {\n  router_id bench\n}"
    for (i = 0; i < n; i++) {
      printf "virtual_server 10.1.%d.%d 80 {\n  lb_algo wlc\n  lb_kind DR\n  protocol TCP\n  delay_loop %s\n", int(i / 250), i % 250 + 1, chk
      for (j = 0; j < r; j++) {
        k = (i * r + j) % d
        printf "  real_server 10.3.%d.%d 80 {\n    weight 1\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n", int(k / 250), k % 250 + 1
      }
      print "}"
    }
  }'
}
targets() { # distinct: the first `distinct` targets, address:port, one a line
  local k=0
  while [ $k -lt "$1" ]; do echo "$(target $k):80"; k=$((k + 1)); done
}
listen_targets() { # ns distinct: the targets' addresses on the namespace's lo, and listeners
  local a
  for a in $(targets "$2"); do $IP -n "$1" addr add "${a%:80}/32" dev lo; done
  # One descriptor a listener: thousands of them.
  ulimit -n 65536
  # shellcheck disable=SC2086
  LISTEN_COUNT=$B/accepted-$1 $IP netns exec "$1" ./ipvs-raw listen $(targets "$2") &
  echo $! >$B/listener-$1
}
# One steady-state window of lvsd's checks: "cpu-ticks probes lateness" (probes: connections
# the listeners accepted; lateness from lvsd's histogram over the same window).
lvsd_checks() { # ns config
  local hp late c1 c2 a1 a2
  $IP netns exec "$1" ./lvsd run -c "$2" --state-dir $B/st-hc-$1 --metrics-listen 127.0.0.1:9474 >$B/hc-$1.log 2>&1 &
  hp=$!
  sleep "$WARM"
  printf 'GET /metrics HTTP/1.0\r\n\r\n' | $IP netns exec "$1" busybox nc 127.0.0.1 9474 >$B/metrics-before
  c1=$(cpu $hp); a1=$(accepted "$1"); sleep "$WINDOW"; c2=$(cpu $hp); a2=$(accepted "$1")
  late=$(printf 'GET /metrics HTTP/1.0\r\n\r\n' | $IP netns exec "$1" busybox nc 127.0.0.1 9474 | ./ipvs-raw lateness $B/metrics-before)
  kill $hp; wait $hp 2>/dev/null
  $IP netns exec "$1" ipvsadm -C; rm -rf $B/st-hc-$1
  echo "$((c2 - c1)) $((a2 - a1)) $late"
}
ka_checks() { # ns config: "cpu-ticks probes"
  local kps c1 c2 a1 a2
  $IP netns exec "$1" keepalived -C -n -f "$2" -p $B/kh.pid -c $B/khc.pid >$B/kh.log 2>&1 &
  sleep "$WARM"
  kps=$(cat $B/kh.pid $B/khc.pid | tr '\n' ' ')
  # shellcheck disable=SC2086
  c1=$(cpu $kps); a1=$(accepted "$1"); sleep "$WINDOW"; c2=$(cpu $kps); a2=$(accepted "$1")
  kill "$(cat $B/kh.pid)"; sleep 2
  $IP netns exec "$1" ipvsadm -C
  echo "$((c2 - c1)) $((a2 - a1))"
}
p99_of() { echo "$1" | sed -n 's/.*p99 <= \([0-9]*\)ms.*/\1/p'; }
# The file with the first real of the first and of the last service at weight $2: an edit at
# both ends of the file.
with_weight_ends() { # file weight
  awk -v w="$2" '{ line[NR] = $0 } /^  - address: / { last = NR } END {
    for (i = 1; i <= NR; i++) {
      print line[i]
      if (line[i] ~ /^      - address: /) {
        if (!first) { print "        weight: " w; first = 1 }
        else if (i > last && !done) { print "        weight: " w; done = 1 }
      }
    }
  }' "$1"
}
last_service() { # services: the last one's address (as gen_yaml writes it)
  echo "10.$((1 + 99 * (($1 - 1) / 64000))).$((($1 - 1) % 64000 / 250)).$((($1 - 1) % 250 + 1)):80"
}
# The file with the first real of the first service at weight $2.
with_weight() { # file weight
  awk -v w="$2" '{ print } !done && /^      - address: 10\.2\.0\.2$/ { print "        weight: " w; done = 1 }' "$1"
}
added_service() { # reals: one service more, at the end
  local j
  printf '  - address: 10.9.9.9:80\n    reals:\n'
  j=1; while [ $j -le "$1" ]; do printf '      - address: 10.2.0.%d\n' $((j + 1)); j=$((j + 1)); done
}
listen_reals() { # ns reals: the reals' addresses on the namespace's lo, and listeners on them
  local addrs="" j
  j=1; while [ $j -le "$2" ]; do $IP -n "$1" addr add 10.2.0.$((j + 1))/32 dev lo; addrs="$addrs 10.2.0.$((j + 1)):80"; j=$((j + 1)); done
  # shellcheck disable=SC2086
  LISTEN_COUNT=$B/accepted-$1 $IP netns exec "$1" ./ipvs-raw listen $addrs &
  echo $! >$B/listener-$1
}
accepted() { cat "$B/accepted-$1" 2>/dev/null || echo 0; }
wait_for() { # seconds command...: until the command succeeds
  local left=$(($1 * 10)); shift
  while ! "$@" && [ $left -gt 0 ]; do sleep 0.1; left=$((left - 1)); done
}
in_sync() { $IP netns exec "$1" ./lvsd status --state-dir "$2" 2>/dev/null | grep -q 'table in sync'; }
daemon() { # ns config state-dir log [more args]: starts lvsd run (its pid in $dpid), waits until it says the table is in sync
  local ns=$1 cfg=$2 st=$3 log=$4; shift 4
  LVSD_LOG=${DLOG:-info} $IP netns exec "$ns" ./lvsd run -c "$cfg" --state-dir "$st" "$@" >"$log" 2>&1 &
  dpid=$!
  wait_for 300 in_sync "$ns" "$st"
}
# The idle daemon's CPU over a minute of the default 30 s resync (two whole reads of the table),
# against the CPU of two raw dumps of the same table (the floor). Sets IDLE (ticks) and
# IDLE_FLOOR (seconds). The daemon's metrics after it are in $B/idle-metrics.
idle_measure() { # ns (the daemon is $dpid, listening for metrics on 127.0.0.1:9474)
  local ns=$1 c1 c2 d1 d2
  sleep "${IDLE_WAIT:-35}"
  c1=$(cpu $dpid); sleep "${IDLE_WINDOW:-60}"; c2=$(cpu $dpid)
  IDLE=$((c2 - c1))
  set -- $($IP netns exec "$ns" ./ipvs-raw dump); d1=$3
  set -- $($IP netns exec "$ns" ./ipvs-raw dump); d2=$3
  IDLE_FLOOR=$(awk -v a="$d1" -v b="$d2" 'BEGIN { printf "%.2f", a + b }')
  printf 'GET /metrics HTTP/1.0\r\n\r\n' | $IP netns exec "$ns" busybox nc 127.0.0.1 9474 >$B/idle-metrics 2>/dev/null
}
# rename-wait for five weight edits of the live file (3 to 7); prints the five latencies (ms).
# Five, for a median that one slow edit (the first after a start, a resync under way) does not
# make.
five_edits() { # ns live-file
  local w
  for w in 3 4 5 6 7; do
    with_weight "$B/base.yaml" $w >"$2.tmp"
    rename_wait "$1" "$2.tmp" "$2" 10.1.0.1:80 10.2.0.2:80 $w
    sleep 1
  done
}

# The floor of a no-op, done at once as lvsd does it: the raw dump of the table in namespace
# NS and `lvsd check` of FILE (the same reading, no kernel), both finished; centiseconds.
dump_and_check() { # ns file
  local t0 pid
  t0=$(cs); $IP netns exec "$1" ./ipvs-raw dump >/dev/null & pid=$!
  ./lvsd check -c "$2" >/dev/null 2>&1; wait $pid; echo $(($(cs) - t0))
}
# The floor of a cold apply that writes nothing before the whole file is valid, in seconds:
# the file's check (centiseconds) and then the raw writer (seconds).
check_then_write() { # checked-cs raw-s
  awk -v c="$1" -v r="$2" 'BEGIN { printf "%.2f", c / 100 + r }'
}
# A daemon's config reads and whole-table reads from its log (`lvsd::timing` at debug), each
# with its time of day: what the loop was doing when an edit came.
passes() { # log
  grep -E 'DEBUG (read and validated|read the IPVS table)' "$1" | sed -e 's/^[0-9-]*T\([0-9:.]*\)Z *DEBUG /    \1 /' -e 's/ cpu=.*//'
}
# `ipvs-raw rename-wait` in namespace NS; the wall clock of its rename (on its stderr) is kept
# for `renames`.
rename_wait() { # ns args...
  local ns=$1; shift
  $IP netns exec "$ns" ./ipvs-raw rename-wait "$@" 2>>"$B/renamed"
}
# The wall clock of the renames timed since the last call, to place the edits against the
# daemon's log.
renames() {
  [ -s "$B/renamed" ] && echo "    timed from (UTC): $(sed 's/^at //' "$B/renamed" | tr '\n' ' ')"
  : >"$B/renamed"
}
# A command's step timings (`lvsd::timing` on stderr) on one line, the first N of them if given.
timings() { # file [count]
  grep 'elapsed=' "$1" | sed 's/.*DEBUG //' | { if [ -n "${2:-}" ]; then head -n "$2"; else cat; fi; } |
    tr '\n' ';' | sed 's/;$//; s/;/; /g'
}
# The daemon's step timings for its last edit, one a line.
edit_timings() { # daemon log
  grep -E 'DEBUG (read and validated|brought the checks|applied health|read back|recorded the intent|wrote to the kernel|verified)' "$1" | tail -n 8 | sed -e 's/^[^ ]* *DEBUG /    /'
}
# Parts to run (PARTS: any of sizes, keepalived, health, big; all by default).
want() { case " ${PARTS:-sizes keepalived health big} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
mkdir -p $B/live
per() { awk -v c="$1" -v p="$2" 'BEGIN { if (p > 0) printf "%.0f", c * 10000 / p; else printf "n/a" }'; } # µs CPU a probe
share() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else printf "n/a" }'; }
x100() { awk -v s="$1" 'BEGIN { print s * 100 }'; }
if want sizes; then
echo "== kernel floors and peers, per size ($REALS reals a service) =="
for n in $SIZES; do
  gen_yaml "$n" "$REALS" >$B/cfg.yaml
  gen_rules "$n" "$REALS" >$B/rules
  lab_routed_ns r$n; lab_routed_ns w$n; lab_routed_ns a$n; lab_routed_ns e$n
  t0=$(cs); $IP netns exec r$n ipvsadm -R <$B/rules; coldr=$(($(cs) - t0))
  t0=$(cs); $IP netns exec r$n ipvsadm -Sn >/dev/null; sn=$(($(cs) - t0))
  $IP netns exec r$n ipvsadm -C; $IP netns del r$n
  raw=$($IP netns exec w$n ./ipvs-raw write "$n" "$REALS")
  set -- $($IP netns exec w$n ./ipvs-raw dump); rawdump=$1
  $IP netns exec w$n ipvsadm -C; $IP netns del w$n
  # The floor of a cold apply that writes nothing before the whole file is valid: the file
  # read and validated (`lvsd check`: the same reading, no kernel), then the raw writer.
  t0=$(cs); ./lvsd check -c $B/cfg.yaml >/dev/null 2>&1; checked=$(($(cs) - t0))
  t0=$(cs); LVSD_LOG=warn,lvsd::timing=debug $IP netns exec a$n ./lvsd apply -c $B/cfg.yaml --state-dir $B/st-$n >$B/apply.out 2>$B/apply-$n.err; cold=$(($(cs) - t0))
  # Three rounds, each the no-op, the raw dump of the same table and its floor, one after the
  # other: the VM's speed drifts within a boot, and interleaving keeps each ratio's two sides
  # in the same stretch of it. The medians count; the worst is printed too.
  noops=""; dumps=""; boths=""; writes=0
  for k in 1 2 3; do
    # The daemon's step timings (stderr) of the last no-op: the profile behind its row.
    t0=$(cs); LVSD_LOG=warn,lvsd::timing=debug $IP netns exec a$n ./lvsd apply -c $B/cfg.yaml --state-dir $B/st-$n >$B/noop.out 2>$B/noop-$n.err; noops="$noops $(($(cs) - t0))"
    writes=$((writes + $(grep -c -E '^[-+~] |^applied' $B/noop.out)))
    t0=$(cs); $IP netns exec a$n ./ipvs-raw dump >/dev/null; dumps="$dumps $(($(cs) - t0))"
    # The floor of a no-op: what it cannot skip, done at once as lvsd does it: the raw dump of
    # the same table and `lvsd check` of the file (the same reading, no kernel), both finished.
    boths="$boths $(dump_and_check a$n $B/cfg.yaml)"
  done
  worst=$(max $noops); noop=$(median $noops); dump=$(median $dumps); both=$(median $boths)
  $IP netns exec a$n ./lvsd export >$B/export.yaml
  # Both applied while a$n holds its table (the kernel's service hash is shared by every
  # namespace, so that makes every lookup slower): the export's output, then the generated file.
  t0=$(cs); LVSD_LOG=warn,lvsd::timing=debug $IP netns exec e$n ./lvsd apply -c $B/export.yaml --state-dir $B/ste-$n >/dev/null 2>$B/export-$n.err; exported=$(($(cs) - t0))
  $IP netns exec e$n ipvsadm -C; $IP netns del e$n
  lab_routed_ns g$n
  t0=$(cs); LVSD_LOG=warn,lvsd::timing=debug $IP netns exec g$n ./lvsd apply -c $B/cfg.yaml --state-dir $B/stg-$n >/dev/null 2>$B/gen-$n.err; generated=$(($(cs) - t0))
  $IP netns exec g$n ipvsadm -C; $IP netns del g$n
  echo "$n x $REALS: cold apply: lvsd $(secs $cold) s, raw writer ${raw} s, ipvsadm -R $(secs $coldr) s; lvsd check of the file $(secs $checked) s"
  echo "  lvsd's own timings: $(timings $B/apply-$n.err)"
  echo "  no-op apply x3:$(for t in $noops; do printf ' %s s' "$(secs $t)"; done) ($writes writes); raw dump of the same table, after each:$(for t in $dumps; do printf ' %s s' "$(secs $t)"; done); the raw dump and lvsd check at once:$(for t in $boths; do printf ' %s s' "$(secs $t)"; done); ipvsadm -Sn $(secs $sn) s; the raw dump of a table of its own ${rawdump} s"
  echo "  the last no-op's own timings: $(timings $B/noop-$n.err)"
  echo "  apply of lvsd export's output into an empty table: $(secs $exported) s; of the generated file, the same way: $(secs $generated) s"
  echo "    export's: $(timings $B/export-$n.err 3)"
  echo "    generated: $(timings $B/gen-$n.err 3)"
  # The daemon holding the table: five weight edits, then one added service.
  cp $B/cfg.yaml $B/base.yaml; mkdir -p $B/live; cp $B/cfg.yaml $B/live/lvsd.yaml
  DLOG=info,lvsd::timing=debug daemon a$n $B/live/lvsd.yaml $B/st-$n $B/daemon-$n.log --metrics-listen 127.0.0.1:9474
  edits=$(five_edits a$n $B/live/lvsd.yaml | tr '\n' ' ')
  echo "  the daemon's own timings for the last weight edit:"
  edit_timings $B/daemon-$n.log
  { cat $B/live/lvsd.yaml; added_service "$REALS"; } >$B/live/lvsd.yaml.tmp
  added=$(rename_wait a$n $B/live/lvsd.yaml.tmp $B/live/lvsd.yaml 10.9.9.9:80 10.2.0.$((REALS + 1)):80 1)
  echo "  daemon, rename to kernel: weight edits ${edits}ms; a service with $REALS reals added ${added} ms"
  renames
  if [ "$n" = "$LARGEST" ]; then
    idle_measure a$n
    idle=$IDLE; peak=$(rss $dpid); floor=$IDLE_FLOOR
    echo "  idle daemon: $(secs $idle) s CPU over ${IDLE_WINDOW:-60} s (resync every 30 s, the default); two raw dumps of the same table: $floor s CPU; peak RSS $peak MiB"
    grep -o 'lvsd_table_read[^ ]* [0-9.e+]*' $B/idle-metrics | grep -v bucket | sed 's/^/    /' 
    L_cold=$cold L_checked=$checked L_coldr=$coldr L_raw=$raw L_worst=$worst L_noop=$noop L_dump=$dump L_both=$both L_sn=$sn L_rawdump=$rawdump L_edits=$edits L_added=$added L_exported=$exported L_generated=$generated
  fi
  kill $dpid; wait $dpid 2>/dev/null
  # The same edits with a health check on every service (every real checked; the listeners
  # answer, and the interval is long so the edits are not measured against probe traffic).
  if [ "$n" = "$LARGEST" ]; then
    listen_reals a$n "$REALS"
    gen_yaml "$n" "$REALS" 10m >$B/base.yaml; cp $B/base.yaml $B/live/lvsd.yaml
    DLOG=info,lvsd::timing=debug daemon a$n $B/live/lvsd.yaml $B/st-$n $B/daemon-chk.log
    # Every service checks the same reals: one probe a real (shared), every 10 minutes, from a
    # phase spread over the interval; nothing to wait for.
    sleep 5
    chk_edits=$(five_edits a$n $B/live/lvsd.yaml | tr '\n' ' ')
    ends=""
    for w in 8 9 10; do
      with_weight_ends $B/base.yaml $w >$B/live/lvsd.yaml.tmp
      ends="$ends $(rename_wait a$n $B/live/lvsd.yaml.tmp $B/live/lvsd.yaml "$(last_service "$n")" 10.2.0.2:80 $w)"
      sleep 1
    done
    echo "  with checks, an edit of the first and the last service at once: ${ends} ms"
    grep -E 'DEBUG read and validated' $B/daemon-chk.log | tail -n 1 | sed -e 's/^[^ ]* *DEBUG /    /' 
    echo "  the daemon's own timings for the last of those edits:"
    edit_timings $B/daemon-chk.log
    { cat $B/live/lvsd.yaml; added_service "$REALS"; } >$B/live/lvsd.yaml.tmp
    chk_added=$(rename_wait a$n $B/live/lvsd.yaml.tmp $B/live/lvsd.yaml 10.9.9.9:80 10.2.0.$((REALS + 1)):80 1)
    echo "  with a tcp check on each of the $((n * REALS)) reals: weight edits ${chk_edits}ms; a service added ${chk_added} ms"
    renames
    # What the loop was doing when each edit came: an edit that lands during a resync (a whole
    # read of the table, seconds here) waits for it.
    echo "  the checks daemon's passes (config reads and whole-table resyncs, with their times):"
    passes $B/daemon-chk.log | tail -n 14
    kill $dpid; wait $dpid 2>/dev/null
    kill "$(cat $B/listener-a$n)"
  fi
  $IP netns exec a$n ipvsadm -C; $IP netns del a$n
done

fi
if want keepalived; then
echo
echo "== keepalived $(keepalived --version 2>&1 | head -n 1 | cut -d' ' -f1-2) at $KA_SIZE x $REALS =="
gen_keepalived "$KA_SIZE" "$REALS" >$B/k.conf
lab_routed_ns ka
t0=$(cs)
$IP netns exec ka keepalived -C -n -f $B/k.conf -p $B/k.pid -c $B/kc.pid >$B/k.log 2>&1 &
$IP netns exec ka ./ipvs-raw count "$KA_SIZE" >/dev/null
ka_load=$(($(cs) - t0))
sleep 3
kreloads=""
for w in 3 4; do
  awk -v w="$w" '!done && /    weight 1/ { sub(/weight 1/, "weight " w); done = 1 } { print }' $B/k.conf >$B/k2.conf && cp $B/k2.conf $B/k.conf
  kreloads="$kreloads $($IP netns exec ka ./ipvs-raw signal-wait "$(cat $B/k.pid)" 1 10.1.0.1:80 10.2.0.2:80 $w 2>>"$B/renamed")"
  sed -i "s/    weight $w/    weight 1/" $B/k.conf
  sleep 3
done
kill "$(cat $B/k.pid)"; sleep 2; $IP netns exec ka ipvsadm -C; $IP netns del ka
gen_yaml "$KA_SIZE" "$REALS" >$B/base.yaml; cp $B/base.yaml $B/live/lvsd.yaml
lab_routed_ns la
t0=$(cs); $IP netns exec la ./lvsd apply -c $B/base.yaml --state-dir $B/st-ka >/dev/null 2>&1; la_cold=$(($(cs) - t0))
daemon la $B/live/lvsd.yaml $B/st-ka $B/daemon-ka.log
ka_edits=$(five_edits la $B/live/lvsd.yaml | tr '\n' ' ')
kill $dpid; wait $dpid 2>/dev/null
$IP netns exec la ipvsadm -C; $IP netns del la
echo "load: keepalived $(secs $ka_load) s, lvsd apply $(secs $la_cold) s"
echo "weight edit: keepalived's SIGHUP reload${kreloads} ms; lvsd's rename ${ka_edits}ms"
renames

fi
if want health; then
echo
hc_services=$((HC_RATE / REALS)); hc_asked=$((HC_RATE * WINDOW))
echo "== health checks at $HC_RATE probes a second: $hc_services services x $REALS reals, a distinct listener each, tcp every 1 s =="
lab_routed_ns hc
listen_targets hc "$HC_RATE"
gen_hc_yaml "$hc_services" "$REALS" "$HC_RATE" 1s >$B/h.yaml
gen_hc_keepalived "$hc_services" "$REALS" "$HC_RATE" 1 >$B/kh.conf
set -- $(lvsd_checks hc $B/h.yaml); l_cpu=$1 l_probes=$2; shift 2; late="$*"
set -- $(ka_checks hc $B/kh.conf); k_cpu=$1 k_probes=$2
echo "lvsd: $(secs $l_cpu) s CPU in $WINDOW s for $l_probes probes of $hc_asked asked: $(per $l_cpu $l_probes) µs CPU a probe; lateness $late"
echo "keepalived: $(secs $k_cpu) s CPU in $WINDOW s for $k_probes probes of $hc_asked asked: $(per $k_cpu $k_probes) µs CPU a probe"
# The floor of a tcp probe: the same targets connected to once a second by a bare loop
# (blocking connect, reset at close, no runtime): what the kernel's side of a probe costs here.
set -- $($IP netns exec hc ./ipvs-raw connect "$WINDOW" $(targets "$HC_RATE"))
f_probes=$1 f_cpu=$(x100 "$2")
echo "floor (a bare connect loop): ${2} s CPU in $WINDOW s for $f_probes connections: $(per "$f_cpu" "$f_probes") µs CPU a probe"
# lvsd alone at higher rates: the highest it keeps (99% of the probes asked, p99 lateness
# under 100 ms), and its CPU there.
best=0 best_cpu=0
kill "$(cat $B/listener-hc)" 2>/dev/null; $IP netns del hc
for rate in $HC_RATES; do
  lab_routed_ns hr$rate
  listen_targets hr$rate "$rate"
  gen_hc_yaml "$((rate / REALS))" "$REALS" "$rate" 1s >$B/h.yaml
  set -- $(lvsd_checks hr$rate $B/h.yaml); c=$1 p=$2; shift 2; lt="$*"
  kill "$(cat $B/listener-hr$rate)" 2>/dev/null; $IP netns del hr$rate
  asked=$((rate * WINDOW)); p99=$(p99_of "$lt")
  echo "lvsd at $rate probes a second: $p of $asked made ($(share "$p" "$asked")), $(secs $c) s CPU in $WINDOW s ($(per $c $p) µs a probe); lateness $lt"
  if [ -n "$p99" ] && [ "$p99" -lt 100 ] && [ $((p * 100)) -ge $((asked * 99)) ]; then best=$rate best_cpu=$c; else
    # Past what it keeps: higher rates only overload the VM (at 3,000 a second its kernel
    # reported a soft lockup in the probing thread's connects and never came back).
    break
  fi
done
# Many services over the same real servers: one probe per target, not per (service, real).
set -- $HC_SHARED; sh_services=$1 sh_distinct=$2
echo "== health checks shared: $sh_services services x $REALS reals over $sh_distinct distinct reals, tcp every 2 s =="
lab_routed_ns hs
listen_targets hs "$sh_distinct"
gen_hc_yaml "$sh_services" "$REALS" "$sh_distinct" 2s >$B/hs.yaml
gen_hc_keepalived "$sh_services" "$REALS" "$sh_distinct" 2 >$B/khs.conf
set -- $(lvsd_checks hs $B/hs.yaml); s_cpu=$1 s_probes=$2
set -- $(ka_checks hs $B/khs.conf); ks_cpu=$1 ks_probes=$2
kill "$(cat $B/listener-hs)"; $IP netns del hs
echo "lvsd: $s_probes probes in $WINDOW s ($((s_probes / WINDOW))/s), $(secs $s_cpu) s CPU; keepalived: $ks_probes probes ($((ks_probes / WINDOW))/s), $(secs $ks_cpu) s CPU (checks configured: $((sh_services * REALS)) every 2 s)"

fi
if want big; then
echo
echo "== $BIG services x $BIG_REALS reals =="
gen_yaml "$BIG" "$BIG_REALS" >$B/base.yaml
lab_routed_ns bw; lab_routed_ns ba
big_raw=$($IP netns exec bw ./ipvs-raw write "$BIG" "$BIG_REALS")
set -- $($IP netns exec bw ./ipvs-raw dump); big_dump=$1
$IP netns exec bw ipvsadm -C; $IP netns del bw
# The floors as at the sizes: the file read and validated, then the raw writer (cold); the
# raw dump and the file's check at once (no-op).
t0=$(cs); ./lvsd check -c $B/base.yaml >/dev/null 2>&1; big_checked=$(($(cs) - t0))
t0=$(cs); $IP netns exec ba ./lvsd apply -c $B/base.yaml --state-dir $B/st-big >/dev/null 2>&1; big_cold=$(($(cs) - t0))
# As at the sizes: three rounds of the no-op, the raw dump of the same table and the two
# floors at once, medians.
noops=""; dumps=""; boths=""
for k in 1 2 3; do
  t0=$(cs); $IP netns exec ba ./lvsd apply -c $B/base.yaml --state-dir $B/st-big >$B/noop.out 2>&1; noops="$noops $(($(cs) - t0))"
  t0=$(cs); $IP netns exec ba ./ipvs-raw dump >/dev/null; dumps="$dumps $(($(cs) - t0))"
  boths="$boths $(dump_and_check ba $B/base.yaml)"
done
big_noop=$(median $noops); big_tdump=$(median $dumps); big_both=$(median $boths)
big_writes=$(grep -c -E '^[-+~] |^applied' $B/noop.out)
cp $B/base.yaml $B/live/lvsd.yaml
DLOG=info,lvsd::timing=debug daemon ba $B/live/lvsd.yaml $B/st-big $B/daemon-big.log --metrics-listen 127.0.0.1:9474
big_edits=$(five_edits ba $B/live/lvsd.yaml | tr '\n' ' ')
idle_measure ba
big_idle=$IDLE big_floor=$IDLE_FLOOR
big_rss=$(rss $dpid)
kill $dpid; wait $dpid 2>/dev/null
$IP netns exec ba ipvsadm -C; $IP netns del ba
echo "cold apply: lvsd $(secs $big_cold) s, raw writer $big_raw s; lvsd check of the file $(secs $big_checked) s"
echo "no-op apply x3:$(for t in $noops; do printf ' %s s' "$(secs $t)"; done) ($big_writes writes in the last); raw dump of the same table, after each:$(for t in $dumps; do printf ' %s s' "$(secs $t)"; done); the raw dump and lvsd check at once:$(for t in $boths; do printf ' %s s' "$(secs $t)"; done); of a table of its own $big_dump s"
echo "weight edits under the daemon: ${big_edits}ms; peak RSS $big_rss MiB"
renames
# What the loop was doing when each edit came (a whole read of the table takes seconds here).
echo "  the daemon's passes (config reads and whole-table reads, with their times):"
passes $B/daemon-big.log | head -n 24
echo "idle daemon: $(secs $big_idle) s CPU over ${IDLE_WINDOW:-60} s; two raw dumps: $big_floor s CPU"
echo "the raw dump a service: $(awk -v a="$L_rawdump" -v n="$LARGEST" 'BEGIN { printf "%.0f", a / n * 1e6 }') us at $LARGEST services, $(awk -v a="$big_dump" -v n="$BIG" 'BEGIN { printf "%.0f", a / n * 1e6 }') us at $BIG"

fi
# The targets (the largest size unless said).
L="$LARGEST x $REALS"
if want sizes; then
r=$(div "$L_cold" "$(x100 "$L_raw")"); row "cold apply, $L: lvsd / raw writer" "$(secs $L_cold) s" "raw writer $L_raw s" "${r}x" "<= 1.3x" "$(verdict "$r" 1.3 le)"
f=$(check_then_write "$L_checked" "$L_raw"); r=$(div "$L_cold" "$(x100 "$f")")
row "... lvsd / (lvsd check + raw writer): validated, then written" "$(secs $L_cold) s" "check + raw writer $f s" "${r}x" "-" "-"
r=$(div "$L_coldr" "$L_cold"); row "cold apply, $L: ipvsadm -R / lvsd" "$(secs $L_cold) s" "ipvsadm -R $(secs $L_coldr) s" "${r}x" "-" "-"
r=$(div "$L_noop" "$L_dump"); row "no-op apply, $L: lvsd / raw dump (medians of 3)" "$(secs $L_noop) s" "raw dump $(secs $L_dump) s" "${r}x" "<= 1.1x" "$(verdict "$r" 1.1 le)"
r=$(div "$L_worst" "$L_dump"); row "... the worst of the 3 no-ops / the raw dump" "$(secs $L_worst) s" "raw dump $(secs $L_dump) s" "${r}x" "-" "-"
r=$(div "$L_noop" "$L_both"); row "... lvsd / (raw dump and lvsd check at once)" "$(secs $L_noop) s" "both $(secs $L_both) s" "${r}x" "-" "-"
r=$(div "$L_noop" "$L_sn"); row "no-op apply, $L: lvsd / ipvsadm -Sn" "$(secs $L_noop) s" "ipvsadm -Sn $(secs $L_sn) s" "${r}x" "-" "-"
row "no-op apply, $L: writes in three runs" "$writes" "" "" "0" "$([ "$writes" = 0 ] && echo met || echo MISSED)"
e=$(median $chk_edits); r=$(div "$((L_cold * 10))" "$e"); row "weight edit with a check on every real, $L: cold / edit (median)" "$e ms" "cold $(secs $L_cold) s" "${r}x" ">= 100x" "$(verdict "$r" 100)"
e=$(median $ends); r=$(div "$((L_cold * 10))" "$e"); row "... an edit at both ends of the file (median)" "$e ms" "cold $(secs $L_cold) s" "${r}x" ">= 100x" "$(verdict "$r" 100)"
e=$(median $L_edits); r=$(div "$((L_cold * 10))" "$e"); row "... without checks (median)" "$e ms" "cold $(secs $L_cold) s" "${r}x" ">= 100x" "$(verdict "$r" 100)"
r=$(div "$((L_cold * 10))" "$chk_added"); row "a service added, with checks: cold / edit" "$chk_added ms" "cold $(secs $L_cold) s" "${r}x" "-" "-"
r=$(div "$(secs $idle)" "$floor"); row "idle daemon, $L: CPU a minute / 2 raw dumps' CPU" "$(secs $idle) s" "2 raw dumps $floor s" "${r}x" "<= 1.1x" "$(verdict "$r" 1.1 le)"
r=$(div "$L_exported" "$L_generated"); row "apply of export's output / of the generated file" "$(secs $L_exported) s" "generated $(secs $L_generated) s" "${r}x" "~1x" "$(verdict "$r" 1.15 le)"
row "peak RSS, $L" "$peak MiB" "" "" "< 64 MiB" "$(verdict "$peak" 63 le)"
fi
if want keepalived; then
k=$(min $kreloads); e=$(median $ka_edits); r=$(div "$k" "$e")
row "weight edit, $KA_SIZE x $REALS: keepalived reload / lvsd (median)" "$e ms" "keepalived $k ms (its best)" "${r}x" ">= 100x" "$(verdict "$r" 100)"
r=$(div "$ka_load" "$la_cold"); row "load, $KA_SIZE x $REALS: keepalived / lvsd apply" "$(secs $la_cold) s" "keepalived $(secs $ka_load) s" "${r}x" "-" "-"
fi
if want health; then
r=$(share "$l_probes" "$hc_asked"); row "health checks at $HC_RATE/s asked: lvsd made / asked" "$l_probes" "asked $hc_asked" "$r" ">= 0.99" "$(verdict "$r" 0.99)"
r=$(share "$k_probes" "$hc_asked"); row "... keepalived made / asked" "$k_probes" "asked $hc_asked" "$r" "-" "-"
lp=$(per $l_cpu $l_probes); kp=$(per $k_cpu $k_probes); r=$(div "$lp" "$kp")
row "... CPU a probe, lvsd / keepalived" "$lp µs" "keepalived $kp µs" "${r}x" "<= 0.5x" "$(verdict "$r" 0.5 le)"
fp=$(per "$f_cpu" "$f_probes")
row "... CPU a probe, the floor (bare connect) / keepalived" "$fp µs" "keepalived $kp µs" "$(div "$fp" "$kp")x" "-" "-"
row "... CPU a probe, lvsd / the floor" "$lp µs" "floor $fp µs" "$(div "$lp" "$fp")x" "-" "-"
p99=$(p99_of "$late")
row "... lvsd's p99 lateness" "${p99:-?} ms" "($late)" "" "< 100 ms" "$(verdict "${p99:-n/a}" 99 le)"
core=$(awk -v r="$best" -v c="$best_cpu" -v w="$WINDOW" 'BEGIN { if (c > 0) printf "%.0f", r / (c / 100 / w); else printf "n/a" }')
row "highest rate lvsd keeps (99% made, p99 < 100 ms)" "$best/s" "checks a second a core: $core" "" "-" "-"
r=$(share "$s_probes" "$ks_probes"); row "$sh_services x $REALS over $sh_distinct reals: probes, lvsd / keepalived" "$((s_probes / WINDOW))/s" "keepalived $((ks_probes / WINDOW))/s" "$r" "-" "-"
r=$(share "$s_cpu" "$ks_cpu"); row "... CPU, lvsd / keepalived" "$(secs $s_cpu) s" "keepalived $(secs $ks_cpu) s" "$r" "<= 0.5x" "$(verdict "$r" 0.5 le)"
fi
if want big; then
B2="$BIG x $BIG_REALS"
r=$(div "$big_cold" "$(x100 "$big_raw")"); row "cold apply, $B2: lvsd / raw writer" "$(secs $big_cold) s" "raw writer $big_raw s" "${r}x" "<= 1.3x" "$(verdict "$r" 1.3 le)"
f=$(check_then_write "$big_checked" "$big_raw"); r=$(div "$big_cold" "$(x100 "$f")")
row "... lvsd / (lvsd check + raw writer): validated, then written" "$(secs $big_cold) s" "check + raw writer $f s" "${r}x" "-" "-"
r=$(div "$big_noop" "$big_tdump"); row "no-op apply, $B2: lvsd / raw dump (medians of 3)" "$(secs $big_noop) s" "raw dump $(secs $big_tdump) s" "${r}x" "<= 1.1x" "$(verdict "$r" 1.1 le)"
r=$(div "$big_noop" "$big_both"); row "... lvsd / (raw dump and lvsd check at once)" "$(secs $big_noop) s" "both $(secs $big_both) s" "${r}x" "-" "-"
e=$(median $big_edits); r=$(div "$((big_cold * 10))" "$e"); row "weight edit, $B2: cold / edit (median)" "$e ms" "cold $(secs $big_cold) s" "${r}x" ">= 100x" "$(verdict "$r" 100)"
r=$(div "$(secs $big_idle)" "$big_floor"); row "idle daemon, $B2: CPU a minute / 2 raw dumps' CPU" "$(secs $big_idle) s" "2 raw dumps $big_floor s" "${r}x" "<= 1.1x" "$(verdict "$r" 1.1 le)"
row "peak RSS, $B2" "$big_rss MiB" "" "" "< 400 MiB" "$(verdict "$big_rss" 399 le)"
fi
echo
printf '%-50s | %-18s | %-24s | %-7s | %-9s | %s\n' "target" "lvsd" "against" "ratio" "target" ""
cat $B/rows
echo "test result: ok. 0 passed; 0 failed; bench"
