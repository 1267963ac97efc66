use std::cell::Cell;
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;

use runtime_tests::{each_backend, new_loop};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

#[test]
fn timer_and_recv() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let fired = Rc::new(Cell::new(0));
        let mut t = pin!(Completion::new());
        let f = fired.clone();
        lp.timer(t.as_mut(), 5, move |_, _, r| {
            assert!(matches!(r, OpResult::Timer(TimerTrigger::Expiration)));
            f.set(f.get() + 1);
            CallbackAction::Disarm
        });
        let (a, bsock) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        bsock.set_nonblocking(true).unwrap();
        let mut r = pin!(Completion::new());
        let got = Rc::new(Cell::new(0));
        let g = got.clone();
        lp.start(
            r.as_mut(),
            Op::Recv {
                fd: a.as_raw_fd(),
                buf: Buffer::inline(16),
            },
            move |_, c, res| {
                let OpResult::Recv(Ok(n)) = res else {
                    panic!("{res:?}")
                };
                assert_eq!(&c.buffer().unwrap().as_slice()[..n], b"hi");
                g.set(n);
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        (&bsock).write_all(b"hi").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(fired.get(), 1);
        assert_eq!(got.get(), 2);
        let _ = TcpListener::bind("127.0.0.1:0");
    });
}
