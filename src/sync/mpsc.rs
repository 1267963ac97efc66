//! Multi-producer, single-consumer channels: [`channel`] (bounded: `send` waits while
//! the channel is full) and [`unbounded_channel`] (`send` never waits).
//!
//! Senders are `Clone + Send + Sync`; the [`Receiver`] is `Send`. The channel closes
//! when every sender is dropped (the receiver gets the queued values, then `None`) or
//! when the receiver is dropped or [`close`](Receiver::close)s it (sends fail with the
//! value handed back). Waiting senders and a waiting receiver are woken by whatever
//! ends their wait, from any thread; see the [`sync` module docs](super).
//!
//! ```
//! use xev::sync::mpsc;
//!
//! xev::block_on(async {
//!     let (tx, mut rx) = mpsc::channel(1);
//!     tx.send(1).await.unwrap();
//!     assert!(matches!(tx.try_send(2), Err(mpsc::TrySendError::Full(2))));
//!     let t = std::thread::spawn(move || xev::block_on(tx.send(2)));
//!     assert_eq!(rx.recv().await, Some(1));
//!     assert_eq!(rx.recv().await, Some(2));
//!     t.join().unwrap().unwrap();
//!     assert_eq!(rx.recv().await, None); // every sender is gone
//! });
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use concurrent_queue::{ConcurrentQueue, PushError};

struct State<T> {
    /// Unbounded channels' values (bounded ones use `Chan::ring`).
    queue: VecDeque<T>,
    rx_waker: Option<Waker>,
    /// Senders waiting for room (bounded channels), oldest first.
    send_waiters: VecDeque<(u64, Waker)>,
    next_waiter: u64,
    senders: usize,
    /// The receiver was dropped or closed the channel.
    rx_closed: bool,
}

struct Chan<T> {
    state: Mutex<State<T>>,
    /// Bounded channels: the queued values, in a lock-free ring of `cap` slots, so a
    /// value moves in and out without the lock; the lock is taken only to sleep and to
    /// wake (see `Chan::push` and `Chan::room_freed`). `None`: unbounded.
    ring: Option<ConcurrentQueue<T>>,
    /// Most queued values (`usize::MAX`: unbounded).
    cap: usize,
    /// Bounded: the receiver registered its waker and may be asleep. A sender reads it
    /// after each push, the receiver re-checks the ring after setting it; a `SeqCst`
    /// fence between each side's write and read makes at least one of them see the
    /// other's (no lost wake-up).
    rx_waiting: AtomicBool,
    /// Bounded: `send_waiters.len()`, read without the lock after each receive (with the
    /// same fence rule against the waiting sender's retry).
    send_waiting: AtomicUsize,
}

