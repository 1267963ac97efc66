#!/usr/bin/env bash
# Type-check and lint xev for the kqueue platforms (macOS x86_64/aarch64, FreeBSD x86_64):
# nothing can run them here, so `cargo check` and `cargo clippy -D warnings` are the proof.
# Prints "SKIPPED: <why>" and exits 0 if the targets cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd)

if ! rustup target add "${TARGETS[@]}" >/tmp/xev-cross-rustup.log 2>&1; then
    echo "SKIPPED: rustup target add failed (offline?): $(tail -1 /tmp/xev-cross-rustup.log)"
    exit 0
fi

start=$(date +%s)
for t in "${TARGETS[@]}"; do
    echo "== $t: cargo check -p xev"
    cargo check -q -p xev --target "$t"
    echo "== $t: cargo check -p xev --all-features --examples"
    cargo check -q -p xev --target "$t" --all-features --examples
    # Every target but the benches (Linux-only measurement programs: raw io_uring/epoll
    # baselines, sched_setaffinity): the library, its unit tests, the examples.
    echo "== $t: cargo clippy -p xev --all-features --lib --tests --examples -- -D warnings"
    cargo clippy -q -p xev --target "$t" --all-features --lib --tests --examples -- -D warnings
    echo "== $t: cargo doc -p xev --all-features (-D warnings)"
    RUSTDOCFLAGS="-D warnings" cargo doc -q -p xev --no-deps --target "$t" --all-features
done
echo "cross_check: ${TARGETS[*]} OK in $(($(date +%s) - start)) s"
