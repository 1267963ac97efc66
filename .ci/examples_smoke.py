#!/usr/bin/env python3
"""Run the examples README.md names under "Watchers" and check what they promise.

- echo_callbacks and echo (both backends): listen, echo what two clients send (one of
  them in two pieces), and exit 0 after `--count 2` connections.
- process_wait: reports `sh -c "exit 42"` as exit code 42, and a child killed by
  SIGKILL as killed by signal 9.
- million_timers (100,000 timers, both backends): every timer fires (the example
  asserts it) and it exits 0.
- mixed: the task sees the callback timer's ticks and exits 0.

Expects release builds of the examples (`cargo build --release --examples`); any failure
exits 1 with the example's output.
"""
import re
import socket
import subprocess
import sys
import time

BIN = "target/release/examples/"


def fail(what, out=""):
    print(f"FAILED: {what}\n{out}")
    sys.exit(1)


def run(args, timeout=60):
    p = subprocess.run([BIN + args[0]] + args[1:], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def echo_server(example, backend):
    p = subprocess.Popen(
        [BIN + example, "0", "--count", "2", "--backend", backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = p.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not m:
            fail(f"{example} {backend}: no address in its first line", line)
        port = int(m.group(1))
        for pieces in ([b"hello\n"], [b"two ", b"pieces\n"]):
            want = b"".join(pieces)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                for piece in pieces:
                    s.sendall(piece)
                    time.sleep(0.05)
                got = b""
                while len(got) < len(want):
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    got += chunk
                if got != want:
                    fail(f"{example} {backend}: echoed {got!r} for {want!r}")
        out, _ = p.communicate(timeout=10)
    except Exception as e:  # a hang or a refused connection
        p.kill()
        fail(f"{example} {backend}: {e}", p.stdout.read() if p.stdout else "")
    if p.returncode != 0:
        fail(f"{example} {backend}: exit {p.returncode}", line + out)
    print(f"{example} {backend}: 2 connections echoed, exit 0")


for example in ("echo_callbacks", "echo"):
    for backend in ("io_uring", "epoll"):
        echo_server(example, backend)

rc, out = run(["process_wait"])
if rc != 0 or "exited with code 42" not in out:
    fail(f"process_wait: exit {rc}", out)
rc, out = run(["process_wait", "sh", "-c", "kill -9 $$"])
if rc != 0 or "killed by signal 9" not in out:
    fail(f"process_wait (SIGKILL): exit {rc}", out)
print("process_wait: exit code 42 and signal 9 reported")

for backend in ("io_uring", "epoll"):
    rc, out = run(["million_timers", "100000", backend])
    if rc != 0 or "timers:  100000" not in out:
        fail(f"million_timers {backend}: exit {rc}", out)
    print(f"million_timers {backend}: 100000 timers fired, exit 0")

rc, out = run(["mixed"])
m = re.search(r"callback ticks seen by the task: \[(.*)\]", out)
if rc != 0 or not m or not m.group(1).strip():
    fail(f"mixed: exit {rc}", out)
print(f"mixed: ticks seen [{m.group(1)}], exit 0")