impl<T> Chan<T> {
    fn new(cap: usize) -> Arc<Chan<T>> {
        Arc::new(Chan {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                rx_waker: None,
                send_waiters: VecDeque::new(),
                next_waiter: 0,
                senders: 1,
                rx_closed: false,
            }),
            ring: (cap != usize::MAX).then(|| ConcurrentQueue::bounded(cap)),
            cap,
            rx_waiting: AtomicBool::new(false),
            send_waiting: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing that can panic runs under the lock (values and wakers are dropped, and
        // wakers woken, after unlocking: a destructor may do anything, such as drop a
        // sender of this channel, which takes the lock), so a poisoned state is still
        // consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `v` if there is room; the receiver's waker to wake (after unlocking, for
    /// an unbounded channel).
    fn push(&self, v: T) -> Result<Option<Waker>, TrySendError<T>> {
        let Some(ring) = &self.ring else {
            return self.try_push(&mut self.lock(), v);
        };
        match ring.push(v) {
            Ok(()) => {}
            Err(PushError::Full(v)) => return Err(TrySendError::Full(v)),
            Err(PushError::Closed(v)) => return Err(TrySendError::Closed(v)),
        }
        // Against the receiver's "set rx_waiting, then look at the ring" (see there).
        fence(Ordering::SeqCst);
        if !self.rx_waiting.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut st = self.lock();
        self.rx_waiting.store(false, Ordering::Relaxed);
        Ok(st.rx_waker.take())
    }

    /// Unbounded: queue `v` under the lock held as `st`.
    fn try_push(&self, st: &mut State<T>, v: T) -> Result<Option<Waker>, TrySendError<T>> {
        if st.rx_closed {
            return Err(TrySendError::Closed(v));
        }
        st.queue.push_back(v);
        Ok(st.rx_waker.take())
    }

    /// Bounded: the receiver took a value out of the ring: wake the oldest waiting
    /// sender, if any.
    fn room_freed(&self) {
        // Against the waiting sender's "count myself, then push again" (`SendFut::poll`).
        fence(Ordering::SeqCst);
        if self.send_waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let next = {
            let mut st = self.lock();
            let next = st.send_waiters.pop_front();
            self.send_waiting
                .store(st.send_waiters.len(), Ordering::Relaxed);
            next
        };
        if let Some((_, w)) = next {
            w.wake();
        }
    }

    fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        if let Some(w) = self.push(v)? {
            w.wake();
        }
        Ok(())
    }

    fn add_sender(&self) {
        self.lock().senders += 1;
    }

    fn drop_sender(&self) {
        let waker = {
            let mut st = self.lock();
            st.senders -= 1;
            if st.senders == 0 {
                st.rx_waker.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn is_closed(&self) -> bool {
        self.lock().rx_closed
    }

    /// The receiver closed the channel (or is gone): sends fail from now on; the
    /// waiting senders, to wake so that they fail.
    fn close(&self) -> VecDeque<(u64, Waker)> {
        let waiters = {
            let mut st = self.lock();
            st.rx_closed = true;
            self.send_waiting.store(0, Ordering::Relaxed);
            std::mem::take(&mut st.send_waiters)
        };
        if let Some(ring) = &self.ring {
            ring.close();
        }
        waiters
    }
}

/// Wake every waiting sender (the channel closed).
fn wake_all(waiters: VecDeque<(u64, Waker)>) {
    for (_, w) in waiters {
        w.wake();
    }
}

/// A bounded channel holding at most `capacity` values: [`Sender::send`] waits while it
/// is full.
///
/// # Panics
/// If `capacity` is 0 (a channel must be able to hold a value).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "xev::sync::mpsc::channel: capacity must be at least 1"
    );
    let chan = Chan::new(capacity);
    (
        Sender { chan: chan.clone() },
        Receiver {
            chan,
            local: VecDeque::new(),
        },
    )
}

/// An unbounded channel: [`UnboundedSender::send`] never waits (the queue grows).
///
/// ```
/// let (tx, mut rx) = xev::sync::mpsc::unbounded_channel();
/// for i in 0..3 {
///     let tx = tx.clone();
///     std::thread::spawn(move || tx.send(i).unwrap());
/// }
/// drop(tx);
/// let mut got = xev::block_on(async {
///     let mut v = Vec::new();
///     while let Some(i) = rx.recv().await {
///         v.push(i);
///     }
///     v
/// });
/// got.sort();
/// assert_eq!(got, [0, 1, 2]);
/// ```
pub fn unbounded_channel<T>() -> (UnboundedSender<T>, Receiver<T>) {
    let chan = Chan::new(usize::MAX);
    (
        UnboundedSender { chan: chan.clone() },
        Receiver {
            chan,
            local: VecDeque::new(),
        },
    )
}

/// The sending half of a bounded [`channel`]; clone it for more senders.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Send `v`, waiting while the channel is full. Fails (handing `v` back) if the
    /// receiver is gone or closed the channel, also while waiting. Dropping the future
    /// gives up without sending.
    pub fn send(&self, v: T) -> SendFut<'_, T> {
        SendFut {
            chan: &self.chan,
            value: Some(v),
            waiter: None,
        }
    }

    /// Send `v` if there is room now.
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        self.chan.try_send(v)
    }

    /// True once the receiver is gone or closed the channel (sends fail).
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// The channel's capacity.
    pub fn max_capacity(&self) -> usize {
        self.chan.cap
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.chan.cap)
            .finish_non_exhaustive()
    }
}

/// The future of [`Sender::send`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct SendFut<'a, T> {
    chan: &'a Chan<T>,
    value: Option<T>,
    /// Our entry in the waiting senders, while queued.
    waiter: Option<u64>,
}

// The value is only moved, never pinned.
impl<T> Unpin for SendFut<'_, T> {}

