//! [`Stream`]: read, write, poll and close on any stream descriptor (a pipe, a tty, a Unix
//! socket), and [`WriteQueue`]: ordered writes whose partial writes are continued until
//! the whole buffer is written. [`Tcp`](super::tcp::Tcp) and [`File`](super::file::File)
//! are built from the same pieces.
//!
//! Every operation takes a pinned [`Completion`], a [`Buffer`] (moved in; a read's bytes are
//! read with [`Completion::buffer`] inside the callback), a userdata value and a callback
//! `FnMut(&mut U, &mut Loop, Pin<&mut Completion>, result) -> CallbackAction`.
//!
//! ```
//! use std::{cell::RefCell, pin::pin, rc::Rc};
//! use xev::watcher::stream::Stream;
//! use xev::{Buffer, CallbackAction, Completion, Loop, Options, RunMode};
//!
//! let got = Rc::new(RefCell::new(Vec::new()));
//! let (mut r, mut w) = (pin!(Completion::new()), pin!(Completion::new()));
//! let mut lp = Loop::new(Options::default())?;
//! let (rx, tx) = Stream::pipe()?;
//! rx.read(&mut lp, r.as_mut(), Buffer::inline(16), got.clone(), |got, _lp, c, res| {
//!     let n = res.expect("read");
//!     got.borrow_mut().extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
//!     CallbackAction::Disarm
//! });
//! tx.write(&mut lp, w.as_mut(), Buffer::copy_from(b"hello"), (), |_, _, _, res| {
//!     assert_eq!(res.unwrap(), 5);
//!     CallbackAction::Disarm
//! });
//! lp.run(RunMode::UntilDone)?;
//! assert_eq!(*got.borrow(), b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The write queue: design
//!
//! libxev's `queueWrite` takes a caller-allocated `WriteRequest` (a completion plus a link)
//! and threads it onto an intrusive list; making that sound in Rust needs every request
//! pinned and a queue that outlives its requests, checked at run time. xev's
//! [`WriteQueue`] is instead a cheap, clonable handle (`Rc` inside) owning one boxed
//! internal completion and a `VecDeque` of pending requests (an owned operation and its
//! callback). So [`queue_write`](Stream::queue_write) takes no completion, there is no
//! `WriteRequest` type and no `unsafe`, and in steady state nothing is allocated per write
//! (the deque is reused; callbacks of at most four words are stored inline).
//!
//! Requests go out one at a time, in order. A partial write is continued (with
//! [`Buffer::advance`], and for `pwrite` a moved offset) until the whole buffer is written;
//! then the request's callback gets the full length and the buffer back, rewound;
//! [`CallbackAction::Rearm`] queues it again at the tail. If a write fails, its callback
//! gets the error and the requests queued behind it for the same descriptor get
//! [`Error::Canceled`] untried, so a stream never has a hole in the middle (libxev carries
//! on with the next request).
//!
//! While a write is in flight the queue keeps itself alive: dropping every handle does not
//! abort, the writes finish and their callbacks run (the queue is then freed by the next
//! queue operation on the thread, or at thread exit, since a completion cannot be freed
//! inside its own callback). If the loop is dropped with writes in flight, their callbacks
//! never run, like every completion's.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;

use crate::callback::Callback;
use crate::completion::{CallbackAction, Completion, CompletionState};
use crate::event_loop::Loop;
use crate::op::{Buffer, CancelTarget, Op, PollEvents};
use crate::result::{CancelError, Error, OpResult, ReadError};

use super::mismatch;

/// A stream descriptor (pipe, tty, Unix socket, ...) driven by the loop. It owns the fd;
/// dropping the `Stream` closes it, so keep it alive until its operations finish.
///
/// The fd should be non-blocking (see [`set_nonblocking`](Self::set_nonblocking)): the
/// poll backend tries the system call at once and would otherwise block the loop. Not for
/// regular files: use [`File`](super::file::File).
#[derive(Debug)]
pub struct Stream {
    fd: OwnedFd,
}

