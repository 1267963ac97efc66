//! `RunMode::NoWait` must deliver results that are ready without ever blocking.

use std::cell::Cell;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend, new_loop};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

#[test]
fn nowait_delivers_ready_io_without_blocking() {
    each_backend(|b| {
        let (a, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let got = Rc::new(Cell::new(0usize));
        let mut c = pin!(Completion::new());
        let mut long = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.timer(long.as_mut(), 60_000, |_, _, _| CallbackAction::Disarm);
        let g = got.clone();
        lp.start(
            c.as_mut(),
            Op::Recv {
                fd: a.as_raw_fd(),
                buf: Buffer::inline(8),
            },
            move |_, _, r| {
                let OpResult::Recv(Ok(n)) = r else {
                    panic!("{r:?}")
                };
                g.set(g.get() + n);
                CallbackAction::Disarm
            },
        );
        let start = Instant::now();
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(got.get(), 0, "nothing to receive yet");
        (&peer).write_all(b"abc").unwrap();
        // The result must show up through non-blocking ticks alone.
        for _ in 0..1000 {
            lp.run(RunMode::NoWait).unwrap();
            if got.get() > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got.get(), 3, "NoWait ticks never delivered the recv");
        assert!(start.elapsed() < Duration::from_secs(5), "NoWait blocked");
        assert_eq!(long.state(), CompletionState::Active);
        lp.shutdown();
        assert_eq!(long.state(), CompletionState::Dead);
    });
}
