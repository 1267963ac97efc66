//! Soundness review 4: the io_uring backend (accepts, multishot records, zero-copy
//! sends), provided buffers, the stream watcher's write queue and the async watcher.
//! Each test names the bug it pins down.

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend_within, new_loop, os_error};
use xev::{CallbackAction, Completion, Op, OpResult, RunMode};

/// A time limit on an accept queued behind another accept on the same listener (io_uring
/// issues accepts on one listener one at a time) still holds: it used to start only when
/// the accept reached the kernel, so behind an accept without a limit it never expired.
#[test]
fn an_accept_queued_behind_another_still_times_out() {
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = new_loop(b);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let fd = l.as_raw_fd();
        let first: Rc<RefCell<Vec<OpResult>>> = Rc::default();
        let second: Rc<RefCell<Vec<OpResult>>> = Rc::default();
        let mut c1 = pin!(Completion::new());
        let mut c2 = pin!(Completion::new());
        let f = first.clone();
        c1.as_mut().prep(Op::Accept { fd }, move |_, _, r| {
            f.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        lp.add(c1.as_mut());
        let s = second.clone();
        c2.as_mut().prep(Op::Accept { fd }, move |_, _, r| {
            s.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        lp.add_with_timeout(c2.as_mut(), Duration::from_millis(20));
        let start = Instant::now();
        while second.borrow().is_empty() && start.elapsed() < Duration::from_secs(3) {
            lp.run(RunMode::Once).unwrap();
        }
        let got = second.borrow_mut().pop();
        match got {
            Some(r) => assert_eq!(os_error(&r), Some(libc::ETIMEDOUT), "{b:?}: {r:?}"),
            None => panic!("{b:?}: the 20 ms limit did not expire in 3 s"),
        }
        assert!(
            first.borrow().is_empty(),
            "{b:?}: the first accept finished"
        );
        // The first accept still takes a connection.
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let start = Instant::now();
        while first.borrow().is_empty() && start.elapsed() < Duration::from_secs(3) {
            lp.run(RunMode::Once).unwrap();
        }
        assert!(
            matches!(first.borrow().first(), Some(OpResult::Accept(Ok(_)))),
            "{b:?}: {:?}",
            first.borrow()
        );
        let _ = Cell::new(0);
    });
}
