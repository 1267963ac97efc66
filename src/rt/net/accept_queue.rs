//! [`AcceptQueue`]: one multishot accept (`Op::AcceptMulti`) kept armed for an
//! [`Incoming`](super::Incoming), and the bounded queue its connections land in.
//!
//! **Where it is used.** On io_uring, where `AcceptMulti` is a kernel multishot
//! (`IORING_ACCEPT_MULTISHOT`, 5.19+; one accept per submission before). On the poll
//! backend `AcceptMulti` is one accept per rearm, which measured no better than the
//! single-shot accept (`benches/accept_storm.rs`), so `Incoming` keeps one single-shot
//! accept in flight there, as `accept()` does.
//!
//! **Memory.** The completion lives in this `Rc`'d record; its callback holds a strong
//! reference, so the record outlives the operation whoever drops first (the consumer, or
//! the loop abandoning the operation at shutdown, which drops the callback). After the
//! operation's last callback the reference in the callback is the only cycle left: the
//! consumer breaks it when it goes (re-preparing the Dead completion drops the callback),
//! or, if the consumer went first, a small task spawned by the last callback does.
//!
//! **fd lifetime.** The record holds the listener's `Rc<LoopFd>` until it is freed, so
//! the listener's fd outlives the operation, orphans included.
//!
//! **Back-pressure without loss.** Each connection is pushed to the queue and wakes the
//! consumer. When the queue holds [`CAPACITY`] connections (or the consumer is gone), the
//! multishot is stopped with `Loop::multishot_stop`, which asks the kernel to end it but
//! keeps delivering what it still posts: a Disarm or a cancel would close the
//! connections the loop already holds for the operation, or that the kernel accepts
//! before the cancel reaches it. The callback rearms while `Loop::multishot_more` says
//! results are held or may come, and the operation ends with the kernel's last CQE. So
//! every connection the kernel accepted is delivered (the queue goes past [`CAPACITY`]
//! by what the kernel accepted in its last wake-up: it drains the backlog as it wakes),
//! and later ones wait in the listen backlog. The consumer re-arms once the queue is
//! down to [`LOW_WATER`]. Connections queued when the consumer is dropped, or delivered
//! after, go to the listener's stash (its next accept takes them, in order; they close
//! with the listener).

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::completion::{CallbackAction, Completion, CompletionState};
use crate::op::Op;
use crate::result::{Accepted, Error, OpResult};
use crate::rt::executor::{current, Deferred, DeferredWork, Executor};
use crate::rt::loop_fd::LoopFd;
use crate::sys::fd::OwnedFd;
use crate::Loop;

/// Connections queued before the multishot is stopped.
pub(super) const CAPACITY: usize = 64;
/// The multishot is re-armed once the consumer has taken the queue down to this.
pub(super) const LOW_WATER: usize = CAPACITY / 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The completion is Dead: nothing accepts.
    Idle,
    /// The multishot accepts into the queue.
    Armed,
    /// A stop was asked for (`Loop::multishot_stop`): the callback rearms until nothing
    /// more is held or can come.
    Stopping,
}

/// See the module docs.
pub(super) struct AcceptQueue {
    c: UnsafeCell<Completion>,
    exec: Rc<Executor>,
    /// The listener, kept open while the operation may name its fd.
    listener: Rc<LoopFd>,
    queue: RefCell<VecDeque<io::Result<OwnedFd>>>,
    waker: Cell<Option<Waker>>,
    state: Cell<State>,
    /// The consumer (the `Incoming`) is alive.
    consumer: Cell<bool>,
}

impl AcceptQueue {
    /// Whether the current runtime's loop runs `AcceptMulti` as a kernel multishot
    /// (io_uring; see the module docs); `false` inside a loop callback.
    pub(super) fn usable() -> bool {
        let exec = current("xev::net incoming()");
        let usable = exec
            .lp
            .try_borrow()
            .is_ok_and(|lp| lp.backend() == crate::Backend::IoUring);
        usable
    }

    /// A new, idle queue for `listener` on the current runtime.
    pub(super) fn new(listener: &Rc<LoopFd>) -> Rc<AcceptQueue> {
        Rc::new(AcceptQueue {
            c: UnsafeCell::new(Completion::new()),
            exec: current("xev::net incoming()"),
            listener: listener.clone(),
            queue: RefCell::new(VecDeque::with_capacity(CAPACITY)),
            waker: Cell::new(None),
            state: Cell::new(State::Idle),
            consumer: Cell::new(true),
        })
    }

