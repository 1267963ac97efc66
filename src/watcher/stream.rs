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
//! (the deque is reused; callbacks of at most two words are stored inline, larger ones up
//! to 64 bytes in reused blocks).
//!
//! Requests go out one at a time, in order. A partial write is continued (with
//! [`Buffer::advance`], and for `pwrite` a moved offset) until the whole buffer is written;
//! then the request's callback gets the full length and the buffer back, rewound;
//! [`CallbackAction::Rearm`] queues it again at the tail. If a write fails, its callback
//! gets the error and the requests queued behind it for the same descriptor get
//! [`Error::Canceled`] untried, so a stream never has a hole in the middle (libxev carries
//! on with the next request).
//!
//! Each request keeps its watcher's descriptor open until its callback has run, so the
//! watcher may be dropped with writes queued: they still go to its file, never to one
//! that reuses the number (see [the watcher docs](super#descriptor-lifetime)). Closing
//! the watcher through the loop cancels its requests that have not started.
//!
//! While a write is in flight the queue keeps itself alive: dropping every handle does not
//! abort, the writes finish and their callbacks run (the queue is then freed by the next
//! queue operation on the thread, or at thread exit, since a completion cannot be freed
//! inside its own callback). If the loop is dropped (or shut down) with writes in flight,
//! their callbacks never run, like every completion's, and the queue lets go of everything
//! it holds: once no handle is left, its buffers, userdata and descriptors are dropped.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use crate::callback::Callback;
use crate::completion::{CallbackAction, Completion, CompletionState};
use crate::event_loop::Loop;
use crate::op::{Buffer, CancelTarget, Op, PollEvents};
use crate::result::{CancelError, Error, OpResult, ReadError};

use super::fd::{self, SharedFd};
use super::mismatch;

/// A stream descriptor (pipe, tty, Unix socket, ...) driven by the loop. It owns the fd,
/// shared with the operations started through it: the fd is closed when the `Stream`
/// and all of those are gone (see [the watcher docs](super#descriptor-lifetime)).
///
/// The fd should be non-blocking (see [`set_nonblocking`](Self::set_nonblocking)): the
/// poll backend tries the system call at once and would otherwise block the loop. Not for
/// regular files: use [`File`](super::file::File).
#[derive(Debug)]
pub struct Stream {
    fd: Arc<SharedFd>,
}

impl Stream {
    /// A new pipe, both ends non-blocking and close-on-exec: `(read end, write end)`.
    /// Unix only (Windows has no anonymous pipe the readiness backend can wait on).
    #[cfg(unix)]
    pub fn pipe() -> io::Result<(Stream, Stream)> {
        let (r, w) = crate::sys::pipe_cloexec_nonblocking()?;
        Ok((Stream::from(r), Stream::from(w)))
    }

    /// Switch the fd's `O_NONBLOCK` flag.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        crate::sys::set_nonblocking(self.fd.raw(), on)
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
        let op = Op::Read {
            fd: self.fd.raw(),
            buf,
        };
        start_on(lp, &self.fd, c, op, ud, read_result, cb);
    }

    /// Write `buf` once (`write(2)`); the count may be short. Writes started this way are
    /// not ordered with respect to each other: use [`queue_write`](Self::queue_write).
    pub fn write<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, buf: Buffer, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<usize, Error>) -> CallbackAction
            + 'static,
    {
        let op = Op::Write {
            fd: self.fd.raw(),
            buf,
        };
        start_on(lp, &self.fd, c, op, ud, write_result, cb);
    }

    /// Write all of `buf` through `q`, after the requests already queued there; see
    /// [`WriteQueue`].
    pub fn queue_write<U, F>(&self, lp: &mut Loop, q: &WriteQueue, buf: Buffer, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, &mut Buffer, Result<usize, Error>) -> CallbackAction + 'static,
    {
        let op = Op::Write {
            fd: self.fd.raw(),
            buf,
        };
        q.push(lp, &self.fd, op, ud, cb);
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
        let op = Op::Poll {
            fd: self.fd.raw(),
            events,
        };
        start_on(lp, &self.fd, c, op, ud, poll_result, cb);
    }

    /// Close the stream through the loop. Operations still pending on it are cancelled
    /// first (their callbacks get `Canceled`), and so are writes queued for it that
    /// have not started.
    pub fn close<U, F>(self, lp: &mut Loop, c: Pin<&mut Completion>, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        close(lp, self.fd, c, ud, cb);
    }
}

super::owns_fd!(Stream, "Wrap `fd` as is (make sure it is non-blocking).");

