#!/usr/bin/env bash
# Miri, AddressSanitizer + LeakSanitizer and ThreadSanitizer runs (issue #9 item 10).
#
#   .ci/sanitizers.sh [all|setup|miri|asan|tsan]...     (default: all)
#
# Each step prints its time in seconds. A step whose nightly toolchain or component
# cannot be installed prints "SKIPPED: <why>" and the script goes on; a finding (UB,
# a leak, a race, a failing test) fails the script.
#
# By hand, from the repository root (the same commands the steps run):
#
#   rustup toolchain install nightly --profile minimal
#   rustup component add miri rust-src --toolchain nightly
#
#   # Miri: the pure data structures only (nothing that makes a syscall).
#   MIRIFLAGS=-Zmiri-permissive-provenance cargo +nightly miri test -p xev --lib -- \
#     heap:: timer_queue:: queue:: registry:: handoff:: callback:: rt::op_future::
#
#   # ASan + LSan: every behaviour test and the lib's unit tests.
#   RUST_BACKTRACE=0 ASAN_OPTIONS=detect_leaks=1 RUSTFLAGS=-Zsanitizer=address \
#     cargo +nightly test --target x86_64-unknown-linux-gnu --target-dir target/asan \
#     -p xev -p runtime-tests --lib --tests
#
#   # TSan: the cross-thread tests, on a std built with TSan too (-Zbuild-std).
#   export RUST_BACKTRACE=0 RUSTFLAGS=-Zsanitizer=thread
#   T="cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu --target-dir target/tsan"
#   $T -p xev --lib -- thread_pool:: handoff:: park:: event_loop::
#   $T -p runtime-tests --test rt_notify
#   $T -p runtime-tests --test watcher_async
#   $T -p runtime-tests --test rt_pool -- channel sender receiver close_refuses
#   $T -p runtime-tests --test watcher_file
#   $T -p runtime-tests --test pool_handoff
#   $T -p runtime-tests --test rt_tasks -- from_another_thread spawn_blocking many_wakes
#   $T -p runtime-tests --test rt_user_code_and_runtime_moves -- \
#     waker_drops_under_the_lock a_pool_task an_aborted_job
#
# RUST_BACKTRACE=0: symbolising a backtrace of a sanitized binary takes seconds, enough
# to push tests that panic on purpose (thread_pool's panicking job) past their timeouts.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
# A step that hangs must not eat CI's budget: each gets this many seconds.
STEP_LIMIT=${XEV_SANITIZER_STEP_LIMIT:-1500}
export RUST_BACKTRACE=0

have_nightly=false
have_miri=false
have_src=false

setup() {
  local start=$SECONDS
  echo "== sanitizers: setup (nightly toolchain, miri, rust-src)"
  if rustc +nightly --version >/dev/null 2>&1; then
    have_nightly=true
  elif rustup toolchain install nightly --profile minimal >/tmp/xev-rustup.log 2>&1; then
    have_nightly=true
  else
    echo "SKIPPED: the nightly toolchain could not be installed:"
    tail -n 3 /tmp/xev-rustup.log
  fi
  if $have_nightly; then
    rustc +nightly --version
    if ! rustup component add miri rust-src --toolchain nightly >/tmp/xev-rustup.log 2>&1; then
      echo "(rustup component add miri rust-src failed:)"
      tail -n 3 /tmp/xev-rustup.log
    fi
    cargo +nightly miri --version >/dev/null 2>&1 && have_miri=true
    [ -d "$(rustc +nightly --print sysroot)/lib/rustlib/src/rust/library/std" ] && have_src=true
  fi
  echo "== sanitizers: setup took $((SECONDS - start)) s"
}

# Run "$@" with the step limit; say so if it was killed.
limited() {
  local rc=0
  timeout -s KILL "$STEP_LIMIT" "$@" || rc=$?
  if [ "$rc" = 137 ]; then
    echo "KILLED after ${STEP_LIMIT} s: $*"
  fi
  return "$rc"
}

miri() {
  local start=$SECONDS
  echo "== sanitizers: miri (heap, timer queue, intrusive queue, registry, handoff, callback, op-future slot pool, buffers and slices, iovec arrays, scratch cells, completion words, watcher fd lending)"
  if ! $have_miri; then
    echo "SKIPPED: miri: no nightly toolchain with the miri component (see setup above)"
    return 0
  fi
  # The registry's test fabricates addresses it never dereferences (integer-to-pointer
  # casts); permissive provenance accepts those without a warning.
  local filters=(heap:: timer_queue:: queue:: registry:: handoff:: callback:: rt::op_future::
                 rt::buf:: iovec:: scratch:: completion:: watcher::fd::)
  MIRIFLAGS="-Zmiri-permissive-provenance" limited cargo +nightly miri test -p xev --lib \
    --features bytes -- "${filters[@]}"
  echo "== sanitizers: miri took $((SECONDS - start)) s"
}

