#!/usr/bin/env bash
# wrk against examples/http_hello (release build, a free loopback port): `wrk -t1 -c50
# -d2s`; fails unless the request rate is above zero, every response is a 2xx, there is
# no read, write or timeout socket error (connect errors are tolerated), and the server
# is still running afterwards. Prints the rate. Without wrk: "SKIPPED: wrk not installed".
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  echo "SKIPPED: wrk not installed"
  exit 0
fi

cargo build --release --example http_hello
dir=$(mktemp -d)
./target/release/examples/http_hello 0 >"$dir/server.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

url=""
for _ in $(seq 100); do
  url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$dir/server.log" || true)
  [ -n "$url" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "http_hello exited before listening:"; cat "$dir/server.log"; exit 1
  fi
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "http_hello did not print its address within 10 s:"; cat "$dir/server.log"; exit 1
fi

wrk -t1 -c50 -d2s "$url" | tee "$dir/wrk.out"

fail() { echo "wrk_http_hello: FAILED: $*"; exit 1; }
rate=$(awk '/^Requests\/sec:/ {print $2}' "$dir/wrk.out")
[ -n "$rate" ] || fail "no Requests/sec line"
awk -v r="$rate" 'BEGIN { exit !(r > 0) }' || fail "request rate $rate"
if grep -q 'Non-2xx or 3xx responses' "$dir/wrk.out"; then
  fail "$(grep 'Non-2xx' "$dir/wrk.out")"
fi
if errs=$(grep 'Socket errors:' "$dir/wrk.out"); then
  # "Socket errors: connect N, read N, write N, timeout N"
  echo "$errs" | grep -Eq 'read 0, write 0, timeout 0' || fail "$errs"
fi
kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log"; fail "http_hello died under load"; }
echo "wrk_http_hello: http_hello served $rate requests/s (wrk -t1 -c50 -d2s)"
