//! A Unix-domain echo server written with xev's async API: one task per connection,
//! owned buffers handed back by every read and write.
//!
//! ```text
//! cargo run --release --example unix_echo [PATH]            # serve until Ctrl-C
//! cargo run --release --example unix_echo -- --client PATH  # stdin lines -> server -> stdout
//! cargo run --release --example unix_echo -- --self-test    # server + 8 clients, then exit 0
//! ```
//!
//! Any mode takes `--backend io_uring|epoll` to pick the loop's backend.
//!
//! The server listens on the socket file `PATH` (default `/tmp/xev-unix-echo.sock`; a
//! stale socket file left by an earlier run is removed first, any other file is left
//! alone and reported). On Linux, a `PATH` starting with `@` is an abstract name instead
//! (`@xev-echo`): no file at all. Try it with `socat - UNIX-CONNECT:/tmp/xev-unix-echo.sock`
//! (or `socat - ABSTRACT-CONNECT:xev-echo`), or with the built-in client mode above.
//!
//! `--self-test` starts the server on a fresh path in the temporary directory, runs 8
//! concurrent clients that each send 256 KiB and check the echo byte for byte, then an
//! abstract-name round on Linux, and exits 0 (1 on any error): that is what CI runs.
//!
//! Unix only: Windows has no Unix-domain sockets in xev (`xev::net::UnixStream` and
//! friends are `#[cfg(unix)]`).

#[cfg(unix)]
mod app;

#[cfg(unix)]
fn main() {
    app::main()
}

#[cfg(not(unix))]
fn main() {
    eprintln!("unix_echo: Unix only (xev has no Unix-domain sockets on this platform)");
    std::process::exit(2);
}
