# shellcheck shell=bash
# The project's real-kernel harness: a stock Debian kernel booted under qemu (TCG), an initramfs
# holding busybox, iproute2, ipvsadm, the IPVS modules and a payload, and the payload's exit
# status read back from the serial console. Sourced by tests/run.sh, tests/demo.sh, tests/bench.sh.
#
# Environment:
#   LVSD_VM_CACHE   where the kernel is cached (default /var/cache/lvsd-vm)
#   LVSD_VM_TIMEOUT seconds before a boot is declared hung (default 1500)
#   LVSD_VM_MEM     guest memory (default 2048M)

set -euo pipefail

VM_CACHE=${LVSD_VM_CACHE:-/var/cache/lvsd-vm}
VM_TIMEOUT=${LVSD_VM_TIMEOUT:-1500}
VM_MEM=${LVSD_VM_MEM:-2048M}
# Modules every boot loads (with their dependencies); ip_vs and schedulers come last so a
# payload can run a phase before IPVS exists.
VM_NET_MODULES="veth bridge ipip dummy nlmon ip6_tunnel tun"
VM_IPVS_MODULES="ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh ip_vs_sh ip_vs_sed ip_vs_nq ip_vs_fo ip_vs_ovf ip_vs_mh ip_vs_twos ip_vs_pe_sip"

vm_log() { printf '[vm] %s\n' "$*" >&2; }

