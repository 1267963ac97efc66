//! The Stream watcher over pipes: read, write, poll, close, and the WriteQueue (order,
//! partial writes continued, rearm, errors, cancel, dropping the handle mid-flight).

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend, new_loop};
use xev::watcher::stream::{Stream, WriteQueue};
use xev::{Buffer, CallbackAction, Completion, Error, Loop, PollEvents, ReadError, RunMode};

type Log<T> = Rc<RefCell<Vec<T>>>;

fn log<T>() -> Log<T> {
    Rc::new(RefCell::new(Vec::new()))
}

/// Keep reading `rx` with `c` (rearming) until EOF, appending to `into`.
fn read_to_eof(lp: &mut Loop, c: std::pin::Pin<&mut Completion>, rx: &Stream, into: &Log<u8>) {
    rx.read(
        lp,
        c,
        Buffer::from(vec![0; 64 * 1024]),
        into.clone(),
        |into, _, c, r| match r {
            Ok(n) => {
                into.borrow_mut()
                    .extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
                CallbackAction::Rearm
            }
            Err(ReadError::Eof) => CallbackAction::Disarm,
            Err(e) => panic!("read: {e}"),
        },
    );
}

#[test]
fn pipe_read_write_poll_close() {
    each_backend(|b| {
        let polled: Log<PollEvents> = log();
        let got: Log<u8> = log();
        let wrote: Log<usize> = log();
        let closed: Log<bool> = log();
        let (mut p, mut r, mut w) = (
            pin!(Completion::new()),
            pin!(Completion::new()),
            pin!(Completion::new()),
        );
        let mut lp = new_loop(b);
        let (rx, tx) = Stream::pipe().unwrap();

        // A poll for input waits until the writer writes.
        let pl = polled.clone();
        rx.poll(
            &mut lp,
            p.as_mut(),
            PollEvents::IN,
            (),
            move |_, _, _, r| {
                pl.borrow_mut().push(r.expect("poll"));
                CallbackAction::Disarm
            },
        );
        for _ in 0..3 {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert!(polled.borrow().is_empty(), "poll fired on an empty pipe");
        let wr = wrote.clone();
        tx.write(
            &mut lp,
            w.as_mut(),
            Buffer::copy_from(b"abc"),
            wr,
            |wr, _, _, r| {
                wr.borrow_mut().push(r.expect("write"));
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*wrote.borrow(), [3]);
        assert!(
            polled.borrow()[0].contains(PollEvents::IN),
            "{:?}",
            polled.borrow()
        );
        // The write end is writable at once.
        let pl = polled.clone();
        tx.poll(
            &mut lp,
            p.as_mut(),
            PollEvents::OUT,
            (),
            move |_, _, _, r| {
                pl.borrow_mut().push(r.expect("poll"));
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(polled.borrow()[1].contains(PollEvents::OUT));

        // The read gets the bytes; the buffer is read inside the callback.
        let g = got.clone();
        rx.read(
            &mut lp,
            r.as_mut(),
            Buffer::inline(16),
            (),
            move |_, _, c, res| {
                let n = res.expect("read");
                g.borrow_mut()
                    .extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*got.borrow(), b"abc");

        // Closing the write end through the loop: the reader sees EOF.
        let eof: Log<bool> = log();
        let e = eof.clone();
        rx.read(
            &mut lp,
            r.as_mut(),
            Buffer::inline(16),
            (),
            move |_, _, _, res| {
                e.borrow_mut().push(matches!(res, Err(ReadError::Eof)));
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        let cl = closed.clone();
        tx.close(&mut lp, w.as_mut(), (), move |_, _, _, r| {
            cl.borrow_mut().push(r.is_ok());
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*closed.borrow(), [true]);
        assert_eq!(*eof.borrow(), [true], "read after the writer closed");

        // Closing with a read pending cancels the read first.
        let canceled: Log<bool> = log();
        let cn = canceled.clone();
        let (rx2, _tx2) = Stream::pipe().unwrap();
        rx2.read(
            &mut lp,
            r.as_mut(),
            Buffer::inline(4),
            (),
            move |_, _, _, res| {
                cn.borrow_mut()
                    .push(matches!(res, Err(ReadError::Canceled)));
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        let cl = closed.clone();
        rx2.close(&mut lp, w.as_mut(), (), move |_, _, _, r| {
            cl.borrow_mut().push(r.is_ok());
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*canceled.borrow(), [true]);
        assert_eq!(*closed.borrow(), [true, true]);
        drop(rx);
    });
}

#[test]
fn eof_right_behind_the_last_bytes_is_seen() {
    // The last bytes and the writer's close arrive in one readiness report: the short
    // read of those bytes must not hide the EOF behind them (poll backend regression).
    each_backend(|b| {
        let seen: Log<String> = log();
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (rx, tx) = Stream::pipe().unwrap();
        let s = seen.clone();
        rx.read(
            &mut lp,
            r.as_mut(),
            Buffer::from(vec![0; 4096]),
            (),
            move |_, _, _, res| {
                s.borrow_mut().push(format!("{res:?}"));
                match res {
                    Ok(_) => CallbackAction::Rearm,
                    Err(_) => CallbackAction::Disarm,
                }
            },
        );
        lp.run(RunMode::NoWait).unwrap(); // the read is parked, the fd registered
        std::fs::File::from(OwnedFd::from(tx))
            .write_all(b"tail")
            .unwrap(); // ... and closed
        let deadline = Instant::now() + Duration::from_secs(2);
        while r.state() == xev::CompletionState::Active && Instant::now() < deadline {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert_eq!(*seen.borrow(), ["Ok(4)", "Err(Eof)"]);
    });
}

#[test]
fn write_queue_keeps_order_and_completes_partial_writes() {
    // A pipe holds 64 KiB, so the 300 KiB request is written in many partial writes.
    each_backend(|b| {
        let sizes = [5usize, 300 * 1024, 1, 70_000, 32, 0, 4096];
        let mut expected = Vec::new();
        let reported: Log<(usize, usize)> = log();
        let got: Log<u8> = log();
        let mut r = pin!(Completion::new());
        let q = WriteQueue::new();
        let mut lp = new_loop(b);
        let (rx, tx) = Stream::pipe().unwrap();
        // The last callback drops the write end, so the reader then sees EOF.
        let tx = Rc::new(RefCell::new(Some(tx)));
        for (i, &n) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..n).map(|j| (i * 31 + j * 7) as u8).collect();
            expected.extend_from_slice(&data);
            let ud = (reported.clone(), tx.clone(), i, n);
            let slot = tx.borrow();
            let w = slot.as_ref().unwrap();
            w.queue_write(
                &mut lp,
                &q,
                Buffer::from(data),
                ud,
                |(rep, tx, i, n), _, buf, r| {
                    rep.borrow_mut().push((*i, r.expect("queued write")));
                    assert_eq!(buf.len(), *n, "the buffer comes back whole");
                    if *i == 6 {
                        tx.borrow_mut().take();
                    }
                    CallbackAction::Disarm
                },
            );
        }
        assert_eq!(q.len(), sizes.len());
        read_to_eof(&mut lp, r.as_mut(), &rx, &got);
        let start = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        let want: Vec<(usize, usize)> = sizes.iter().copied().enumerate().collect();
        assert_eq!(
            *reported.borrow(),
            want,
            "callbacks in order, each with its full length"
        );
        assert!(
            *got.borrow() == expected,
            "the reader got every byte in order"
        );
        assert!(q.is_empty());
    });
}

#[test]
fn write_queue_rearm_requeues_the_refilled_buffer() {
    each_backend(|b| {
        let reported: Log<usize> = log();
        let q = WriteQueue::new();
        let mut lp = new_loop(b);
        let (rx, tx) = Stream::pipe().unwrap();
        let rep = reported.clone();
        tx.queue_write(
            &mut lp,
            &q,
            Buffer::copy_from(b"a1"),
            0u32,
            move |round, _, buf, r| {
                rep.borrow_mut().push(r.unwrap());
                assert_eq!(
                    buf.as_slice()[0],
                    b'a' + *round as u8,
                    "rewound to its start"
                );
                *round += 1;
                if *round == 3 {
                    return CallbackAction::Disarm;
                }
                buf.as_mut_slice()
                    .copy_from_slice(&[b'a' + *round as u8, b'1' + *round as u8]);
                CallbackAction::Rearm
            },
        );
        // Queued after the first request: goes out after it, before its rearms.
        tx.queue_write(&mut lp, &q, Buffer::copy_from(b"--"), (), |_, _, _, r| {
            r.unwrap();
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*reported.borrow(), [2, 2, 2]);
        drop(tx);
        let mut out = String::new();
        std::fs::File::from(OwnedFd::from(rx))
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "a1--b2c3");
    });
}

#[test]
fn write_queue_error_fails_the_requests_behind_it() {
    each_backend(|b| {
        let results: Log<Result<usize, String>> = log();
        let q = WriteQueue::new();
        let mut lp = new_loop(b);
        let (rx, tx) = Stream::pipe().unwrap();
        drop(rx); // writes now fail with EPIPE
        for part in [&b"x"[..], b"y", b"z"] {
            let res = results.clone();
            tx.queue_write(
                &mut lp,
                &q,
                Buffer::copy_from(part),
                (),
                move |_, _, _, r| {
                    res.borrow_mut().push(match r {
                        Ok(n) => Ok(n),
                        Err(Error::Canceled) => Err("canceled".into()),
                        Err(Error::Io(e)) => Err(format!("io {:?}", e.raw_os_error())),
                    });
                    CallbackAction::Disarm
                },
            );
        }
        lp.run(RunMode::UntilDone).unwrap();
        let epipe = format!("io {:?}", Some(libc::EPIPE));
        assert_eq!(
            *results.borrow(),
            [Err(epipe), Err("canceled".into()), Err("canceled".into())]
        );
        // The queue still works afterwards (on another pipe).
        let (rx, tx) = Stream::pipe().unwrap();
        let res = results.clone();
        tx.queue_write(
            &mut lp,
            &q,
            Buffer::copy_from(b"ok"),
            (),
            move |_, _, _, r| {
                res.borrow_mut().push(r.map_err(|e| e.to_string()));
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(results.borrow()[3], Ok(2));
        drop(rx);
    });
}

#[test]
fn write_queue_cancel_cancels_the_write_in_flight_and_those_behind() {
    each_backend(|b| {
        let results: Log<String> = log();
        let mut cc = pin!(Completion::new());
        let q = WriteQueue::new();
        let mut lp = new_loop(b);
        let (rx, tx) = Stream::pipe().unwrap();
        // 1 MiB cannot fit in a pipe nobody reads: the first request stays in flight.
        for n in [1usize << 20, 10] {
            let res = results.clone();
            tx.queue_write(
                &mut lp,
                &q,
                Buffer::from(vec![7; n]),
                (),
                move |_, _, _, r| {
                    res.borrow_mut().push(format!("{r:?}"));
                    CallbackAction::Disarm
                },
            );
        }
        for _ in 0..3 {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert!(results.borrow().is_empty());
        let res = results.clone();
        q.cancel(&mut lp, cc.as_mut(), (), move |_, _, _, r| {
            res.borrow_mut().push(format!("cancel {r:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let mut got = results.borrow().clone();
        got.sort();
        assert_eq!(got, ["Err(Canceled)", "Err(Canceled)", "cancel Ok(())"]);
        // Nothing in flight now: NotFound.
        let res = results.clone();
        q.cancel(&mut lp, cc.as_mut(), (), move |_, _, _, r| {
            res.borrow_mut().push(format!("cancel {r:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(results.borrow().last().unwrap(), "cancel Err(NotFound)");
        drop(rx);
    });
}

#[test]
fn dropping_the_queue_mid_flight_finishes_the_writes_and_frees_it() {
    each_backend(|b| {
        let token = Rc::new(());
        let done: Log<usize> = log();
        let got: Log<u8> = log();
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (rx, tx) = Stream::pipe().unwrap();
        {
            let q = WriteQueue::new();
            for n in [100_000usize, 3] {
                let ud = (token.clone(), done.clone());
                tx.queue_write(
                    &mut lp,
                    &q,
                    Buffer::from(vec![1; n]),
                    ud,
                    |(_, d), _, _, r| {
                        d.borrow_mut().push(r.unwrap());
                        CallbackAction::Disarm
                    },
                );
            }
            lp.run(RunMode::NoWait).unwrap();
            // `q` goes here, with the first request still in flight.
        }
        read_to_eof_after(&mut lp, r.as_mut(), &rx, &got, 100_003);
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*done.borrow(), [100_000, 3]);
        assert_eq!(got.borrow().len(), 100_003);
        // The queue (and the userdata it held) is freed by the next queue operation.
        drop(WriteQueue::new());
        assert_eq!(Rc::strong_count(&token), 1, "the orphaned queue was freed");
        drop(tx);
    });

    fn read_to_eof_after(
        lp: &mut Loop,
        c: std::pin::Pin<&mut Completion>,
        rx: &Stream,
        into: &Log<u8>,
        want: usize,
    ) {
        let ud = (into.clone(), want);
        rx.read(
            lp,
            c,
            Buffer::from(vec![0; 8192]),
            ud,
            |(into, want), _, c, r| {
                let n = r.expect("read");
                into.borrow_mut()
                    .extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
                if into.borrow().len() < *want {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
    }
}

/// A loop shut down with a queued write in flight: that write's callback never runs and
/// is dropped with its userdata (the queue no longer holds itself through the loop), the
/// writes queued behind it carry on when the queue is used on another loop, and dropping
/// the last handle frees the rest.
#[test]
fn write_queue_outlives_a_shut_down_loop() {
    each_backend(|b| {
        let token = Rc::new(());
        let done: Log<String> = log();
        let mut lp = new_loop(b);
        let (rx, tx) = Stream::pipe().unwrap();
        let q = WriteQueue::new();
        let queue = |lp: &mut Loop, n: usize, what: &'static str| {
            let ud = (token.clone(), done.clone());
            let buf = Buffer::from(vec![1; n]);
            tx.queue_write(lp, &q, buf, ud, move |(_, d), _, _, r| {
                d.borrow_mut().push(format!("{what} {r:?}"));
                CallbackAction::Disarm
            });
        };
        // More than a pipe holds: in flight until someone reads.
        queue(&mut lp, 1 << 20, "big");
        queue(&mut lp, 3, "behind");
        lp.run(RunMode::NoWait).unwrap();
        lp.shutdown();
        drop(lp);
        assert_eq!(
            Rc::strong_count(&token),
            2,
            "the lost write's userdata was dropped"
        );
        assert!(done.borrow().is_empty());

        let mut lp = new_loop(b);
        let mut r = pin!(Completion::new());
        let got: Log<u8> = log();
        queue(&mut lp, 2, "new");
        read_to_eof(&mut lp, r.as_mut(), &rx, &got);
        let tx_fd = std::os::fd::AsRawFd::as_raw_fd(&tx);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !q.is_empty() && Instant::now() < deadline {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert_eq!(*done.borrow(), ["behind Ok(3)", "new Ok(2)"]);
        drop(q);
        drop(tx);
        // SAFETY: F_GETFD only queries the descriptor table.
        assert!(
            unsafe { libc::fcntl(tx_fd, libc::F_GETFD) } < 0,
            "the writer is closed"
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(got.borrow().len() >= 5, "the pipe got the later writes");
        assert_eq!(
            Rc::strong_count(&token),
            1,
            "everything the queue held was freed"
        );
    });
}

/// Run `lp` until `done` says so (at most 5 s).
fn run_until(lp: &mut Loop, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        lp.run(RunMode::Once).unwrap();
    }
}

#[test]
fn a_watchers_descriptor_kind_is_asked_once_not_per_operation() {
    // The poll backend sends regular files to the thread pool, so it must know what a
    // read's or write's descriptor is. A watcher's descriptor stays the same file while
    // its operations are in flight: the watcher asks once (`fstat`), and neither its
    // rearmed reads, its single writes, nor its queued writes (partial ones continued)
    // make the backend ask per operation (`poll_kind_lookups`, always 0 on io_uring).
    each_backend(|b| {
        let mut lp = new_loop(b);
        let (rx, tx) = Stream::pipe().unwrap();
        let got: Log<u8> = log();
        let (mut r, mut w) = (pin!(Completion::new()), pin!(Completion::new()));
        read_to_eof(&mut lp, r.as_mut(), &rx, &got);
        // 50 single writes of 3 bytes, the write rearmed from its callback.
        let writes = Rc::new(RefCell::new(0));
        let n = writes.clone();
        tx.write(
            &mut lp,
            w.as_mut(),
            Buffer::copy_from(b"abc"),
            (),
            move |_, _, _, res| {
                assert_eq!(res.expect("write"), 3);
                *n.borrow_mut() += 1;
                if *n.borrow() < 50 {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        run_until(&mut lp, || got.borrow().len() == 150);
        // Queued writes: 200 KiB into a 64 KiB pipe is many partial writes.
        let q = WriteQueue::new();
        let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        let done = Rc::new(RefCell::new(0));
        for _ in 0..2 {
            let d = done.clone();
            tx.queue_write(
                &mut lp,
                &q,
                Buffer::from(big.clone()),
                (),
                move |_, _, _, r| {
                    assert_eq!(r.expect("queued write"), 200 * 1024);
                    *d.borrow_mut() += 1;
                    CallbackAction::Disarm
                },
            );
        }
        run_until(&mut lp, || *done.borrow() == 2);
        drop(tx);
        lp.run(RunMode::UntilDone).unwrap();
        let got = got.borrow();
        assert_eq!(got.len(), 150 + 2 * big.len());
        assert!(got[150..].chunks(big.len()).all(|c| c == big));
        assert_eq!(
            lp.poll_kind_lookups(),
            0,
            "{b:?}: the backend asked what a watcher's pipe is"
        );
    });
}

#[test]
fn a_stream_on_a_file_and_a_file_on_a_pipe_each_go_their_own_way() {
    // The kind a watcher records is its descriptor's, whatever the watcher type: a
    // `Stream` over a regular file reads it (through the pool on the poll backend) up to
    // EOF; a `File` over a pipe waits for the writer.
    each_backend(|b| {
        let mut lp = new_loop(b);
        let dir = std::env::temp_dir().join(format!("xev-kind-{}-{b:?}", std::process::id()));
        std::fs::write(&dir, b"file bytes").unwrap();
        let file = std::fs::File::open(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        let on_file = Stream::from(OwnedFd::from(file));
        let from_file: Log<u8> = log();
        let mut r = pin!(Completion::new());
        read_to_eof(&mut lp, r.as_mut(), &on_file, &from_file);
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*from_file.borrow(), b"file bytes");

        let (prx, ptx) = Stream::pipe().unwrap();
        let (prx, ptx) = (OwnedFd::from(prx), OwnedFd::from(ptx));
        let on_pipe = xev::watcher::file::File::from(std::fs::File::from(prx));
        let from_pipe: Log<u8> = log();
        let mut f = pin!(Completion::new());
        let fp = from_pipe.clone();
        on_pipe.read(
            &mut lp,
            f.as_mut(),
            Buffer::from(vec![0; 64]),
            (),
            move |_, _, c, res| {
                let n = res.expect("read of the pipe");
                fp.borrow_mut()
                    .extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        assert!(from_pipe.borrow().is_empty(), "nothing written yet");
        std::fs::File::from(ptx).write_all(b"late").unwrap();
        run_until(&mut lp, || !from_pipe.borrow().is_empty());
        assert_eq!(*from_pipe.borrow(), b"late");
        assert_eq!(lp.poll_kind_lookups(), 0, "{b:?}");
    });
}

#[test]
fn a_read_pointed_at_another_descriptor_in_its_callback_forgets_the_old_kind() {
    // `op_mut` may point a rearmed operation at another descriptor: the kind the watcher
    // recorded (here: a regular file, thread pool) must not follow it to a pipe, whose
    // empty non-blocking read would then fail with `EAGAIN` instead of waiting.
    each_backend(|b| {
        let mut lp = new_loop(b);
        let path = std::env::temp_dir().join(format!("xev-repoint-{}-{b:?}", std::process::id()));
        std::fs::write(&path, b"from the file").unwrap();
        let file = xev::watcher::file::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (prx, ptx) = Stream::pipe().unwrap();
        let (prx, ptx) = (OwnedFd::from(prx), OwnedFd::from(ptx));
        let pipe_fd = std::os::fd::AsRawFd::as_raw_fd(&prx);
        let seen: Log<String> = log();
        let s = seen.clone();
        let mut c = pin!(Completion::new());
        file.read(
            &mut lp,
            c.as_mut(),
            Buffer::from(vec![0; 64]),
            (),
            move |_, _, mut c, res| {
                let text = match res {
                    Ok(n) => String::from_utf8_lossy(&c.buffer().unwrap().as_slice()[..n]).into(),
                    Err(e) => format!("error: {e}"),
                };
                let first = s.borrow().is_empty();
                s.borrow_mut().push(text);
                if !first {
                    return CallbackAction::Disarm;
                }
                match c.as_mut().op_mut() {
                    Some(xev::Op::Read { fd, .. }) => *fd = pipe_fd,
                    _ => panic!("not a read"),
                }
                CallbackAction::Rearm
            },
        );
        run_until(&mut lp, || !seen.borrow().is_empty());
        // The rearmed read is on the empty pipe now; give it a turn to (wrongly) finish.
        for _ in 0..3 {
            lp.run(RunMode::NoWait).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(seen.borrow().len(), 1, "{b:?}: {:?}", seen.borrow());
        std::fs::File::from(ptx)
            .write_all(b"from the pipe")
            .unwrap();
        run_until(&mut lp, || seen.borrow().len() == 2);
        assert_eq!(*seen.borrow(), ["from the file", "from the pipe"], "{b:?}");
        drop(prx);
    });
}
