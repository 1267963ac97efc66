//! io_uring extras (issue 12, item 3): the SQPOLL knob, linked timeouts and zero-copy
//! sends. Each feature's semantics and errors on io_uring, and the same API on the poll
//! backend (where it falls back).

use std::time::Duration;

use xev::net::{TcpListener, TcpStream};
use xev::rt::Builder;
use xev::Backend;

/// Echo `rounds` messages of `size` bytes over one loopback connection on `rt`.
fn echo(rt: &xev::rt::Runtime, rounds: usize, size: usize) {
    rt.block_on(async move {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = xev::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; size];
            loop {
                let (r, b) = s.read(buf).await;
                buf = b;
                let n = r.unwrap();
                if n == 0 {
                    return;
                }
                let (r, b) = s.write_all(buf[..n].to_vec()).await;
                r.unwrap();
                drop(b);
            }
        });
        let c = TcpStream::connect(addr).await.unwrap();
        for i in 0..rounds {
            let msg = vec![(i % 251) as u8; size];
            let (r, _) = c.write_all(msg.clone()).await;
            r.unwrap();
            let (r, back) = c.read_exact(vec![0u8; size]).await;
            r.unwrap();
            assert_eq!(back, msg, "round {i}");
        }
        drop(c);
        server.await.unwrap();
    });
}

/// `Options::sqpoll` / `Builder::sqpoll`: on io_uring the ring gets a polling thread
/// (this kernel allows it unprivileged) and the echo test runs on it; on the poll
/// backend the knob is ignored and the same program runs.
#[test]
fn sqpoll_loop_runs_the_echo_test() {
    for b in Backend::available() {
        let rt = Builder::new()
            .backend(b)
            .sqpoll(Duration::from_millis(20))
            .build()
            .unwrap();
        let on = rt.block_on(async { xev::rt::with_loop(|lp| lp.uses_sqpoll()) });
        assert_eq!(on, b == Backend::IoUring, "{b:?}");
        echo(&rt, 200, 64);
        // Idle longer than the thread's idle time: it sleeps, and the next submission
        // must wake it.
        std::thread::sleep(Duration::from_millis(60));
        echo(&rt, 20, 4096);
    }
}

/// A loop without the knob has no polling thread.
#[test]
fn no_sqpoll_by_default() {
    for b in Backend::available() {
        let lp = xev::Loop::new(xev::Options {
            backend: Some(b),
            ..Default::default()
        })
        .unwrap();
        assert!(!lp.uses_sqpoll());
    }
}