impl Stream {
    /// A new pipe, both ends non-blocking and close-on-exec: `(read end, write end)`.
    pub fn pipe() -> io::Result<(Stream, Stream)> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two fds into the array we own, or fails.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds are new and owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Stream::from(r), Stream::from(w)))
    }

    /// Switch the fd's `O_NONBLOCK` flag.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: F_GETFL/F_SETFL on the fd we own.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        let new = if on {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        // SAFETY: as above, with flags derived from the current ones.
        if fl < 0 || (new != fl && unsafe { libc::fcntl(fd, libc::F_SETFL, new) } < 0) {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Read once into `buf` (`read(2)`). The callback gets the byte count (read the bytes
    /// with `c.buffer()`), [`ReadError::Eof`] when the writer closed, or the error.
    /// `Rearm` reads again into the same buffer.
    pub fn read<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, buf: Buffer, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<usize, ReadError>,
            ) -> CallbackAction
            + 'static,
    {
        let fd = self.fd.as_raw_fd();
        start(lp, c, Op::Read { fd, buf }, ud, read_result, cb);
    }

    /// Write `buf` once (`write(2)`); the count may be short. Writes started this way are
    /// not ordered with respect to each other: use [`queue_write`](Self::queue_write).
    pub fn write<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, buf: Buffer, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<usize, Error>) -> CallbackAction
            + 'static,
    {
        let fd = self.fd.as_raw_fd();
        start(lp, c, Op::Write { fd, buf }, ud, write_result, cb);
    }

    /// Write all of `buf` through `q`, after the requests already queued there; see
    /// [`WriteQueue`].
    pub fn queue_write<U, F>(&self, lp: &mut Loop, q: &WriteQueue, buf: Buffer, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, &mut Buffer, Result<usize, Error>) -> CallbackAction + 'static,
    {
        let fd = self.fd.as_raw_fd();
        q.push(lp, Op::Write { fd, buf }, ud, cb);
    }

    /// Wait until the fd is ready for `events` ([`PollEvents::IN`] and/or
    /// [`PollEvents::OUT`]); the callback gets the events that occurred (`ERR` and `HUP`
    /// are always reported).
    pub fn poll<U, F>(
        &self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        events: PollEvents,
        ud: U,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<PollEvents, Error>,
            ) -> CallbackAction
            + 'static,
    {
        let fd = self.fd.as_raw_fd();
        start(lp, c, Op::Poll { fd, events }, ud, poll_result, cb);
    }

    /// Close the stream through the loop. Operations still pending on it are cancelled
    /// first (their callbacks get `Canceled`).
    pub fn close<U, F>(self, lp: &mut Loop, c: Pin<&mut Completion>, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        start(lp, c, Op::close(self.fd), ud, close_result, cb);
    }
}

super::owns_fd!(Stream, "Wrap `fd` as is (make sure it is non-blocking).");

/// Start `op` on `c` with a typed callback: `map` turns the core result into `T`. `map`
/// is a function item or capture-less closure (zero-sized), so the stored closure is the
/// userdata plus the user's callback and stays inline when those fit in four words.
pub(crate) fn start<U, T, M, F>(
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    op: Op,
    ud: U,
    map: M,
    cb: F,
) where
    U: 'static,
    M: Fn(OpResult) -> T + 'static,
    F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, T) -> CallbackAction + 'static,
{
    let (mut ud, mut cb) = (ud, cb);
    lp.start(c, op, move |lp, c, r| cb(&mut ud, lp, c, map(r)));
}

/// The result of a read-like operation.
pub(crate) fn read_result(r: OpResult) -> Result<usize, ReadError> {
    match r {
        OpResult::Read(r) | OpResult::Recv(r) | OpResult::Pread(r) => r,
        _ => Err(ReadError::Io(mismatch().into())),
    }
}

/// The result of a write-like operation.
pub(crate) fn write_result(r: OpResult) -> Result<usize, Error> {
    match r {
        OpResult::Write(r) | OpResult::Send(r) | OpResult::Pwrite(r) | OpResult::SendMsg(r) => r,
        _ => Err(mismatch()),
    }
}

macro_rules! result_fn {
    ($(#[$doc:meta] $name:ident: $variant:ident -> $t:ty, $err:expr;)*) => {$(
        #[$doc]
        pub(crate) fn $name(r: OpResult) -> $t {
            match r {
                OpResult::$variant(r) => r,
                _ => Err($err),
            }
        }
    )*};
}

result_fn! {
    /// The result of a poll.
    poll_result: Poll -> Result<PollEvents, Error>, mismatch();
    /// The result of a close.
    close_result: Close -> Result<(), Error>, mismatch();
    /// The result of a cancel.
    cancel_result: Cancel -> Result<(), CancelError>, CancelError::Io(mismatch().into());
}

