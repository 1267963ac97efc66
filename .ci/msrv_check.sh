#!/usr/bin/env bash
# Check that Cargo.toml's `rust-version` is true: the library builds with exactly that
# toolchain, with its default features and the features whose dependencies support it
# (`bytes`, `futures-io`). `tokio-io` and `hyper` follow tokio's and hyper's own minimum
# (tokio 1.54 needs rustc 1.85), as README.md says.
# Prints "SKIPPED: <why>" and exits 0 if the toolchain cannot be installed.
#
# Uses its own target directory (target/msrv) so it never invalidates the main build.
set -euo pipefail
cd "$(dirname "$0")/.."

msrv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
if [ -z "$msrv" ]; then
    echo "msrv_check: no rust-version in Cargo.toml" >&2
    exit 1
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/msrv"

if ! rustup toolchain install "$msrv" --profile minimal >/tmp/xev-msrv-rustup.log 2>&1; then
    echo "SKIPPED: rustup toolchain install $msrv failed (offline?): $(tail -1 /tmp/xev-msrv-rustup.log)"
    exit 0
fi

echo "== rustc $msrv: cargo check -p xev --lib"
cargo "+$msrv" check -q -p xev --lib
echo "== rustc $msrv: cargo check -p xev --lib --features bytes,futures-io"
cargo "+$msrv" check -q -p xev --lib --features bytes,futures-io