/// Start `op` on `c` with a typed callback: `map` turns the core result into `T`. `map`
/// is a function item or capture-less closure (zero-sized), so the stored closure is the
/// userdata plus the user's callback and stays inline when those fit in two words (in a
/// reused block up to 64 bytes).
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

/// Start `op`, an operation on `fd`, like [`start`]; the callback keeps a clone of `fd`
/// until it returns `Disarm`, so the descriptor outlives the operation (see
/// [`fd`](super::fd)).
pub(crate) fn start_on<U, T, M, F>(
    lp: &mut Loop,
    fd: &Arc<SharedFd>,
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
    let mut keep = Some(Arc::clone(fd));
    let kind = || fd.kind();
    lp.start_on_kind(c, op, kind, move |lp, mut c, r| {
        let r = map(r);
        let had = keep.is_some();
        let action = fd::lending(&mut keep, || cb(&mut ud, lp, c.as_mut(), r));
        fd::after_callback(&mut keep, had, c, action)
    });
}

/// A watcher's `close`: close `fd` through the loop with `c` (see
/// [`fd::close_op`]).
pub(crate) fn close<U, F>(lp: &mut Loop, fd: Arc<SharedFd>, c: Pin<&mut Completion>, ud: U, cb: F)
where
    U: 'static,
    F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
        + 'static,
{
    match fd::close_op(lp, fd) {
        Ok(op) => start(lp, c, op, ud, close_result, cb),
        Err(e) => {
            // No descriptor for the duplicate: an empty close reports the error.
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            let map = move |_| Err(Error::Io(io::Error::from_raw_os_error(errno)));
            start(lp, c, Op::Close { fd: None }, ud, map, cb);
        }
    }
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
    /// The result of a shutdown.
    shutdown_result: Shutdown -> Result<(), Error>, mismatch();
    /// The result of a cancel.
    cancel_result: Cancel -> Result<(), CancelError>, CancelError::Io(mismatch().into());
}

/// The connected-socket methods the TCP and Unix-socket watchers share, written once:
/// `read` (`Op::Recv`), `write` (`Op::Send`), `queue_write`, `poll`, `shutdown` and
/// `close`. Expands inside an `impl` of a type with a field `fd: Arc<SharedFd>` and a
/// method `raw(&self) -> RawFd`.
macro_rules! socket_methods {
    () => {
        /// Receive once into `buf` (`recv(2)`). The callback gets the byte count (read the
        /// bytes with `c.buffer()`), [`ReadError::Eof`] once the peer has shut down its
        /// sending side, or the error. `Rearm` receives again into the same buffer.
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
            let op = Op::Recv {
                fd: self.raw(),
                buf,
            };
            stream::start_on(lp, &self.fd, c, op, ud, stream::read_result, cb);
        }

        /// Send `buf` once (`send(2)` with `MSG_NOSIGNAL`: a closed peer is `EPIPE`, never
        /// a signal); the count may be short. For ordered, complete writes use
        /// [`queue_write`](Self::queue_write).
        pub fn write<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, buf: Buffer, ud: U, cb: F)
        where
            U: 'static,
            F: FnMut(
                    &mut U,
                    &mut Loop,
                    Pin<&mut Completion>,
                    Result<usize, Error>,
                ) -> CallbackAction
                + 'static,
        {
            let op = Op::Send {
                fd: self.raw(),
                buf,
            };
            stream::start_on(lp, &self.fd, c, op, ud, stream::write_result, cb);
        }

        /// Send all of `buf` through `q`, after the requests already queued there; the
        /// callback gets the full length or the error. See
        /// [`WriteQueue`](crate::watcher::stream::WriteQueue).
        pub fn queue_write<U, F>(
            &self,
            lp: &mut Loop,
            q: &stream::WriteQueue,
            buf: Buffer,
            ud: U,
            cb: F,
        ) where
            U: 'static,
            F: FnMut(&mut U, &mut Loop, &mut Buffer, Result<usize, Error>) -> CallbackAction
                + 'static,
        {
            let op = Op::Send {
                fd: self.raw(),
                buf,
            };
            q.push(lp, &self.fd, op, ud, cb);
        }

        /// Wait until the socket is ready for `events`; see
        /// [`Stream::poll`](crate::watcher::stream::Stream::poll).
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
            let op = Op::Poll {
                fd: self.raw(),
                events,
            };
            stream::start_on(lp, &self.fd, c, op, ud, stream::poll_result, cb);
        }

        /// Shut down one or both directions (`Shutdown::Write` sends end of stream to the
        /// peer). libxev always shuts down the write side; here the caller chooses.
        pub fn shutdown<U, F>(
            &self,
            lp: &mut Loop,
            c: Pin<&mut Completion>,
            how: std::net::Shutdown,
            ud: U,
            cb: F,
        ) where
            U: 'static,
            F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
                + 'static,
        {
            let op = Op::Shutdown {
                fd: self.raw(),
                how,
            };
            stream::start_on(lp, &self.fd, c, op, ud, stream::shutdown_result, cb);
        }

        /// Close the socket through the loop; operations still pending on it are
        /// cancelled first (their callbacks get `Canceled`).
        pub fn close<U, F>(self, lp: &mut Loop, c: Pin<&mut Completion>, ud: U, cb: F)
        where
            U: 'static,
            F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
                + 'static,
        {
            stream::close(lp, self.fd, c, ud, cb);
        }
    };
}
pub(crate) use socket_methods;

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
    /// That request's descriptor, held until its callback has run.
    current_fd: Option<Arc<SharedFd>>,
    /// That request's watcher was closed before it started: it reports `Canceled`.
    doomed: bool,
    /// Bytes the current request had when it started, and how many are written.
    full: usize,
    written: usize,
    /// A request is in flight (or the completion's callback is running).
    running: bool,
    /// The completion's callback is running.
    in_callback: bool,
    /// `push` is starting over on a completion whose old callback (left there by a panic,
    /// with its handle on the queue) it is about to drop: that drop must not take the
    /// new request as the lost one (see [`SelfHandle`]).
    restarting: bool,
}