// ---------------------------------------------------------------------------------------
// WriteQueue

/// Ordered writes: requests are written one at a time, in the order they were queued, each
/// in full (partial writes are continued). A cheap handle: clones share the queue.
///
/// Fill it with [`Stream::queue_write`], [`Tcp::queue_write`](super::tcp::Tcp::queue_write),
/// [`File::queue_write`](super::file::File::queue_write) or
/// [`File::queue_pwrite`](super::file::File::queue_pwrite). Each request's callback is
///
/// ```text
/// FnMut(&mut U, &mut Loop, &mut Buffer, Result<usize, Error>) -> CallbackAction
/// ```
///
/// and gets the request's full length (or the error) and its buffer, rewound to its start
/// (take it with `std::mem::replace` to reuse the memory). `Rearm` queues the request again
/// at the tail, with the buffer as the callback left it. See the [module
/// docs](self#the-write-queue-design) for the design and the error rule.
///
/// ```
/// use std::{cell::RefCell, pin::pin, rc::Rc};
/// use xev::watcher::stream::{Stream, WriteQueue};
/// use xev::{Buffer, CallbackAction, Completion, Loop, Options, RunMode};
///
/// let mut lp = Loop::new(Options::default())?;
/// let (rx, tx) = Stream::pipe()?;
/// let q = WriteQueue::new();
/// let done = Rc::new(RefCell::new(Vec::new()));
/// for part in [&b"one "[..], b"two ", b"three"] {
///     tx.queue_write(&mut lp, &q, Buffer::copy_from(part), done.clone(), |done, _, _, r| {
///         done.borrow_mut().push(r.unwrap());
///         CallbackAction::Disarm
///     });
/// }
/// assert_eq!(q.len(), 3);
/// lp.run(RunMode::UntilDone)?;
/// assert_eq!(*done.borrow(), [4, 4, 5]);
/// drop(tx); // EOF for the reader below
/// let mut back = String::new();
/// let mut rx = std::fs::File::from(std::os::fd::OwnedFd::from(rx));
/// std::io::Read::read_to_string(&mut rx, &mut back)?;
/// assert_eq!(back, "one two three");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WriteQueue(Rc<Shared>);

struct Shared {
    /// The one completion every request of this queue is written with.
    completion: RefCell<Pin<Box<Completion>>>,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    /// Requests not started yet, in order.
    pending: VecDeque<Request>,
    /// The callback of the request whose operation is in the completion.
    current: Option<Callback>,
    /// Bytes the current request had when it started, and how many are written.
    full: usize,
    written: usize,
    /// A request is in flight (or the completion's callback is running).
    running: bool,
    /// The completion's callback is running.
    in_callback: bool,
}

/// A queued write: its operation (fd, buffer, offset) and its callback (called with the
/// queue's completion, whose operation then holds the request's buffer).
struct Request {
    op: Op,
    cb: Callback,
}

impl Default for WriteQueue {
    fn default() -> Self {
        WriteQueue::new()
    }
}

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WriteQueue {{ len: {} }}", self.len())
    }
}

impl WriteQueue {
    /// An empty queue (allocates its completion once).
    pub fn new() -> WriteQueue {
        drain_orphans();
        WriteQueue(Rc::new(Shared {
            completion: RefCell::new(Box::pin(Completion::new())),
            state: RefCell::new(State::default()),
        }))
    }

    /// Requests whose callback has not run yet (the one in flight included).
    pub fn len(&self) -> usize {
        let st = self.0.state.borrow();
        st.pending.len() + usize::from(st.current.is_some())
    }

