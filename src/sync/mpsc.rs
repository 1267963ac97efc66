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
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
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
    /// Most queued values (`usize::MAX`: unbounded).
    cap: usize,
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
            cap,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing that can panic runs under the lock (values are dropped and wakers woken
        // after unlocking), so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `v` if there is room; the receiver's waker to wake (after unlocking).
    fn try_push(&self, st: &mut State<T>, v: T) -> Result<Option<Waker>, TrySendError<T>> {
        if st.rx_closed {
            return Err(TrySendError::Closed(v));
        }
        if st.queue.len() >= self.cap {
            return Err(TrySendError::Full(v));
        }
        st.queue.push_back(v);
        Ok(st.rx_waker.take())
    }

    fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        let waker = self.try_push(&mut self.lock(), v)?;
        if let Some(w) = waker {
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
        let mut st = this.chan.lock();
        let pos = this
            .waiter
            .and_then(|id| st.send_waiters.iter().position(|(w, _)| *w == id));
        match this.chan.try_push(&mut st, v) {
            Ok(rx) => {
                if let Some(i) = pos {
                    st.send_waiters.remove(i);
                }
                this.waiter = None;
                drop(st);
                if let Some(w) = rx {
                    w.wake();
                }
                Poll::Ready(Ok(()))
            }
            Err(TrySendError::Closed(v)) => {
                if let Some(i) = pos {
                    st.send_waiters.remove(i);
                }
                this.waiter = None;
                Poll::Ready(Err(SendError(v)))
            }
            Err(TrySendError::Full(v)) => {
                this.value = Some(v);
                match pos {
                    Some(i) => {
                        let w = &mut st.send_waiters[i].1;
                        if !w.will_wake(cx.waker()) {
                            *w = cx.waker().clone();
                        }
                    }
                    None => {
                        // Woken (or new): a woken sender that lost its slot to another
                        // goes back to the front, a new one to the back.
                        let id = st.next_waiter;
                        st.next_waiter += 1;
                        if this.waiter.is_some() {
                            st.send_waiters.push_front((id, cx.waker().clone()));
                        } else {
                            st.send_waiters.push_back((id, cx.waker().clone()));
                        }
                        this.waiter = Some(id);
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for SendFut<'_, T> {
    fn drop(&mut self) {
        let Some(id) = self.waiter else { return };
        let next = {
            let mut st = self.chan.lock();
            match st.send_waiters.iter().position(|(w, _)| *w == id) {
                Some(i) => {
                    st.send_waiters.remove(i);
                    None
                }
                // We were woken for a free slot we will not use: pass it on.
                None if st.queue.len() < self.chan.cap => st.send_waiters.pop_front(),
                None => None,
            }
        };
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
        if let Some(v) = self.local.pop_front() {
            return Ok(v);
        }
        let (v, waiter) = {
            let mut st = self.chan.lock();
            if self.chan.cap == usize::MAX {
                // Take the whole queue (both deques keep their capacity).
                std::mem::swap(&mut st.queue, &mut self.local);
            }
            let next = match self.local.pop_front() {
                Some(v) => Some(v),
                None => st.queue.pop_front(),
            };
            match next {
                Some(v) => (v, st.send_waiters.pop_front()),
                None if st.senders == 0 || st.rx_closed => return Err(TryRecvError::Disconnected),
                None => return Err(TryRecvError::Empty),
            }
        };
        if let Some((_, w)) = waiter {
            w.wake();
        }
        Ok(v)
    }

    /// Close the channel: sends fail from now on (waiting senders are woken to fail),
    /// values already queued can still be received.
    pub fn close(&mut self) {
        let waiters = {
            let mut st = self.chan.lock();
            st.rx_closed = true;
            std::mem::take(&mut st.send_waiters)
        };
        wake_all(waiters);
    }

    /// The number of values queued.
    pub fn len(&self) -> usize {
        self.local.len() + self.chan.lock().queue.len()
    }

    /// True if no value is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.try_recv() {
            Ok(v) => Poll::Ready(Some(v)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => {
                let mut st = self.chan.lock();
                // Look again under the lock: a send may have come in between.
                if !st.queue.is_empty() || st.senders == 0 || st.rx_closed {
                    drop(st);
                    return self.poll_recv(cx);
                }
                match &st.rx_waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => st.rx_waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (queued, waiters) = {
            let mut st = self.chan.lock();
            st.rx_closed = true;
            st.rx_waker = None;
            (
                std::mem::take(&mut st.queue),
                std::mem::take(&mut st.send_waiters),
            )
        };
        drop(queued);
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
