//! A TCP echo server written with xev's async API: one task per connection, owned
//! buffers handed back by every read and write.
//!
//! ```text
//! cargo run --release --example echo -- [port] [--count N] [--backend io_uring|epoll]
//! ```
//!
//! It listens on 127.0.0.1:`port` (default 0: any free port; the bound address is
//! printed) until Ctrl-C, or until `--count N` connections have been served and closed.
//! Try it with `nc 127.0.0.1 PORT`. Compare with `echo_callbacks.rs`, the same server
//! written with completions and callbacks.
//!
//! When accepting fails for lack of descriptors (`EMFILE`, `ENFILE`) or memory, the
//! server pauses accepting until a connection closes or 50 ms pass (accepting again at
//! once would fail again at once, in a busy loop); the connections it has keep being
//! served, and the waiting clients stay in the listen backlog. Other accept errors
//! concern one connection and are only logged.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use xev::net::{TcpListener, TcpStream};
use xev::notify::Notify;
use xev::rt::IoBuf;
use xev::Backend;

/// How long accepting pauses after running out of descriptors (unless a connection
/// closes first).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Whether an accept error means "out of descriptors or memory": pause accepting.
fn out_of_resources(e: &std::io::Error) -> bool {
    xev::fd::is_out_of_descriptors(e)
}

/// Echo until the peer closes; the same 16 KiB buffer goes back and forth.
async fn serve(stream: TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let (res, b) = stream.read(buf).await;
        let n = res?;
        if n == 0 {
            return Ok(total);
        }
        // Write back exactly what arrived: a slice of the same buffer (no copy, no
        // allocation), then take the whole buffer back for the next read.
        let (res, b) = stream.write_all(b.slice(..n)).await;
        res?;
        total += n as u64;
        buf = b.into_inner();
    }
}

struct Args {
    port: u16,
    count: Option<u64>,
    backend: Option<Backend>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        count: None,
        backend: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--count" => {
                let n = it.next().ok_or("--count needs a number")?;
                args.count = Some(n.parse().map_err(|e| format!("--count {n}: {e}"))?);
            }
            "--backend" => {
                let name = it.next().ok_or("--backend needs a name")?;
                let b = Backend::candidates()
                    .iter()
                    .copied()
                    .find(|b| b.name() == name)
                    .ok_or(format!("unknown backend {name:?}"))?;
                args.backend = Some(b);
            }
            p => args.port = p.parse().map_err(|e| format!("port {p:?}: {e}"))?,
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let mut builder = xev::rt::Builder::new();
    if let Some(b) = args.backend {
        builder = builder.backend(b);
    }
    let rt = builder.build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", args.port))?;
        println!(
            "echo: listening on {} ({}); Ctrl-C to stop",
            listener.local_addr()?,
            rt_backend_name()
        );
        let served = Rc::new(Cell::new(0u64));
        // Notified whenever a connection closes (and frees its descriptor).
        let closed = Notify::new();
        let mut starved = false;
        let ctrl_c = xev::spawn(xev::signal::ctrl_c());
        loop {
            if ctrl_c.is_finished() || args.count.is_some_and(|n| served.get() >= n) {
                break;
            }
            // Wait for a connection, but wake up now and then to check the stop conditions.
            let accepted = xev::time::timeout(Duration::from_millis(100), listener.accept()).await;
            let Ok(accepted) = accepted else { continue };
            let (stream, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) if out_of_resources(&e) => {
                    if !starved {
                        println!("echo: accept: {e}; pausing accepts");
                        starved = true;
                    }
                    let _ = xev::time::timeout(ACCEPT_BACKOFF, closed.notified()).await;
                    continue;
                }
                Err(e) => {
                    // About that one connection (e.g. ECONNABORTED): go on.
                    eprintln!("echo: accept: {e}");
                    continue;
                }
            };
            if starved {
                println!("echo: accepting again");
                starved = false;
            }
            let served = served.clone();
            let closed = closed.clone();
            xev::spawn(async move {
                match serve(stream).await {
                    Ok(bytes) => println!("echo: {peer} done after {bytes} bytes"),
                    Err(e) => println!("echo: {peer}: {e}"),
                }
                served.set(served.get() + 1);
                closed.notify();
            });
        }
        println!("echo: served {} connection(s)", served.get());
        Ok(())
    })
}

/// The backend of the runtime this task runs on.
fn rt_backend_name() -> &'static str {
    xev::rt::with_loop(|lp| lp.backend().name())
}