    /// The completion, pinned.
    ///
    /// # Safety
    /// No other reference to the completion is alive, and the loop does not touch it
    /// (Dead, or Active and only its state read by the caller through `&`).
    #[allow(clippy::mut_from_ref)]
    unsafe fn completion(&self) -> Pin<&mut Completion> {
        // SAFETY: the record is in an `Rc` and never moves, so the completion is pinned;
        // exclusivity is the caller's promise.
        unsafe { Pin::new_unchecked(&mut *self.c.get()) }
    }

    /// The next connection (or accept error), in order: from the queue, arming the
    /// multishot when the queue is empty, or re-arming it once the queue is low again.
    pub(super) fn poll_next(self: &Rc<Self>, cx: &mut Context<'_>) -> Poll<io::Result<OwnedFd>> {
        let item = self.queue.borrow_mut().pop_front();
        if let Some(item) = item {
            // An error leaves the multishot stopped: the next poll with nothing queued
            // accepts again (so a consumer that backs off after EMFILE really waits).
            if item.is_ok() && self.state.get() == State::Idle {
                let left = self.queue.borrow().len();
                if left <= LOW_WATER && !self.queue.borrow().iter().any(|r| r.is_err()) {
                    self.arm();
                }
            }
            return Poll::Ready(item);
        }
        let w = self.waker.take();
        self.waker.set(match w {
            Some(w) if w.will_wake(cx.waker()) => Some(w),
            _ => Some(cx.waker().clone()),
        });
        if self.state.get() == State::Idle {
            self.arm();
        }
        Poll::Pending
    }

    /// Start the multishot (the completion is Dead).
    fn arm(self: &Rc<Self>) {
        // First (it may announce the fd to the loop, which needs the loop).
        let fd = self.listener.raw();
        let Ok(mut lp) = self.exec.lp.try_borrow_mut() else {
            panic!(
                "xev: an async operation cannot be started from inside a loop callback; \
                 spawn a task instead"
            );
        };
        let me = self.clone();
        // SAFETY: Idle, so the completion is Dead and nothing else references it.
        let mut c = unsafe { self.completion() };
        c.as_mut().prep(Op::AcceptMulti { fd }, move |lp, c, res| {
            me.on_result(lp, c, res)
        });
        self.state.set(State::Armed);
        lp.add(c);
    }

    /// The callback of every result of the multishot.
    fn on_result(&self, lp: &mut Loop, c: Pin<&mut Completion>, res: OpResult) -> CallbackAction {
        let r = match res {
            OpResult::AcceptMulti(r) => r,
            other => Err(Error::Io(crate::rt::io::mismatch(&other))),
        };
        let consumer = self.consumer.get();
        match r {
            Ok(fd) => {
                if consumer {
                    self.queue.borrow_mut().push_back(Ok(fd));
                    self.wake();
                } else {
                    self.listener.stash(Accepted { fd, peer: None });
                }
                if consumer
                    && self.state.get() == State::Armed
                    && self.queue.borrow().len() < CAPACITY
                {
                    return CallbackAction::Rearm;
                }
                // Full, or the consumer is gone: stop (again, if a stop from a loop
                // callback became a plain cancel that found a result waiting: once sent,
                // a repeat sends nothing).
                self.state.set(State::Stopping);
                lp.multishot_stop(&c);
                self.keep_draining(lp, &c)
            }
            Err(Error::Canceled) if self.state.get() == State::Stopping => {
                // The stop's own end.
                self.keep_draining(lp, &c)
            }
            Err(e) => {
                // The kernel ended the multishot (an error always does): hand the error
                // over in order; the next poll with nothing queued accepts again.
                if consumer {
                    self.queue.borrow_mut().push_back(Err(e.into()));
                }
                self.finished();
                CallbackAction::Disarm
            }
        }
    }

    /// Stopping: take what the kernel still posts or the loop holds (a rearm then makes
    /// no new submission); after that, the operation is over.
    fn keep_draining(&self, lp: &mut Loop, c: &Completion) -> CallbackAction {
        if lp.multishot_more(c) {
            return CallbackAction::Rearm;
        }
        self.finished();
        CallbackAction::Disarm
    }

    /// The operation's last callback is running (it returns Disarm).
    fn finished(&self) {
        self.state.set(State::Idle);
        if self.consumer.get() {
            self.wake();
            return;
        }
        // Nobody else holds the record but our own callback: free it from a task, after
        // this callback has returned (the completion must not be freed while in it).
        if !self.exec.is_closed() {
            let reaper = Reaper(self.self_ref());
            drop(self.exec.spawn(async move { drop(reaper) }));
        }
    }