impl<T> Future for SendFut<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let v = this
            .value
            .take()
            .expect("xev::sync::mpsc::SendFut polled after it completed");
        let v = match this.chan.push(v) {
            Ok(rx) => return Poll::Ready(this.sent(rx)),
            Err(TrySendError::Closed(v)) => return Poll::Ready(this.refused(v)),
            Err(TrySendError::Full(v)) => v,
        };
        let old = {
            let mut st = this.chan.lock();
            if st.rx_closed {
                drop(st);
                return Poll::Ready(this.refused(v));
            }
            let pos = this
                .waiter
                .and_then(|id| st.send_waiters.iter().position(|(w, _)| *w == id));
            match pos {
                Some(i) => {
                    let w = &mut st.send_waiters[i].1;
                    if w.will_wake(cx.waker()) {
                        None
                    } else {
                        Some(std::mem::replace(w, cx.waker().clone()))
                    }
                }
                None => {
                    // Woken (or new): a woken sender that lost its slot to another goes
                    // back to the front, a new one to the back.
                    let id = st.next_waiter;
                    st.next_waiter += 1;
                    if this.waiter.is_some() {
                        st.send_waiters.push_front((id, cx.waker().clone()));
                    } else {
                        st.send_waiters.push_back((id, cx.waker().clone()));
                    }
                    this.waiter = Some(id);
                    this.chan
                        .send_waiting
                        .store(st.send_waiters.len(), Ordering::Relaxed);
                    None
                }
            }
        };
        drop(old); // unlocked (see `Chan::lock`)
                   // Counted among the waiting senders; now look again (against the receiver's
                   // "take a value, then look for waiting senders": see `Chan::room_freed`).
        fence(Ordering::SeqCst);
        match this.chan.push(v) {
            Ok(rx) => Poll::Ready(this.sent(rx)),
            Err(TrySendError::Closed(v)) => Poll::Ready(this.refused(v)),
            Err(TrySendError::Full(v)) => {
                this.value = Some(v);
                Poll::Pending
            }
        }
    }
}

impl<T> SendFut<'_, T> {
    /// The value is queued: leave the waiting senders, wake the receiver.
    fn sent(&mut self, rx: Option<Waker>) -> Result<(), SendError<T>> {
        self.leave();
        if let Some(w) = rx {
            w.wake();
        }
        Ok(())
    }

    /// The channel is closed: leave the waiting senders, hand `v` back.
    fn refused(&mut self, v: T) -> Result<(), SendError<T>> {
        self.leave();
        Err(SendError(v))
    }

    /// Leave the waiting senders, if still among them (a woken one no longer is).
    fn leave(&mut self) {
        let Some(id) = self.waiter.take() else { return };
        let mut st = self.chan.lock();
        let Some(i) = st.send_waiters.iter().position(|(w, _)| *w == id) else {
            return;
        };
        let ours = st.send_waiters.remove(i);
        self.chan
            .send_waiting
            .store(st.send_waiters.len(), Ordering::Relaxed);
        drop(st);
        drop(ours); // unlocked (see `Chan::lock`)
    }
}

impl<T> Drop for SendFut<'_, T> {
    fn drop(&mut self) {
        let Some(id) = self.waiter else { return };
        let (ours, next) = {
            let mut st = self.chan.lock();
            let (ours, next) = match st.send_waiters.iter().position(|(w, _)| *w == id) {
                Some(i) => (st.send_waiters.remove(i), None),
                // We were woken for a free slot we will not use: pass it on.
                None if self
                    .chan
                    .ring
                    .as_ref()
                    .is_some_and(|r| r.len() < self.chan.cap) =>
                {
                    (None, st.send_waiters.pop_front())
                }
                None => (None, None),
            };
            self.chan
                .send_waiting
                .store(st.send_waiters.len(), Ordering::Relaxed);
            (ours, next)
        };
        drop(ours); // unlocked (see `Chan::lock`)
        if let Some((_, w)) = next {
            w.wake();
        }
    }
}

impl<T> fmt::Debug for SendFut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFut")
            .field("waiting", &self.waiter.is_some())
            .finish_non_exhaustive()
    }
}

/// The sending half of an [`unbounded_channel`]; clone it for more senders.
pub struct UnboundedSender<T> {
    chan: Arc<Chan<T>>,
}

impl<T> UnboundedSender<T> {
    /// Queue `v` (never waits); fails, handing `v` back, if the receiver is gone or
    /// closed the channel.
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        self.chan.try_send(v).map_err(|e| SendError(e.into_inner()))
    }

    /// True once the receiver is gone or closed the channel (sends fail).
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }
}

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        UnboundedSender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for UnboundedSender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

impl<T> fmt::Debug for UnboundedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnboundedSender").finish_non_exhaustive()
    }
}

/// The receiving half of a [`channel`] or [`unbounded_channel`]. It is also a
/// [`Stream`](futures_core::Stream) of the values.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
    /// Unbounded channels: values taken from the shared queue in one batch (one lock
    /// for many values), received from here first. Always empty for bounded channels,
    /// whose capacity counts every value not received yet.
    local: VecDeque<T>,
}

