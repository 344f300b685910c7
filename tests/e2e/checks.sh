# shellcheck shell=sh
# What every end-to-end scenario counts with: named checks, deadlines measured on /proc/uptime,
# and the cargo-style "test result:" line that tests/run.sh adds up. Sourced (busybox sh).
PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); echo "e2e ok: $*"; }
bad() { FAIL=$((FAIL + 1)); echo "e2e FAILED: $*"; }
check() { # description command...
  d=$1; shift
  if "$@"; then ok "$d"; else bad "$d"; fi
}
cs() { awk '{ printf "%d", $1 * 100 }' /proc/uptime; }
within() { # seconds command...: true once command succeeds, polling, within the deadline
  limit=$(awk "BEGIN { printf \"%d\", $1 * 100 }"); shift
  t0=$(cs)
  while :; do
    if "$@" >/dev/null 2>&1; then echo "   (after $(( $(cs) - t0 ))0 ms)"; return 0; fi
    [ $(( $(cs) - t0 )) -gt "$limit" ] && return 1
    sleep 0.1
  done
}
result() { # scenario name: the summary line; exits non-zero on any failure
  if [ "$FAIL" -eq 0 ]; then res=ok; else res=FAILED; fi
  echo "test result: $res. $PASS passed; $FAIL failed; e2e $1"
  [ "$FAIL" -eq 0 ]
}