/// A queued write: its operation (fd number, buffer, offset), its watcher's descriptor
/// (kept open until the callback has run; `None` once taken back by closing the watcher
/// in the callback of a rearming request), and its callback (called with the queue's
/// completion, whose operation then holds the request's buffer).
struct Request {
    op: Op,
    fd: Option<Arc<SharedFd>>,
    cb: Callback,
}

/// Make `req` the current request and return its operation. If its watcher was closed
/// meanwhile, its descriptor number is replaced by -1 (it fails at once, reported as
/// `Canceled`), so it never reaches a file that reused the number.
fn begin(st: &mut State, req: Request) -> Op {
    let Request { mut op, fd, cb } = req;
    st.full = op.buffer().map_or(0, Buffer::len);
    st.written = 0;
    st.current = Some(cb);
    st.doomed = fd.as_ref().is_none_or(|f| f.is_closed());
    if st.doomed {
        if let Some(n) = op.borrowed_fd_mut() {
            *n = crate::sys::fd::NO_FD;
        }
    }
    st.current_fd = fd;
    op
}

/// Whether two requests write to the same watcher's descriptor.
fn same_fd(a: &Option<Arc<SharedFd>>, b: &Option<Arc<SharedFd>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
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

    /// Queue `op` (a write, send or pwrite on `fd`) with its callback, and start it if
    /// idle. The request keeps `fd` open until its callback has run.
    pub(crate) fn push<U, F>(&self, lp: &mut Loop, fd: &Arc<SharedFd>, op: Op, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, &mut Buffer, Result<usize, Error>) -> CallbackAction + 'static,
    {
        drain_orphans();
        let req = Request {
            op,
            fd: Some(Arc::clone(fd)),
            cb: request_callback(ud, cb),
        };
        let mut st = self.0.state.borrow_mut();
        st.pending.push_back(req);
        if st.running
            && (st.in_callback || self.0.completion.borrow().state() == CompletionState::Active)
        {
            return; // the running request's callback starts the next one
        }
        // Idle (or, defensively, marked running while nothing is in flight and no
        // callback runs: that write can never report; start over on this loop). In that
        // case the completion may still hold the callback of the lost write (a panic
        // left it there, e.g. the loop check after a callback swapped the loop), which
        // `prep` drops: its handle must leave the new request alone.
        let restart = st.running;
        let lost = (st.current.take(), st.current_fd.take());
        let req = st.pending.pop_front().expect("just pushed");
        st.running = true;
        st.restarting = restart;
        let op = begin(&mut st, req);
        drop(st);
        let mut c = self.0.completion.borrow_mut();
        c.as_mut().prep(op, on_write(Some(self.0.clone())));
        if restart {
            self.0.state.borrow_mut().restarting = false;
        }
        note_fd_kind(&self.0, lp, c.as_mut());
        lp.add(c.as_mut());
        drop(c);
        drop(lost); // user drop code runs with no borrow held
    }
}