# Installs the host tools the harness needs, from Debian's packages.
vm_install_deps() {
  local missing=()
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx nc && file -L /bin/busybox 2>/dev/null | grep -q static || missing+=(busybox-static)
  command -v ipvsadm >/dev/null || missing+=(ipvsadm)
  command -v modprobe >/dev/null && command -v depmod >/dev/null || missing+=(kmod)
  command -v cpio >/dev/null || missing+=(cpio)
  [ -x /sbin/ip ] || missing+=(iproute2)
  command -v file >/dev/null || missing+=(file)
  command -v tcpdump >/dev/null || missing+=(tcpdump)
  command -v socat >/dev/null || missing+=(socat)
  command -v openssl >/dev/null || missing+=(openssl)  # the import scenario's TLS listeners
  # The real peers of the director-pair and active/active tests: Debian's own binaries.
  [ -x /usr/sbin/keepalived ] || missing+=(keepalived)
  [ -x /usr/sbin/bird ] || missing+=(bird2)
  if [ ${#missing[@]} -gt 0 ]; then
    vm_log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Downloads (once) the current Debian kernel and unpacks it into $VM_CACHE/root. Sets KVER.
vm_fetch_kernel() {
  mkdir -p "$VM_CACHE"
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  fi
  [ -n "$pkg" ] || { vm_log "cannot resolve the kernel package behind linux-image-amd64"; return 1; }
  KVER=${pkg#linux-image-}
  if [ ! -f "$VM_CACHE/root/boot/vmlinuz-$KVER" ]; then
    vm_log "fetching $pkg"
    ( cd "$VM_CACHE" && rm -rf root ./*.deb && apt-get download "$pkg" 2>/dev/null && dpkg -x ./*.deb root && rm -f ./*.deb )
  fi
  [ -f "$VM_CACHE/root/lib/modules/$KVER/modules.dep" ] || depmod -b "$VM_CACHE/root" "$KVER"

  export KVER
}

# Copies a binary and the shared libraries it needs into the initramfs tree $1.
vm_add_binary() {
  local tree=$1 bin=$2 dest=${3:-$2}
  mkdir -p "$tree$(dirname "$dest")"
  cp -L "$bin" "$tree$dest"
  ldd "$bin" 2>/dev/null | awk '/=>/ {print $3} /^[ \t]*\// {print $1}' | while read -r lib; do
    [ -n "$lib" ] && [ -f "$lib" ] || continue
    mkdir -p "$tree$(dirname "$lib")"
    [ -f "$tree$lib" ] || cp -L "$lib" "$tree$lib"
  done
}

# Builds $2 (initrd.gz) from payload directory $1.
vm_build_initramfs() {
  local payload=$1 out=$2 tree
  tree=$(mktemp -d)
  chmod 755 "$tree"  # the initramfs root: unprivileged test users must be able to traverse it
  mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,root,lib64,var/run,lib/modules}
  cp /bin/busybox "$tree/bin/busybox"
  vm_add_binary "$tree" /sbin/ip
  vm_add_binary "$tree" "$(command -v ipvsadm)" /sbin/ipvsadm
  vm_add_binary "$tree" "$(command -v tcpdump)" /usr/bin/tcpdump
  vm_add_binary "$tree" "$(command -v socat)" /usr/bin/socat  # UDP flows (busybox nc has no -u)
  vm_add_binary "$tree" /usr/sbin/keepalived
  vm_add_binary "$tree" /usr/sbin/bird
  vm_add_binary "$tree" /usr/sbin/birdc
  vm_add_binary "$tree" /usr/bin/setpriv  # util-linux: run as another user with chosen capabilities
  local modfile="$tree/modules.order" m dep
  : >"$modfile"
  for m in $VM_NET_MODULES -- $VM_IPVS_MODULES; do
    if [ "$m" = "--" ]; then echo "--" >>"$modfile"; continue; fi
    { modprobe -d "$VM_CACHE/root" -S "$KVER" --show-depends "$m" 2>/dev/null || true; } | awk '/^insmod/ {print $2}' |
      while read -r dep; do
        local rel=${dep#"$VM_CACHE/root"}
        if ! grep -qx "$rel" "$modfile"; then
          mkdir -p "$tree$(dirname "$rel")"
          cp "$dep" "$tree$rel"
          echo "$rel" >>"$modfile"
        fi
      done
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$tree/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$tree/etc/group"
  cp -a "$payload" "$tree/payload"
  # The payload's own executables need their shared libraries too.
  local f
  for f in "$payload"/*; do
    if [ -f "$f" ] && head -c 4 "$f" | grep -q 'ELF'; then vm_add_binary "$tree" "$f" "/payload/$(basename "$f")"; fi
  done
  cat >"$tree/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp; mount -t tmpfs run /run
/sbin/ip link set lo up
echo "LVSD-VM-BOOTED kernel=$(uname -r)"
phase=net
while read -r m; do
  if [ "$m" = "--" ]; then
    if [ -x /payload/pre-ipvs ]; then (cd /payload && ./pre-ipvs) || echo "LVSD-VM-PRE-IPVS-FAILED"; fi
    phase=ipvs; continue
  fi
  case $m in */arch/x86/crypto/*) insmod "$m" >/dev/null 2>&1 || true ;; *) insmod "$m" >/dev/null 2>&1 || echo "LVSD-VM: insmod $m failed" ;; esac
done < /modules.order
cd /payload && ./run
echo "LVSD-VM-EXIT=$?"
sync
poweroff -f
EOF
  chmod +x "$tree/init"
  (cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
  rm -rf "$tree"
}

# Boots the kernel with initrd $1; console to stdout (and $2 if given). Returns the payload's exit
# status, or 125 when the VM never reported one (hung, crashed, did not boot).
vm_boot() {
  local initrd=$1 log=${2:-/dev/null} rc errexit=
  local kernel="$VM_CACHE/root/boot/vmlinuz-$KVER"
  # The caller's errexit comes back as it was: tests/run.sh runs without it, and must go on to
  # its summary line whatever a step after the boot returns.
  case $- in *e*) errexit=1 ;; esac
  set +e
  timeout --foreground -k 10 "$VM_TIMEOUT" qemu-system-x86_64 -accel tcg -m "$VM_MEM" -smp 2 -nographic \
    -no-reboot -net none -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 oops=panic" </dev/null 2>&1 |
    tr -d '\r' | tee "$log"
  [ -z "$errexit" ] || set -e
  rc=$(grep -a -o 'LVSD-VM-EXIT=[0-9]*' "$log" | tail -n1 | cut -d= -f2)
  if [ -z "$rc" ]; then
    vm_log "the VM did not report an exit status (no boot, a hang past ${VM_TIMEOUT}s, or a crash)"
    return 125
  fi
  return "$rc"
}

# Prints the paths of the test executables cargo builds for the given cargo arguments.
cargo_test_executables() {
  cargo test --locked --no-run --message-format=json "$@" |
    python3 -c 'import json,sys
for line in sys.stdin:
    try: m=json.loads(line)
    except ValueError: continue
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m.get("profile",{}).get("test"):
        print(m["executable"])'
}
