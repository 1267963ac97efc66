//! A TLS echo server and client on xev: tokio-rustls over `xev::compat::Compat` (tokio's
//! I/O traits), with a self-signed certificate for `localhost` made at start by rcgen.
//!
//! Try it:
//!
//! ```text
//! # Both ends in one process: echo, verify, exit 0 (what CI runs).
//! cargo run --example tls_echo --features tokio-io -- --self-test
//!
//! # A server; it writes its certificate to /tmp/xev-tls-echo.pem for clients to trust.
//! cargo run --example tls_echo --features tokio-io -- server 8443
//! # A client: sends each word, prints the echo.
//! cargo run --example tls_echo --features tokio-io -- client 8443 /tmp/xev-tls-echo.pem hello world
//! # Or talk to the server by hand:
//! openssl s_client -connect 127.0.0.1:8443 -CAfile /tmp/xev-tls-echo.pem -quiet
//! ```

//!
//! Linux only in this repository's checks: its TLS stack (rustls over `ring`) needs a C
//! compiler for the target, which the macOS/FreeBSD cross checks do not have, so the
//! TLS dev-dependencies are Linux-only. xev's `tokio-io` feature itself builds everywhere.

#[cfg(target_os = "linux")]
mod app;

#[cfg(target_os = "linux")]
fn main() -> std::io::Result<()> {
    app::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("tls_echo: built only on Linux (its rustls/ring dev-dependencies are Linux-only)");
    std::process::exit(2);
}