impl Drop for WriteQueue {
    fn drop(&mut self) {
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
    let mut keep = SelfHandle(keep);
    move |lp, mut c, r| {
        let Some(shared) = keep.0.clone() else {
            return CallbackAction::Disarm;
        };
        let action = {
            let guard = InCallback(&shared);
            guard.0.state.borrow_mut().in_callback = true;
            step(&shared, lp, c.as_mut(), write_result(r))
        };
        match action {
            Step::Continue => {
                // `step` changed the operation (`op_mut`), which forgot the kind.
                note_fd_kind(&shared, lp, c);
                CallbackAction::Rearm
            }
            Step::Start(op) => {
                c.as_mut().prep(op, on_write(keep.0.take()));
                note_fd_kind(&shared, lp, c.as_mut());
                lp.add(c);
                CallbackAction::Disarm
            }
            Step::Idle => {
                drop(shared);
                if let Some(me) = keep.0.take() {
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

/// Tell the queue's completion `c`, about to start (or rearm) the current request, what
/// that request's descriptor is (see `FdKind`): the poll backend then skips its `fstat`.
fn note_fd_kind(shared: &Shared, lp: &Loop, c: Pin<&mut Completion>) {
    if lp.asks_fd_kind() {
        if let Some(fd) = &shared.state.borrow().current_fd {
            c.set_fd_kind(fd.kind());
        }
    }
}

/// The queue's handle on itself, held by its completion's callback while a write is in
/// flight. If the callback is dropped with it (the loop was shut down or dropped with
/// the write in flight: it will never report), the lost request is released too; not
/// when `push` drops it to start a new request (`restarting`: a panic left the callback
/// in the completion, and the request now current is the new one).
struct SelfHandle(Option<Rc<Shared>>);

impl Drop for SelfHandle {
    fn drop(&mut self) {
        let Some(me) = self.0.take() else { return };
        let lost = match me.state.try_borrow_mut() {
            Ok(mut st) if st.running && !st.in_callback && !st.restarting => {
                st.running = false;
                Some((st.current.take(), st.current_fd.take()))
            }
            _ => None,
        };
        drop(lost); // user drop code runs with no borrow held
        if std::thread::panicking() && Rc::strong_count(&me) == 1 {
            // Unwinding out of the completion's own callback: do not free it here.
            bury(me);
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
    let r = if st.doomed { Err(Error::Canceled) } else { r };
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
    // Held to the end, so the comparison with the next request's descriptor below cannot
    // be fooled by a freed and reallocated one.
    let fd = st.current_fd.clone();
    // After a failure, the requests queued behind it for this fd fail unwritten.
    let doomed: VecDeque<Request> = match result {
        Ok(_) => VecDeque::new(),
        Err(_) => {
            let all = std::mem::take(&mut st.pending);
            let (doomed, kept) = all.into_iter().partition(|r| same_fd(&r.fd, &fd));
            st.pending = kept;
            doomed
        }
    };
    let cb = st.current.take();
    let keep = st.current_fd.take();
    drop(st);
    report(cb, keep, lp, c.as_mut(), shared, result);
    for req in doomed {
        if let Some(slot) = c.as_mut().op_mut() {
            *slot = req.op;
        }
        report(
            Some(req.cb),
            req.fd,
            lp,
            c.as_mut(),
            shared,
            Err(Error::Canceled),
        );
    }

    let mut st = shared.state.borrow_mut();
    let Some(next) = st.pending.pop_front() else {
        st.running = false;
        drop(st);
        c.take_op(); // release the last buffer
        return Step::Idle;
    };
    let same = same_fd(&next.fd, &fd);
    let op = begin(&mut st, next);
    let fresh = !same || st.doomed;
    drop(st);
    drop(fd); // may close the descriptor: no borrow held
    if fresh {
        return Step::Start(op);
    }
    if let Some(slot) = c.op_mut() {
        *slot = op;
    }
    Step::Continue
}

/// Call a finished request's callback (without holding any borrow, and with its
/// descriptor lent to the thread) and requeue it if it rearms; its buffer is in `c`'s
/// operation.
fn report(
    cb: Option<Callback>,
    keep: Option<Arc<SharedFd>>,
    lp: &mut Loop,
    mut c: Pin<&mut Completion>,
    shared: &Shared,
    result: Result<usize, Error>,
) {
    let Some(mut f) = cb else { return };
    let mut keep = keep;
    let action = fd::lending(&mut keep, || {
        f.call(lp, c.as_mut(), OpResult::Write(result))
    });
    if action == CallbackAction::Rearm {
        let op = c.take_op().unwrap_or(Op::Noop);
        let req = Request {
            op,
            fd: keep,
            cb: f,
        };
        shared.state.borrow_mut().pending.push_back(req);
    } else {
        drop((f, keep)); // user drop code runs with no borrow held
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
