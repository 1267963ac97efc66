#!/usr/bin/env bash
# Type-check and lint xev for Windows (x86_64-pc-windows-gnu, and -msvc: `cargo check`
# links nothing, so it works without the MSVC toolchain). Nothing can run Windows code
# here, so `cargo check` and `cargo clippy -D warnings` are the proof.
# Prints "SKIPPED: <why>" and exits 0 if the targets cannot be installed.
#
# Uses its own target directory (target/cross-windows) so it never waits on, or
# invalidates, the Linux build.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(x86_64-pc-windows-gnu x86_64-pc-windows-msvc)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/cross-windows"

if ! rustup target add "${TARGETS[@]}" >/tmp/xev-cross-windows-rustup.log 2>&1; then
    echo "SKIPPED: rustup target add failed (offline?): $(tail -1 /tmp/xev-cross-windows-rustup.log)"
    exit 0
fi

start=$(date +%s)
for t in "${TARGETS[@]}"; do
    # Default features too: code only the features use must not be dead without them.
    echo "== $t: cargo clippy -p xev --lib -- -D warnings (default features)"
    cargo clippy -q -p xev --target "$t" --lib -- -D warnings
    echo "== $t: cargo check -p xev --all-features --examples"
    cargo check -q -p xev --target "$t" --all-features --examples
    # The library, its unit tests and the examples (the benches are Linux-only
    # measurement programs: raw io_uring/epoll baselines, sched_setaffinity).
    echo "== $t: cargo clippy -p xev --all-features --lib --tests --examples -- -D warnings"
    cargo clippy -q -p xev --target "$t" --all-features --lib --tests --examples -- -D warnings
    # The docs (links to Unix-only items are allowed to stay plain text there: see the
    # crate attributes in src/lib.rs).
    echo "== $t: cargo doc -p xev --all-features (-D warnings)"
    RUSTDOCFLAGS="-D warnings" cargo doc -q -p xev --no-deps --all-features --target "$t"
done
echo "cross_check_windows: ${TARGETS[*]} OK in $(($(date +%s) - start)) s"