    /// True when every request has been reported.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cancel the write in flight using `c`: its callback gets `Err(Canceled)`, and so do
    /// the requests queued behind it for the same descriptor. `cb` gets `Ok(())`, or
    /// `Err(CancelError::NotFound)` when nothing is in flight (or the queue's own callback
    /// is running). A regular-file write already running on the thread pool cannot be
    /// stopped (`CancelError::Io(EALREADY)`).
    pub fn cancel<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<(), CancelError>,
            ) -> CallbackAction
            + 'static,
    {
        let in_callback = self.0.state.borrow().in_callback;
        let target = if in_callback {
            // The completion is lent to its callback right now; nothing is in flight.
            CancelTarget::none()
        } else {
            CancelTarget::of(&self.0.completion.borrow())
        };
        start(lp, c, Op::Cancel { target }, ud, cancel_result, cb);
    }

    /// Queue `op` (a write, send or pwrite) with its callback, and start it if idle.
    pub(crate) fn push<U, F>(&self, lp: &mut Loop, op: Op, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, &mut Buffer, Result<usize, Error>) -> CallbackAction + 'static,
    {
        drain_orphans();
        let req = Request {
            op,
            cb: request_callback(ud, cb),
        };
        let mut st = self.0.state.borrow_mut();
        st.pending.push_back(req);
        if st.running
            && (st.in_callback || self.0.completion.borrow().state() == CompletionState::Active)
        {
            return; // the running request's callback starts the next one
        }
        // Idle; or stuck because the loop that ran the last write was shut down before it
        // finished (that write will never report): start over on this loop.
        let lost = st.current.take();
        let req = st.pending.pop_front().expect("just pushed");
        st.running = true;
        st.full = req.op.buffer().map_or(0, Buffer::len);
        st.written = 0;
        st.current = Some(req.cb);
        drop(st);
        self.0
            .completion
            .borrow_mut()
            .as_mut()
            .prep(req.op, on_write(Some(self.0.clone())));
        lp.add(self.0.completion.borrow_mut().as_mut());
        drop(lost); // user drop code runs with no borrow held
    }

    /// When the last user handle goes while the queue is stuck (its loop was shut down
    /// with a write in flight), break the cycle completion -> callback -> queue.
    fn release_if_abandoned(&self) {
        let Ok(mut st) = self.0.state.try_borrow_mut() else {
            return;
        };
        if !st.running || st.in_callback {
            return;
        }
        let Ok(mut c) = self.0.completion.try_borrow_mut() else {
            return;
        };
        if c.state() != CompletionState::Dead {
            return;
        }
        st.running = false;
        let current = st.current.take();
        let pending = std::mem::take(&mut st.pending);
        drop(st);
        // Drops the stored callback and with it the queue's handle on itself.
        c.as_mut().prep(Op::Noop, |_, _, _| CallbackAction::Disarm);
        drop(c);
        drop((current, pending));
    }
}

impl Drop for WriteQueue {
    fn drop(&mut self) {
        // Two handles: this one and the one the in-flight callback holds.
        if Rc::strong_count(&self.0) == 2 {
            self.release_if_abandoned();
        }
        drain_orphans();
    }
}

/// Wrap a request callback in the core callback shape, to store it inline when small. It
/// is called with the queue's completion, whose operation holds the request's buffer.
fn request_callback<U, F>(ud: U, cb: F) -> Callback
where
    U: 'static,
    F: FnMut(&mut U, &mut Loop, &mut Buffer, Result<usize, Error>) -> CallbackAction + 'static,
{
    let (mut ud, mut cb) = (ud, cb);
    Callback::new(move |lp: &mut Loop, c: Pin<&mut Completion>, r: OpResult| {
        let r = write_result(r);
        match c.op_mut().and_then(Op::buffer_mut) {
            Some(buf) => cb(&mut ud, lp, buf, r),
            None => cb(&mut ud, lp, &mut Buffer::inline(0), Err(mismatch())),
        }
    })
}

/// Move the operation's buffer (and offset) `n` bytes on, to continue a partial write.
fn advance(op: &mut Op, n: usize) {
    if let Op::Pwrite { offset, .. } = op {
        *offset += n as u64;
    }
    if let Some(buf) = op.buffer_mut() {
        buf.advance(n);
    }
}

/// Undo the advances of a request whose `written` bytes went out.
fn restore(op: &mut Op, written: usize) {
    if let Op::Pwrite { offset, .. } = op {
        *offset -= written as u64;
    }
    if let Some(buf) = op.buffer_mut() {
        buf.rewind();
    }
}

/// Clears `in_callback` when the queue's callback ends, also if a user callback panics.
struct InCallback<'a>(&'a Shared);

impl Drop for InCallback<'_> {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.state.try_borrow_mut() {
            st.in_callback = false;
        }
    }
}

