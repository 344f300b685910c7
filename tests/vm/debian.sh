#!/usr/bin/env bash
# The Debian package, built and proven on a real Debian 12 booted with systemd:
#  1. builds lvsd_<version>-1_amd64.deb (deploy/debian/build.sh), checks what it holds and holds
#     it to lintian (no errors, no warnings but those overridden and explained in the README);
#  2. boots a minimal Debian 12 (debootstrap, cached in $LVSD_VM_CACHE) under qemu with the test
#     kernel, systemd as PID 1, and runs tests/systemd/proof.sh there: apt installs the package,
#     and the service is driven through systemctl, journald and the kernel's table; then
#     tests/systemd/ansible.sh runs the shipped Ansible tasks with Debian's ansible-core against
#     the package there (first run changed, second changed=0, broken pushes refused by validate).
# Prints cargo-style "test result:" lines (tests/run.sh adds them up); exits non-zero on any
# failure. A step that cannot run (no debootstrap, no boot, no report from the VM) fails.
#
# Environment (besides lib.sh's LVSD_VM_CACHE):
#   LVSD_DEBIAN_MIRROR      the Debian archive for debootstrap (default: the one apt uses here)
#   LVSD_DEBIAN_VM_TIMEOUT  seconds before the systemd VM is declared hung (default 900)
#   LVSD_DEBIAN_OUT         where the packages, the disks and the logs go, kept (default: a
#                           temporary directory, removed at the end)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
# shellcheck source=tests/vm/lib.sh
source tests/vm/lib.sh
set +e

DEB_SUITE=bookworm
# What the proof needs inside, besides minbase: systemd as init, udev, the tools it reads the
# table and the host with, and ansible-core for tests/systemd/ansible.sh. The package's own
# dependencies (libc6, systemd) are in this set: the VM has no network. The image's cache name
# is keyed on this list (deb_image): a changed list builds a new image. debootstrap does not
# resolve virtual packages: python3-cffi-backend provides what python3-cryptography (an
# ansible-core dependency) needs, and is named.
DEB_INCLUDE=systemd-sysv,udev,iproute2,kmod,procps,ipvsadm,ansible-core,python3-cffi-backend
# The proof and then the Ansible runs (each ansible-playbook takes tens of seconds under TCG).
DEB_VM_TIMEOUT=${LVSD_DEBIAN_VM_TIMEOUT:-1800}

deb_log() { printf '[debian] %s\n' "$*" >&2; }

# The host tools: debootstrap, lintian, dpkg-dev (cargo deb's dependency resolution), e2fsprogs
# (mkfs.ext4 -d), and cargo-deb itself.
deb_install_deps() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v lintian >/dev/null || missing+=(lintian)
  command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
  command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
  if [ ${#missing[@]} -gt 0 ]; then
    deb_log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null || return 1
  fi
  command -v cargo-deb >/dev/null || cargo install cargo-deb --locked || return 1
}

# The Debian archive apt uses on this machine, for the suite the VM runs.
deb_mirror() {
  if [ -n "${LVSD_DEBIAN_MIRROR:-}" ]; then echo "$LVSD_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT) $(IDENTIFIER)' 2>/dev/null |
    awk -v s="$DEB_SUITE" '$2 == s && $3 == "main" && $4 == "Packages" {print $1; exit}')
  if [ -z "$uri" ]; then
    apt-get update -qq
    uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT) $(IDENTIFIER)' 2>/dev/null |
      awk -v s="$DEB_SUITE" '$2 == s && $3 == "main" && $4 == "Packages" {print $1; exit}')
  fi
  [ -n "$uri" ] || { deb_log "apt knows no archive for $DEB_SUITE main; set LVSD_DEBIAN_MIRROR"; return 1; }
  echo "$uri"
}

