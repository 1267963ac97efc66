#!/usr/bin/env bash
# Type-check and lint xev for the kqueue platforms (macOS x86_64/aarch64, FreeBSD x86_64,
# and NetBSD x86_64 when its std installs; OpenBSD is tier 3 and skipped):
# nothing can run them here, so `cargo check` and `cargo clippy -D warnings` are the proof.
# Prints "SKIPPED: <why>" and exits 0 if the targets cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd)

if ! rustup target add "${TARGETS[@]}" >/tmp/xev-cross-rustup.log 2>&1; then
    echo "SKIPPED: rustup target add failed (offline?): $(tail -1 /tmp/xev-cross-rustup.log)"
    exit 0
fi

# NetBSD (tier 2, std prebuilt): checked when its std can be installed, else skipped.
for t in x86_64-unknown-netbsd; do
    if rustup target add "$t" >/tmp/xev-cross-rustup-"$t".log 2>&1; then
        TARGETS+=("$t")
    else
        echo "SKIPPED: $t: rustup target add failed: $(tail -1 /tmp/xev-cross-rustup-"$t".log)"
    fi
done
# OpenBSD is tier 3: rustup has no prebuilt std for it (it needs a nightly -Zbuild-std).
echo "SKIPPED: x86_64-unknown-openbsd: tier 3, no prebuilt std to install with rustup"

start=$(date +%s)
for t in "${TARGETS[@]}"; do
    # Default features too: code only the features use must not be dead without them.
    echo "== $t: cargo clippy -p xev --lib -- -D warnings (default features)"
    cargo clippy -q -p xev --target "$t" --lib -- -D warnings
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