# The canary must be caught: proves the sanitizer is really on in this toolchain.
canary() {
  local san=$1 src=$2 want=$3
  local bin=target/sanitizer-canary-$san
  mkdir -p target
  local flags=(-Zsanitizer="$san" --target "$TARGET" -g -o "$bin")
  # The canary links the prebuilt (uninstrumented) std; for TSan that is an ABI mismatch
  # rustc refuses unless told, and harmless for a canary that races in its own code.
  [ "$san" = thread ] && flags+=(-Cunsafe-allow-abi-mismatch=sanitizer)
  rustc +nightly "${flags[@]}" "$src"
  if ASAN_OPTIONS=detect_leaks=1 "$bin" >"$bin.out" 2>&1; then
    echo "the $san canary ($src) was not caught: the sanitizer is not active"
    return 1
  fi
  if ! grep -q "$want" "$bin.out"; then
    echo "the $san canary failed without the expected report ($want):"
    tail -n 20 "$bin.out"
    return 1
  fi
  echo "canary caught: $want"
}

asan() {
  local start=$SECONDS
  echo "== sanitizers: AddressSanitizer + LeakSanitizer (behaviour tests and lib unit tests)"
  if ! $have_nightly; then
    echo "SKIPPED: asan: no nightly toolchain (see setup above)"
    return 0
  fi
  canary address .ci/canary/leak.rs "ERROR: LeakSanitizer: detected memory leaks"
  # No -Zbuild-std: with it the same tests found nothing more, and the cold build took
  # 133 s instead of 79 s (measured on the 2-core CI machine).
  # allocator_may_return_null: a fallible reservation (fs::read of a 4 TiB sparse file)
  # must get its OutOfMemory error, not ASan's abort. The storm's RSS bound allows for
  # ASan's quarantine of freed memory.
  XEV_STORM_RSS_SLACK_MIB=1024 ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" \
    RUSTFLAGS="-Zsanitizer=address" \
    limited cargo +nightly test --target "$TARGET" --target-dir target/asan \
    -p xev -p runtime-tests --lib --tests -- \
    --skip huge_fd_is_ebadf_in_a_child_process
  # (That test caps the child's address space, RLIMIT_AS, to catch an abort: ASan's
  # shadow memory cannot live under such a cap. loop_identity's huge-fd test covers the
  # same inputs in-process and runs here.)
  echo "== sanitizers: asan took $((SECONDS - start)) s"
}

tsan() {
  local start=$SECONDS
  echo "== sanitizers: ThreadSanitizer (pool, handoff, notify, cross-thread wakes, wakers dropped after locks)"
  if ! $have_nightly || ! $have_src; then
    echo "SKIPPED: tsan: needs the nightly toolchain with rust-src for -Zbuild-std (see setup above)"
    return 0
  fi
  canary thread .ci/canary/race.rs "WARNING: ThreadSanitizer: data race"
  local t=(cargo +nightly test -Zbuild-std --target "$TARGET" --target-dir target/tsan)
  export RUSTFLAGS="-Zsanitizer=thread"
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
  limited "${t[@]}" -p xev --lib -- thread_pool:: handoff:: park:: event_loop::
  for test in rt_notify watcher_async watcher_file pool_handoff; do
    limited "${t[@]}" -p runtime-tests --test "$test"
  done
  limited "${t[@]}" -p runtime-tests --test rt_tasks -- \
    from_another_thread spawn_blocking many_wakes
  # The channels' cross-thread wake-ups (the bounded ring's fences among them).
  limited "${t[@]}" -p runtime-tests --test rt_pool -- channel sender receiver close_refuses
  # Pool workers surviving panicking destructors, wakers dropped after the channels'
  # locks (with backtraces on, the first two time out: see RUST_BACKTRACE above).
  limited "${t[@]}" -p runtime-tests --test rt_user_code_and_runtime_moves -- \
    waker_drops_under_the_lock a_pool_task an_aborted_job
  unset RUSTFLAGS TSAN_OPTIONS
  echo "== sanitizers: tsan took $((SECONDS - start)) s"
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
[ "${steps[0]}" = all ] && steps=(miri asan tsan)
setup
for s in "${steps[@]}"; do
  case "$s" in
    setup) ;;
    miri | asan | tsan) "$s" ;;
    *)
      echo "unknown step $s (all|setup|miri|asan|tsan)"
      exit 2
      ;;
  esac
done
