#!/usr/bin/env bash
# Builds the static lvsd binary (glibc, crt-static) and the FROM-scratch image. Needs a Docker
# (or Podman: DOCKER=podman) engine for the second step; the first works anywhere Rust does.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --release -p lvsd --target "$target"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "target/$target/release/lvsd" deploy/container/Dockerfile "$ctx/"
"${DOCKER:-docker}" build -t "${IMAGE:-lvsd:latest}" "$ctx"
