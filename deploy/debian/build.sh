#!/usr/bin/env bash
# Builds the Debian package: target/debian/lvsd_<version>-1_amd64.deb (the path is printed last).
# Generates what the package holds besides the binary into target/release/deb/ (the man page,
# the completions, the unit with /usr/bin paths, the Debian changelog), then runs `cargo deb`
# with the metadata in crates/lvsd/Cargo.toml. Extra arguments go to `cargo deb` (e.g.
# `--deb-revision 2`, `--output DIR`). Needs dpkg-dev (dpkg-shlibdeps) and cargo-deb
# (`cargo install cargo-deb --locked`).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cargo-deb >/dev/null || { echo "cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 1; }

cargo build --release --locked -p lvsd
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/lvsd
gen=$target/release/deb
rm -rf "$gen"
mkdir -p "$gen"

# The main page and one per command (the main page refers to them as lvsd-apply(1) and so on).
"$bin" man --dir "$gen/man"
gzip -9n "$gen"/man/*.1
"$bin" completions bash >"$gen/lvsd.bash"
"$bin" completions zsh >"$gen/_lvsd"
"$bin" completions fish >"$gen/lvsd.fish"

# The unit as deploy/systemd ships it, for the package's paths: the binary in /usr/bin, the
# user from sysusers.d, the modules from /usr/lib/modules-load.d/lvsd.conf. Only the header
# comment (the manual installation's steps) and the binary's path differ.
{
  echo "# lvsd as a systemd service, as the lvsd package installs it: the lvsd user (sysusers.d) holding"
  echo "# only CAP_NET_ADMIN; ip_vs and the schedulers load at boot from /usr/lib/modules-load.d/lvsd.conf."
  echo "# Change it with \`systemctl edit lvsd\` (a drop-in in /etc), not here: an upgrade replaces this file."
  sed -n '/^\[Unit\]/,$p' deploy/systemd/lvsd.service | sed 's|/usr/local/bin/lvsd|/usr/bin/lvsd|g'
} >"$gen/lvsd.service"
if grep -q /usr/local "$gen/lvsd.service"; then
  echo "the packaged unit still names /usr/local" >&2; exit 1
fi
{
  echo "# /usr/lib/modules-load.d/lvsd.conf, from the lvsd package. To change it, copy it to"
  echo "# /etc/modules-load.d/lvsd.conf and edit that copy (it takes the place of this file)."
  sed '1s|^# /etc/modules-load.d/ip_vs.conf: |# |' deploy/systemd/ip_vs.conf
} >"$gen/modules-load.conf"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
revision=1
for arg in "$@"; do case $arg in --deb-revision=*) revision=${arg#*=} ;; esac; done
prev=
for arg in "$@"; do [ "$prev" = --deb-revision ] && revision=$arg; prev=$arg; done
# Dated by the last commit (the changelog entry and every file's time, through cargo deb's
# SOURCE_DATE_EPOCH), so that two builds of one commit are the same package.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
when=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
cat >"$gen/changelog.Debian" <<CHANGELOG
lvsd ($version-$revision) unstable; urgency=medium

  * Built from the lvsd sources at version $version. What changed is in
    /usr/share/doc/lvsd/changelog.gz (CHANGELOG.md).

 -- lvsd maintainers <lvsd@example.invalid>  $when
CHANGELOG
gzip -9n "$gen/changelog.Debian"
gzip -9nc README.md >"$gen/README.md.gz"
gzip -9nc SECURITY.md >"$gen/SECURITY.md.gz"

cargo deb -p lvsd --no-build --locked "$@"