    /// A strong reference to this record (one is held by the callback that runs now).
    fn self_ref(&self) -> Rc<AcceptQueue> {
        let p: *const AcceptQueue = self;
        // SAFETY: `self` lives in an `Rc` (every record is made by `new`) that the running
        // callback keeps alive; incrementing first makes `from_raw` balanced.
        unsafe {
            Rc::increment_strong_count(p);
            Rc::from_raw(p)
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// The consumer goes: queued connections go to the listener's stash, the multishot
    /// is stopped (see the module docs).
    pub(super) fn close(self: &Rc<Self>) {
        self.consumer.set(false);
        drop(self.waker.take());
        // (Errors queued are dropped: they concerned accepts of this stream.)
        for fd in self.queue.borrow_mut().drain(..).flatten() {
            self.listener.stash(Accepted { fd, peer: None });
        }
        match self.state.get() {
            State::Idle => {
                // SAFETY: a shared reference to look at the phase; the loop reaches the
                // completion only through its cell.
                let c = unsafe { &*self.c.get() };
                if c.in_callback_of().is_some() {
                    // Inside the operation's last callback (`finished` woke the consumer,
                    // and its waker dropped the stream there): `state()` says Dead, but
                    // `invoke` still uses the completion and holds its callback, which
                    // holds a reference to us. Re-preparing now would make `invoke` drop
                    // that callback, maybe our last reference, and so free the completion
                    // inside its own callback (an abort, and a read of freed memory right
                    // after). Free the record once the callback has returned, as
                    // `finished` does when the consumer went first.
                    if !self.exec.is_closed() {
                        let reaper = Reaper(self.clone());
                        drop(self.exec.spawn(async move { drop(reaper) }));
                    }
                } else if c.state() == CompletionState::Dead {
                    // Dead: drop the callback (and its reference to us) now.
                    // SAFETY: Dead and not in its callback, so neither the loop nor
                    // anyone else references the completion.
                    let c = unsafe { self.completion() };
                    c.prep(Op::Noop, |_, _, _| CallbackAction::Disarm);
                }
            }
            State::Armed => {
                self.state.set(State::Stopping);
                if self.exec.is_closed() {
                    return; // the loop's shutdown abandons it, dropping the callback
                }
                // SAFETY: a shared reference to name the operation; the loop reaches the
                // completion only through its cell.
                let c = unsafe { &*self.c.get() };
                if c.state() != CompletionState::Active {
                    return;
                }
                match self.exec.lp.try_borrow_mut() {
                    // Everything the kernel accepted before the stop still comes here
                    // (then to the stash): nothing is closed.
                    Ok(mut lp) => lp.multishot_stop(c),
                    // Inside a loop callback (the loop is busy): the same stop, at the
                    // start of the next turn.
                    Err(_) => self.exec.defer(Deferred::WithLoop(self.clone())),
                }
            }
            State::Stopping => {}
        }
    }

    /// Whether the runtime this queue accepts on has shut down. Its shutdown abandoned
    /// the multishot without a last callback (the state may still say `Armed`), and
    /// nothing would ever arm it again there: the consumer closes this queue and makes
    /// a new one on the runtime that polls it.
    pub(super) fn runtime_closed(&self) -> bool {
        self.exec.is_closed()
    }

    /// Whether the multishot is in flight (for `Debug`).
    pub(super) fn accepting(&self) -> bool {
        self.state.get() != State::Idle
    }
}

/// The stop of a consumer dropped inside a loop callback, run at the start of the next
/// turn: still stopping and Active, the same lossless stop as outside a callback.
impl DeferredWork for AcceptQueue {
    fn run(&self, lp: &mut Loop) {
        if self.state.get() != State::Stopping {
            return;
        }
        // SAFETY: a shared reference to name the operation; the loop reaches the
        // completion only through its cell.
        let c = unsafe { &*self.c.get() };
        if c.state() == CompletionState::Active {
            lp.multishot_stop(c);
        }
    }
}

/// Frees a record whose consumer is gone, after its last callback: drops the callback's
/// reference (re-preparing the Dead completion), then its own.
struct Reaper(Rc<AcceptQueue>);

impl Drop for Reaper {
    fn drop(&mut self) {
        // SAFETY: a shared reference to look at the phase, as in `close`.
        let c = unsafe { &*self.0.c.get() };
        if c.in_callback_of().is_some() || c.state() != CompletionState::Dead {
            return; // never expected: a task runs (and is dropped) outside loop callbacks
        }
        // SAFETY: the last callback has returned Disarm (the completion is Dead and not
        // in its callback) and nothing re-adds a record whose consumer is gone, so
        // nothing references the completion.
        let c = unsafe { self.0.completion() };
        c.prep(Op::Noop, |_, _, _| CallbackAction::Disarm);
    }
}