impl<T> Receiver<T> {
    /// The next value, waiting for one; `None` once the channel is closed (every sender
    /// dropped, or [`close`](Self::close) called) and empty.
    pub fn recv(&mut self) -> Recv<'_, T> {
        Recv { rx: self }
    }

    /// The next value if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        if let Some(ring) = &self.chan.ring {
            if let Ok(v) = ring.pop() {
                self.chan.room_freed();
                return Ok(v);
            }
            let ended = {
                let st = self.chan.lock();
                st.senders == 0 || st.rx_closed
            };
            if !ended {
                return Err(TryRecvError::Empty);
            }
            // Look again: a value sent just before the last sender went is in the ring.
            return match ring.pop() {
                Ok(v) => {
                    self.chan.room_freed();
                    Ok(v)
                }
                Err(_) => Err(TryRecvError::Disconnected),
            };
        }
        if let Some(v) = self.local.pop_front() {
            return Ok(v);
        }
        let mut st = self.chan.lock();
        // Take the whole queue (both deques keep their capacity).
        std::mem::swap(&mut st.queue, &mut self.local);
        match self.local.pop_front() {
            Some(v) => Ok(v),
            None if st.senders == 0 || st.rx_closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Close the channel: sends fail from now on (waiting senders are woken to fail),
    /// values already queued can still be received.
    pub fn close(&mut self) {
        wake_all(self.chan.close());
    }

    /// The number of values queued.
    pub fn len(&self) -> usize {
        match &self.chan.ring {
            Some(ring) => ring.len(),
            None => self.local.len() + self.chan.lock().queue.len(),
        }
    }

    /// True if no value is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            match self.try_recv() {
                Ok(v) => return Poll::Ready(Some(v)),
                Err(TryRecvError::Disconnected) => return Poll::Ready(None),
                Err(TryRecvError::Empty) => {}
            }
            let old = {
                let mut st = self.chan.lock();
                // Look again under the lock: a send may have come in between.
                if !st.queue.is_empty() || st.senders == 0 || st.rx_closed {
                    continue;
                }
                let old = match &st.rx_waker {
                    Some(w) if w.will_wake(cx.waker()) => None,
                    _ => st.rx_waker.replace(cx.waker().clone()),
                };
                if self.chan.ring.is_none() {
                    // Unbounded: every send takes the lock and sees the waker.
                    drop(st);
                    drop(old); // unlocked (see `Chan::lock`)
                    return Poll::Pending;
                }
                self.chan.rx_waiting.store(true, Ordering::Relaxed);
                old
            };
            drop(old); // unlocked (see `Chan::lock`)
                       // Bounded: registered; now look at the ring again (against a sender's "push,
                       // then look for a waiting receiver": see `Chan::push`).
            fence(Ordering::SeqCst);
            if self.chan.ring.as_ref().is_some_and(|r| r.is_empty()) {
                return Poll::Pending;
            }
            // A value came in meanwhile: take it. A sender that saw the flag wakes this
            // task once more at most (harmless).
            self.chan.rx_waiting.store(false, Ordering::Relaxed);
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let waiters = self.chan.close();
        let (queued, waker) = {
            let mut st = self.chan.lock();
            self.chan.rx_waiting.store(false, Ordering::Relaxed);
            (std::mem::take(&mut st.queue), st.rx_waker.take())
        };
        // Unlocked (see `Chan::lock`).
        drop(queued);
        drop(waker);
        if let Some(ring) = &self.chan.ring {
            while let Ok(v) = ring.pop() {
                drop(v);
            }
        }
        wake_all(waiters);
    }
}

// Values are only moved, never pinned.
impl<T> Unpin for Receiver<T> {}

impl<T> futures_core::Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("queued", &self.len())
            .finish_non_exhaustive()
    }
}

/// The future of [`Receiver::recv`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Recv<'a, T> {
    rx: &'a mut Receiver<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> fmt::Debug for Recv<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv").finish_non_exhaustive()
    }
}

/// A send failed because the receiver is gone or closed the channel; holds the value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a closed channel")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Why [`Sender::try_send`] failed; holds the value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The channel is full.
    Full(T),
    /// The receiver is gone or closed the channel.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Closed(v) => v,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the channel is full"),
            TrySendError::Closed(_) => f.write_str("sending on a closed channel"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// Why [`Receiver::try_recv`] returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing is queued now.
    Empty,
    /// Nothing is queued and nothing will be: the channel is closed.
    Disconnected,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("the channel is empty"),
            TryRecvError::Disconnected => f.write_str("the channel is empty and closed"),
        }
    }
}

impl std::error::Error for TryRecvError {}