# What the image holds besides debootstrap's tree: the test kernel's modules, a machine id, no
# getty on the serial console (the proof writes there), no apt timers, and the unit that runs
# the proof from the second disk, prints its exit status and powers off.
deb_setup_tree() {
  local tree=$1
  mkdir -p "$tree/usr/lib/modules"
  cp -a "$VM_CACHE/root/lib/modules/$KVER" "$tree/usr/lib/modules/"
  echo lvsd-vm >"$tree/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 lvsd-vm\n' >"$tree/etc/hosts"
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$tree/etc/machine-id"
  echo >>"$tree/etc/machine-id"
  printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$tree/etc/fstab"
  local u
  for u in serial-getty@ttyS0.service getty@tty1.service getty.target apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "$tree/etc/systemd/system/$u"
  done
  cat >"$tree/usr/local/sbin/lvsd-proof" <<'EOF'
#!/bin/sh
# Runs the proof from the second disk; its output and exit status go to the serial console.
mkdir -p /proof
rc=125
if mount -o ro /dev/vdb /proof; then
  cd /proof && bash ./run
  rc=$?
fi
echo "LVSD-VM-EXIT=$rc"
EOF
  chmod 755 "$tree/usr/local/sbin/lvsd-proof"
  cat >"$tree/etc/systemd/system/lvsd-proof.service" <<'EOF'
[Unit]
Description=The lvsd package's proof (tests/systemd/proof.sh)
After=multi-user.target
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/lvsd-proof
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=infinity
[Install]
WantedBy=multi-user.target
EOF
  ln -sf /etc/systemd/system/lvsd-proof.service "$tree/etc/systemd/system/multi-user.target.wants/lvsd-proof.service"
  rm -f "$tree"/var/cache/apt/archives/*.deb
}

# The root file system image, built once per suite, package list, kernel and setup
# ($VM_CACHE/debian-*.ext4); sets DEB_IMAGE. The VM opens it with snapshot=on: it stays pristine.
deb_image() {
  local key mirror tree t0
  key=$(printf '%s\n' "$DEB_SUITE" "$DEB_INCLUDE" "$KVER" "$(declare -f deb_setup_tree)" | sha256sum | cut -c1-12)
  DEB_IMAGE=$VM_CACHE/debian-$DEB_SUITE-$KVER-$key.ext4
  if [ -s "$DEB_IMAGE" ]; then deb_log "cached: $DEB_IMAGE"; return 0; fi
  mirror=$(deb_mirror) || return 1
  tree=$(mktemp -d /var/tmp/lvsd-debian.XXXXXX)
  t0=$SECONDS
  deb_log "debootstrap $DEB_SUITE (minbase + $DEB_INCLUDE) from $mirror"
  if ! debootstrap --variant=minbase --include="$DEB_INCLUDE" "$DEB_SUITE" "$tree" "$mirror" >"$tree.log" 2>&1; then
    tail -n 20 "$tree.log" >&2
    deb_log "debootstrap failed (log: $tree.log)"
    rm -rf "$tree"
    return 1
  fi
  deb_log "debootstrap took $((SECONDS - t0)) s"
  deb_setup_tree "$tree"
  rm -f "$VM_CACHE"/debian-*.ext4 "$VM_CACHE"/debian-*.ext4.tmp
  truncate -s 2G "$DEB_IMAGE.tmp"
  if ! mkfs.ext4 -q -F -L lvsd-root -d "$tree" "$DEB_IMAGE.tmp"; then
    deb_log "mkfs.ext4 -d failed"
    rm -rf "$tree" "$DEB_IMAGE.tmp"
    return 1
  fi
  mv "$DEB_IMAGE.tmp" "$DEB_IMAGE"
  rm -rf "$tree" "$tree.log"
  deb_log "image built in $((SECONDS - t0)) s: $DEB_IMAGE"
}

# A busybox initramfs that loads what the stock kernel needs to mount the disk, mounts it and
# hands over to its systemd.
deb_initramfs() {
  local out=$1 tree m dep rel
  tree=$(mktemp -d)
  mkdir -p "$tree"/{bin,dev,proc,sys,newroot}
  cp /bin/busybox "$tree/bin/busybox"
  : >"$tree/modules"
  for m in virtio_pci virtio_blk ext4; do
    { modprobe -d "$VM_CACHE/root" -S "$KVER" --show-depends "$m" 2>/dev/null || true; } | awk '/^insmod/ {print $2}' |
      while read -r dep; do
        rel=${dep#"$VM_CACHE/root"}
        if ! grep -qx "$rel" "$tree/modules"; then
          mkdir -p "$tree$(dirname "$rel")"
          cp "$dep" "$tree$rel"
          echo "$rel" >>"$tree/modules"
        fi
      done
  done
  cat >"$tree/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
while read -r m; do insmod "$m" 2>/dev/null; done </modules
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if ! mount -t ext4 -o rw /dev/vda /newroot; then
  echo "LVSD-VM: cannot mount the root disk"; echo "LVSD-VM-EXIT=125"; poweroff -f
fi
umount /proc /sys; mount -o move /dev /newroot/dev
exec switch_root /newroot /sbin/init
EOF
  chmod +x "$tree/init"
  (cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
  rm -rf "$tree"
}

# Boots the image with the proof's disk $1; console to $2. Returns the proof's exit status, or
# 125 when the VM reported none.
deb_boot() {
  local disk=$1 log=$2 initrd rc
  initrd=$(dirname "$disk")/initrd.gz
  deb_initramfs "$initrd"
  timeout --foreground -k 10 "$DEB_VM_TIMEOUT" qemu-system-x86_64 -accel tcg -m 1024M -smp 2 -nographic \
    -no-reboot -net none -kernel "$VM_CACHE/root/boot/vmlinuz-$KVER" -initrd "$initrd" \
    -drive file="$DEB_IMAGE",if=virtio,format=raw,snapshot=on,cache=unsafe \
    -drive file="$disk",if=virtio,format=raw,cache=unsafe \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 oops=panic systemd.show_status=0 systemd.firstboot=off" \
    </dev/null 2>&1 | stdbuf -o0 tr -d '\r' | tee "$log"
  rc=$(grep -a -o 'LVSD-VM-EXIT=[0-9]*' "$log" | tail -n1 | cut -d= -f2)
  if [ -z "$rc" ]; then
    deb_log "the systemd VM did not report an exit status (no boot, a hang past ${DEB_VM_TIMEOUT}s, or a crash)"
    return 125
  fi
  return "$rc"
}

# The host's part: the package builds, holds what it should, and lintian accepts it.
deb_package_checks() {
  local out=$1 pass=0 fail=0 deb
  pcheck() { local d=$1; shift; if "$@"; then pass=$((pass + 1)); echo "deb ok: $d"; else fail=$((fail + 1)); echo "deb FAILED: $d"; fi; }
  pcheck "deploy/debian/build.sh builds the package" deploy/debian/build.sh --output "$out/lvsd.deb"
  deb=$out/lvsd.deb
  if [ -s "$deb" ]; then
    dpkg-deb -I "$deb"
    dpkg-deb -c "$deb" >"$out/contents"
    cat "$out/contents"
    local f
    for f in ./usr/bin/lvsd ./usr/lib/systemd/system/lvsd.service ./usr/lib/modules-load.d/lvsd.conf \
      ./usr/share/man/man1/lvsd.1.gz ./usr/share/man/man1/lvsd-status.1.gz ./usr/share/bash-completion/completions/lvsd ./usr/share/zsh/vendor-completions/_lvsd \
      ./usr/share/fish/vendor_completions.d/lvsd.fish ./etc/lvsd/lvsd.yaml ./usr/lib/sysusers.d/lvsd.conf \
      ./usr/lib/tmpfiles.d/lvsd.conf ./usr/share/doc/lvsd/copyright ./usr/share/doc/lvsd/changelog.Debian.gz; do
      pcheck "the package holds $f" grep -q " $f\$" "$out/contents"
    done
    pcheck "the package is lvsd_<version>-1_amd64" sh -c "dpkg-deb -f '$deb' Package Version Architecture | tr '\n' ' ' | grep -qx 'Package: lvsd Version: [0-9][0-9.]*-1 Architecture: amd64 '"
    pcheck "the packaged unit runs /usr/bin/lvsd and names nothing in /usr/local" sh -c \
      "dpkg-deb --fsys-tarfile '$deb' | tar -xO ./usr/lib/systemd/system/lvsd.service >'$out/lvsd.service' &&
       grep -q '^ExecStart=/usr/bin/lvsd run ' '$out/lvsd.service' && ! grep -q /usr/local '$out/lvsd.service'"
    pcheck "... and is deploy/systemd/lvsd.service otherwise" bash -c \
      "diff <(sed -n '/^\[Unit\]/,\$p' deploy/systemd/lvsd.service | sed 's|/usr/local/bin/|/usr/bin/|g') <(sed -n '/^\[Unit\]/,\$p' '$out/lvsd.service')"
    pcheck "/etc/lvsd/lvsd.yaml is a conffile" sh -c "dpkg-deb --ctrl-tarfile '$deb' | tar -xO ./conffiles | grep -qx /etc/lvsd/lvsd.yaml"
    pcheck "the shipped config passes lvsd check and has no services" sh -c \
      "${CARGO_TARGET_DIR:-target}/release/lvsd check -c deploy/debian/lvsd.yaml 2>&1 | grep -q 'valid (0 services'"
    # lintian: errors fail, and so does any warning not overridden (deploy/debian/lvsd.lintian-overrides;
    # the README explains each tag). Info tags are shown.
    lintian --fail-on error,warning --display-info "$deb" 2>&1 | grep -v '^running with root privileges' | tee "$out/lintian.log"
    pcheck "lintian: no errors, no warnings but the overridden ones" [ "${PIPESTATUS[0]}" -eq 0 ]
    echo "lintian overrides shipped:"; grep -v '^#' deploy/debian/lvsd.lintian-overrides
    # The upgrade the proof performs: the same build, one revision later.
    pcheck "a second revision builds (for the upgrade)" deploy/debian/build.sh --deb-revision 2 --output "$out/lvsd-upgrade.deb"
  fi
  if [ "$fail" -eq 0 ]; then echo "test result: ok. $pass passed; $fail failed; debian package"; else echo "test result: FAILED. $pass passed; $fail failed; debian package"; fi
  [ "$fail" -eq 0 ]
}

deb_main() {
  local out rc=0 t0=$SECONDS
  if [ -n "${LVSD_DEBIAN_OUT:-}" ]; then
    out=$LVSD_DEBIAN_OUT
  else
    out=$(mktemp -d)
    # shellcheck disable=SC2064 # the directory is known now
    trap "rm -rf '$out'" EXIT
  fi
  mkdir -p "$out"
  if ! vm_install_deps || ! deb_install_deps || ! vm_fetch_kernel; then
    echo "test result: FAILED. 0 passed; 1 failed; debian: could not install the tools or fetch the kernel"
    return 1
  fi
  deb_package_checks "$out" || rc=1
  deb_log "package checks took $((SECONDS - t0)) s"
  if [ ! -s "$out/lvsd.deb" ] || [ ! -s "$out/lvsd-upgrade.deb" ]; then
    echo "test result: FAILED. 0 passed; 1 failed; systemd VM (no package to install)"
    return 1
  fi
  local t1=$SECONDS
  if ! deb_image; then
    echo "test result: FAILED. 0 passed; 1 failed; systemd VM (the Debian image could not be built)"
    return 1
  fi
  deb_log "image ready after $((SECONDS - t1)) s"
  # The proof's disk: the scenarios, the counting helpers, the shipped Ansible tasks and both
  # packages. The Ansible test runs after the proof (which purged the package: it installs it
  # again); the VM's exit status is non-zero when either failed.
  local p=$out/proof
  rm -rf "$p"; mkdir -p "$p"
  cp tests/systemd/proof.sh tests/systemd/ansible.sh tests/e2e/checks.sh deploy/config-management/ansible-lvsd.yml "$p/"
  cp "$out/lvsd.deb" "$p/lvsd_1.deb"
  cp "$out/lvsd-upgrade.deb" "$p/lvsd_2.deb"
  printf '#!/bin/bash\nbash ./proof.sh; rc=$?\necho\nbash ./ansible.sh || rc=1\nexit $rc\n' >"$p/run"
  chmod -R a+rX "$p"
  truncate -s 64M "$out/proof.ext4"
  mkfs.ext4 -q -F -L lvsd-proof -d "$p" "$out/proof.ext4" || { echo "test result: FAILED. 0 passed; 1 failed; systemd VM (proof disk)"; return 1; }
  local t2=$SECONDS
  deb_boot "$out/proof.ext4" "$out/vm.log"
  local vm_rc=$?
  deb_log "the systemd VM ran $((SECONDS - t2)) s (exit $vm_rc); the whole step $((SECONDS - t0)) s"
  if [ "$vm_rc" -ne 0 ] && ! grep -a -q 'test result: [A-Za-z]*\. [0-9]* passed; [0-9]* failed; e2e debian-systemd' "$out/vm.log"; then
    echo "test result: FAILED. 0 passed; 1 failed; systemd VM (exit $vm_rc and no result: no boot, a hang or a crash)"
  fi
  if ! grep -a -q 'test result: [A-Za-z]*\. [0-9]* passed; [0-9]* failed; e2e ansible' "$out/vm.log"; then
    echo "test result: FAILED. 0 passed; 1 failed; e2e ansible (no result from tests/systemd/ansible.sh: it did not run, or hung)"
    rc=1
  fi
  [ "$vm_rc" -eq 0 ] || rc=1
  return $rc
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  deb_main "$@"
  exit $?
fi