/// The queue completion's callback. `keep` is the queue's handle on itself while a write
/// is in flight.
fn on_write(
    keep: Option<Rc<Shared>>,
) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static {
    let mut keep = keep;
    move |lp, mut c, r| {
        let Some(shared) = keep.clone() else {
            return CallbackAction::Disarm;
        };
        let action = {
            let guard = InCallback(&shared);
            guard.0.state.borrow_mut().in_callback = true;
            step(&shared, lp, c.as_mut(), write_result(r))
        };
        match action {
            Step::Continue => CallbackAction::Rearm,
            Step::Start(op) => {
                lp.start(c, op, on_write(keep.take()));
                CallbackAction::Disarm
            }
            Step::Idle => {
                drop(shared);
                if let Some(me) = keep.take() {
                    if Rc::strong_count(&me) == 1 {
                        // Every handle is gone, and we are inside the completion's own
                        // callback, where it must not be freed: free it later.
                        bury(me);
                    }
                }
                CallbackAction::Disarm
            }
        }
    }
}

enum Step {
    /// Rearm: the same request continues, or the next one on the same fd is in place.
    Continue,
    /// Start this request (another fd) afresh.
    Start(Op),
    /// Nothing left.
    Idle,
}

/// One result of the queue's completion: continue a partial write, or report the request
/// and set up the next.
fn step(
    shared: &Shared,
    lp: &mut Loop,
    mut c: Pin<&mut Completion>,
    r: Result<usize, Error>,
) -> Step {
    let mut st = shared.state.borrow_mut();
    let Some(op) = c.as_mut().op_mut() else {
        return Step::Idle;
    };
    let fd = op.fd();
    let remaining = st.full - st.written;
    let result = match r {
        Ok(n) if n >= remaining => Ok(st.full),
        Ok(0) => Err(Error::Io(io::ErrorKind::WriteZero.into())),
        Ok(n) => {
            st.written += n;
            advance(op, n);
            return Step::Continue;
        }
        Err(e) => Err(e),
    };
    restore(op, st.written);
    // After a failure, the requests queued behind it for this fd fail unwritten.
    let doomed: VecDeque<Request> = match result {
        Ok(_) => VecDeque::new(),
        Err(_) => {
            let all = std::mem::take(&mut st.pending);
            let (doomed, kept) = all.into_iter().partition(|r| r.op.fd() == fd);
            st.pending = kept;
            doomed
        }
    };
    let cb = st.current.take();
    drop(st);
    report(cb, lp, c.as_mut(), shared, result);
    for req in doomed {
        if let Some(slot) = c.as_mut().op_mut() {
            *slot = req.op;
        }
        report(Some(req.cb), lp, c.as_mut(), shared, Err(Error::Canceled));
    }

    let mut st = shared.state.borrow_mut();
    let Some(next) = st.pending.pop_front() else {
        st.running = false;
        drop(st);
        c.take_op(); // release the last buffer
        return Step::Idle;
    };
    st.full = next.op.buffer().map_or(0, Buffer::len);
    st.written = 0;
    st.current = Some(next.cb);
    drop(st);
    if next.op.fd() != fd {
        return Step::Start(next.op);
    }
    if let Some(slot) = c.op_mut() {
        *slot = next.op;
    }
    Step::Continue
}

/// Call a finished request's callback (without holding any borrow) and requeue it if it
/// rearms; its buffer is in `c`'s operation.
fn report(
    cb: Option<Callback>,
    lp: &mut Loop,
    mut c: Pin<&mut Completion>,
    shared: &Shared,
    result: Result<usize, Error>,
) {
    let Some(mut f) = cb else { return };
    if f.call(lp, c.as_mut(), OpResult::Write(result)) == CallbackAction::Rearm {
        let op = c.take_op().unwrap_or(Op::Noop);
        let req = Request { op, cb: f };
        shared.state.borrow_mut().pending.push_back(req);
    } else {
        drop(f); // user drop code runs with no borrow held
    }
}

thread_local! {
    /// Queues whose last handle went while their completion's callback was running.
    static ORPHANS: RefCell<Vec<Rc<Shared>>> = const { RefCell::new(Vec::new()) };
}

/// Keep `q` until a later queue operation (its completion is in its own callback now).
fn bury(q: Rc<Shared>) {
    let mut slot = Some(q);
    let _ = ORPHANS.try_with(|o| {
        if let Ok(mut o) = o.try_borrow_mut() {
            o.extend(slot.take());
        }
    });
    // The thread is going away: leak rather than free a completion in its callback.
    std::mem::forget(slot);
}

/// Free the buried queues (their callbacks have returned: they are Dead).
fn drain_orphans() {
    let dead = ORPHANS
        .try_with(|o| {
            o.try_borrow_mut()
                .map(|mut o| std::mem::take(&mut *o))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    drop(dead);
}
