#!/bin/sh
# The lvsd benchmark, run inside the VM by tests/bench/run.sh (busybox sh). For each size it
# generates the config and the same rules for `ipvsadm -R`, and measures in fresh network
# namespaces: cold apply, no-op apply (and its kernel writes) against `ipvsadm -Sn`, one weight
# change and one added service under the daemon (from the rename to the kernel holding it, from
# the daemon's own log), parsing and planning the file (from `lvsd plan`'s debug log), then the
# daemon's peak RSS and its CPU over a minute of resyncs at the default interval (30 s).
# Prints one table. Times are wall-clock from /proc/uptime (10 ms resolution) or from lvsd's
# log (microseconds).
. ./seed-lab.sh
B=/tmp/bench
mkdir -p $B
REALS=${REALS:-10}
cs() { awk '{ printf "%d", $1 * 100 }' /proc/uptime; }
secs() { awk -v c="$1" 'BEGIN { printf "%.2f", c / 100 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else printf "n/a" }'; }
fresh_ns() { lab_routed_ns "$@"; }
gen_yaml() { # services
  awk -v n="$1" -v r="$REALS" 'BEGIN {
    print "services:"
    for (i = 0; i < n; i++) {
      printf "  - address: 10.1.%d.%d:80\n    scheduler: wlc\n    reals:\n", int(i / 250), i % 250 + 1
      for (j = 1; j <= r; j++) printf "      - address: 10.2.%d.%d\n", int(j / 250), j % 250 + 1
    }
  }'
}
gen_rules() { # services
  awk -v n="$1" -v r="$REALS" 'BEGIN {
    for (i = 0; i < n; i++) {
      s = sprintf("10.1.%d.%d:80", int(i / 250), i % 250 + 1)
      printf "-A -t %s -s wlc\n", s
      for (j = 1; j <= r; j++) printf "-a -t %s -r 10.2.%d.%d:80 -g -w 1\n", s, int(j / 250), j % 250 + 1
    }
  }'
}
# Seconds in a debug line's `elapsed=1.23s` / `elapsed=456.7ms` / `elapsed=89µs`.
elapsed() { sed -n 's/.*elapsed=\([0-9.]*\)\([µmn]*s\).*/\1 \2/p' | awk '{ f = ($2 == "s") ? 1 : ($2 == "ms") ? 0.001 : ($2 == "µs") ? 0.000001 : 0.000000001; t += $1 * f } END { printf "%.3f", t }'; }
# Seconds since midnight of a log line's RFC 3339 timestamp.
stamp() { echo "$1" | awk '{ split($1, a, "T"); split(a[2], t, ":"); sub("Z", "", t[3]); printf "%.6f", t[1] * 3600 + t[2] * 60 + t[3] }'; }
# Latency (ms) from the first relevant file event after line $2 of log $1 to the last
# operation line, and the number of operation lines.
edit_cost() {
  tail -n +"$2" "$1" >$B/tail.log
  ev=$(grep -m 1 'relevant=true' $B/tail.log)
  last=$(grep -E ' INFO [-+~] ' $B/tail.log | tail -n 1)
  ops=$(grep -c -E ' INFO [-+~] ' $B/tail.log)
  if [ -z "$ev" ] || [ -z "$last" ]; then echo "n/a 0"; return; fi
  awk -v a="$(stamp "$ev")" -v b="$(stamp "$last")" -v n="$ops" 'BEGIN { printf "%.0f %d\n", (b - a) * 1000, n }'
}
wait_log() { # file pattern count: until the log has `count` lines matching
  i=0
  while [ "$(grep -c -E "$2" "$1")" -lt "$3" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
}

printf '%-11s | %-34s | %-36s | %-30s | %-30s | %-22s\n' "services" "cold apply: lvsd / ipvsadm -R" "no-op apply (writes) / ipvsadm -Sn" "edit: weight (writes, x cold)" "edit: +service (writes, x cold)" "parse+plan (of cold)"
for n in ${SIZES:-100 1000 10000}; do
  gen_yaml "$n" >$B/cfg.yaml
  gen_rules "$n" >$B/rules
  fresh_ns a$n
  fresh_ns r$n
  t0=$(cs); $IP netns exec a$n ./lvsd apply -c $B/cfg.yaml --state-dir $B/st-$n >$B/apply.out 2>&1; cold=$(( $(cs) - t0 ))
  t0=$(cs); $IP netns exec r$n ipvsadm -R <$B/rules; coldr=$(( $(cs) - t0 ))
  t0=$(cs); $IP netns exec a$n ./lvsd apply -c $B/cfg.yaml --state-dir $B/st-$n >$B/noop.out 2>&1; noop=$(( $(cs) - t0 ))
  writes=$(grep -c -E '^[-+~] ' $B/noop.out)
  t0=$(cs); $IP netns exec a$n ipvsadm -Sn >/dev/null; dump=$(( $(cs) - t0 ))
  # Parsing and planning the whole file against an empty table, from lvsd's own timings.
  fresh_ns p$n
  LVSD_LOG=warn,lvsd=debug $IP netns exec p$n ./lvsd plan -c $B/cfg.yaml --state-dir $B/sp-$n >/dev/null 2>$B/plan.err
  pp=$(grep -E 'read and validated the config|planned' $B/plan.err | elapsed)
  $IP netns del p$n
  # The daemon: one weight change, then one added service, each written as a rename.
  mkdir -p $B/live && cp $B/cfg.yaml $B/live/lvsd.yaml
  LVSD_LOG=info,lvsd=debug $IP netns exec a$n ./lvsd run -c $B/live/lvsd.yaml --state-dir $B/st-$n >$B/daemon.log 2>&1 &
  dpid=$!
  wait_log $B/daemon.log 'lvsd running' 1
  sleep 2
  start=$(($(wc -l <$B/daemon.log) + 1))
  # line 5 is the first real of the first service
  awk 'NR == 5 { $0 = $0 "\n        weight: 3" } { print }' $B/cfg.yaml >$B/live/.tmp && mv $B/live/.tmp $B/live/lvsd.yaml
  wait_log $B/daemon.log ' INFO ~ real' 1
  set -- $(edit_cost $B/daemon.log $start); w_ms=$1 w_ops=$2
  start=$(($(wc -l <$B/daemon.log) + 1))
  { cat $B/live/lvsd.yaml; printf '  - address: 10.9.9.9:80\n    reals:\n'; j=1; while [ $j -le "$REALS" ]; do printf '      - address: 10.2.0.%d\n' $j; j=$((j + 1)); done; } >$B/live/.tmp && mv $B/live/.tmp $B/live/lvsd.yaml
  wait_log $B/daemon.log ' INFO \+ real [^ ]+ of TCP 10.9.9.9:80' "$REALS"
  set -- $(edit_cost $B/daemon.log $start); s_ms=$1 s_ops=$2
  printf '%-11s | %-34s | %-36s | %-30s | %-30s | %-22s\n' "$n x $REALS" \
    "$(secs $cold) s / $(secs $coldr) s = $(ratio $coldr $cold)" \
    "$(secs $noop) s ($writes) / $(secs $dump) s = $(ratio $noop $dump)" \
    "$w_ms ms ($w_ops), $(ratio $((cold * 10)) $w_ms)" "$s_ms ms ($s_ops), $(ratio $((cold * 10)) $s_ms)" \
    "$pp s ($(awk -v a="$pp" -v c="$cold" 'BEGIN { printf "%.0f%%", a * 10000 / c }'))"
  if [ "$n" = "${SIZES##* }" ] || [ "$n" = 10000 ]; then
    t1=$(awk '{ print $14 + $15 }' /proc/$dpid/stat)
    sleep 60
    t2=$(awk '{ print $14 + $15 }' /proc/$dpid/stat)
    hwm=$(awk '/VmHWM/ { print $2 }' /proc/$dpid/status)
    last_n=$n
  fi
  kill $dpid; wait $dpid 2>/dev/null
  $IP netns del a$n; $IP netns del r$n
done
echo
echo "daemon at $last_n x $REALS: peak RSS $((hwm / 1024)) MiB; CPU over 60 s of resyncs every 30 s (the default): $(secs $((t2 - t1))) s"
grep -m 1 -E 'applied [0-9]+ changes' $B/apply.out >/dev/null || { echo "cold apply output:"; tail -n 3 $B/apply.out; }
