#!/bin/sh
# An edit made while the daemon starts or reloads is never lost. lvsd stops itself (SIGSTOP) at
# each named step of its start and of a reload (LVSD_FAULT=<step>, crates/lvsd/src/fault.rs);
# while it is stopped there the test changes the config the way configuration management or
# Kubernetes does (a rename into place, a file renamed into an included directory, a ConfigMap
# `..data` swap), resumes it, and expects the kernel's table to follow the new file within a few
# resyncs. Runs in the test VM (busybox sh); ends with a "test result:" line.
. ./seed-lab.sh
. ./checks.sh
E=/tmp/startup
rm -rf $E
mkdir -p $E
lab_down
lab_routed_ns st
has() { $IP netns exec st ipvsadm -Sn | grep -q -F -- "$1"; }
stopped() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = T ]; }
# pid seconds command...: resumes pid whenever it stopped at its step, until command succeeds.
cont_until() {
  pid=$1; limit=$(awk "BEGIN { printf \"%d\", $2 * 100 }"); shift 2
  t0=$(cs)
  while :; do
    stopped "$pid" && kill -CONT "$pid"
    if "$@" >/dev/null 2>&1; then echo "   (after $(( $(cs) - t0 ))0 ms)"; return 0; fi
    [ $(( $(cs) - t0 )) -gt "$limit" ] && return 1
    sleep 0.1
  done
}
svc() { # address real...: one service entry
  printf '  - name: s%s\n    address: %s:80\n    scheduler: rr\n    reals:\n' "$(echo "$1" | tr -d .)" "$1"
  shift
  for r in "$@"; do printf '      - address: %s\n' "$r"; done
}
# name step config: starts lvsd in the namespace with LVSD_FAULT=step; sets $pid.
start() {
  $IP netns exec st env LVSD_FAULT="$2" ./lvsd run -c "$3" --state-dir "$E/st-$1" --resync-interval 2s >"$E/$1.log" 2>&1 &
  pid=$!
}
stop() {
  kill -CONT "$pid" 2>/dev/null; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  $IP netns exec st ipvsadm -C
}
# name description command...: a check that prints the daemon's log when it fails.
expect() {
  n=$1 d=$2; shift 2
  if "$@"; then ok "$n: $d"; else bad "$n: $d"; echo "--- what lvsd said ($n):"; cat "$E/$n.log"; echo "---"; fi
}
put() { # file: stdin written beside it and renamed into place, as configuration management does
  cat >"$(dirname "$1")/.tmp.$$" && mv "$(dirname "$1")/.tmp.$$" "$1"
}

echo "--- 1. the main file renamed into place at every step of the start"
for step in start-before-watch start-before-read start-after-read start-before-loop; do
  n=main-$step
  mkdir -p $E/$n
  { echo "services:"; svc 10.1.0.1 10.0.0.1; } >$E/$n/lvsd.yaml
  start $n $step $E/$n/lvsd.yaml
  expect $n "lvsd stopped at $step" within 30 stopped "$pid"
  { echo "services:"; svc 10.1.0.1 10.0.0.1 10.0.0.2; } | put $E/$n/lvsd.yaml
  expect $n "the edit made at $step is in the table" cont_until "$pid" 10 has 10.0.0.2:80
  stop
done

echo "--- 2. a file renamed into an included directory at every step of the start"
for step in start-before-read start-after-read start-before-loop; do
  n=include-$step
  mkdir -p $E/$n/conf.d
  { echo "include: [conf.d/*.yaml]"; echo "services:"; svc 10.1.0.1 10.0.0.1; } >$E/$n/lvsd.yaml
  { echo "services:"; svc 10.1.0.2 10.0.0.1; } >$E/$n/conf.d/a.yaml
  start $n $step $E/$n/lvsd.yaml
  expect $n "lvsd stopped at $step" within 30 stopped "$pid"
  { echo "services:"; svc 10.1.0.3 10.0.0.1; } | put $E/$n/conf.d/b.yaml
  expect $n "the service of the file added at $step is in the table" cont_until "$pid" 10 has 10.1.0.3:80
  expect $n "... beside the others" sh -c "$IP netns exec st ipvsadm -Sn | grep -q 10.1.0.2:80"
  stop
done

echo "--- 3. a ConfigMap's ..data swapped at every step of the start"
for step in start-before-watch start-before-read start-after-read start-before-loop; do
  n=configmap-$step
  C=$E/$n
  mkdir -p $C/..v1
  { echo "services:"; svc 10.1.0.1 10.0.0.1; } >$C/..v1/lvsd.yaml
  ln -s ..v1 $C/..data && ln -s ..data/lvsd.yaml $C/lvsd.yaml
  start $n $step $C/lvsd.yaml
  expect $n "lvsd stopped at $step" within 30 stopped "$pid"
  mkdir $C/..v2 && { echo "services:"; svc 10.1.0.1 10.0.0.1 10.0.0.2; } >$C/..v2/lvsd.yaml
  ln -s ..v2 $C/..data_tmp && mv -T $C/..data_tmp $C/..data
  expect $n "the swap made at $step is in the table" cont_until "$pid" 10 has 10.0.0.2:80
  stop
done

echo "--- 4. renamed into place at every step of a reload"
for step in reload-before-read reload-after-read; do
  n=reload-$step
  mkdir -p $E/$n/extra.d
  { echo "services:"; svc 10.1.0.1 10.0.0.1; } >$E/$n/lvsd.yaml
  start $n $step $E/$n/lvsd.yaml
  expect $n "the first file is in the table" within 30 has 10.0.0.1:80
  # This edit's reload stops at the step; the next edit is made while it is stopped there.
  { echo "include: [extra.d/*.yaml]"; echo "services:"; svc 10.1.0.1 10.0.0.1 10.0.0.2; } | put $E/$n/lvsd.yaml
  expect $n "lvsd stopped at $step" within 30 stopped "$pid"
  { echo "include: [extra.d/*.yaml]"; echo "services:"; svc 10.1.0.1 10.0.0.1 10.0.0.2 10.0.0.3; } | put $E/$n/lvsd.yaml
  { echo "services:"; svc 10.1.0.4 10.0.0.1; } | put $E/$n/extra.d/new.yaml
  expect $n "the edit made during the reload is in the table" cont_until "$pid" 10 has 10.0.0.3:80
  expect $n "... and the file added to the directory it newly includes" cont_until "$pid" 10 has 10.1.0.4:80
  stop
done

lab_down
result startup
