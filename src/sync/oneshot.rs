//! A channel for one value: [`channel`] gives a [`Sender`] (`send` never waits) and a
//! [`Receiver`], which is a future of the value.
//!
//! Both ends are `Send`. Dropping the sender without sending makes the receiver resolve
//! to [`RecvError`]; dropping (or [`close`](Receiver::close)-ing) the receiver makes
//! `send` hand the value back. The receiver is woken from any thread; see the
//! [`sync` module docs](super).
//!
//! ```
//! use xev::sync::oneshot;
//!
//! let (tx, rx) = oneshot::channel();
//! std::thread::spawn(move || tx.send("hello").unwrap());
//! assert_eq!(xev::block_on(rx), Ok("hello"));
//!
//! let (tx, rx) = oneshot::channel::<u8>();
//! drop(tx);
//! assert_eq!(xev::block_on(rx), Err(oneshot::RecvError));
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    value: Option<T>,
    /// The sender sent or was dropped.
    tx_done: bool,
    /// The receiver was dropped or closed the channel.
    rx_closed: bool,
    rx_waker: Option<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No user code runs under the lock (values and wakers are dropped, and wakers
        // woken, after unlocking): a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sender is done (sent or dropped): wake the receiver.
    fn finish_tx(&self, value: Option<T>) -> Result<(), T> {
        let waker = {
            let mut st = self.lock();
            if st.rx_closed {
                return match value {
                    Some(v) => Err(v),
                    None => Ok(()),
                };
            }
            st.tx_done = true;
            st.value = value;
            st.rx_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

/// A new one-value channel.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            value: None,
            tx_done: false,
            rx_closed: false,
            rx_waker: None,
        }),
    });
    (
        Sender {
            shared: Some(shared.clone()),
        },
        Receiver {
            shared,
            done: false,
        },
    )
}

/// The sending end of a oneshot [`channel`].
pub struct Sender<T> {
    /// `None` once used.
    shared: Option<Arc<Shared<T>>>,
}

impl<T> Sender<T> {
    /// Send `v` (never waits), waking the receiver; hands `v` back if the receiver is
    /// gone or closed the channel.
    pub fn send(mut self, v: T) -> Result<(), T> {
        let shared = self.shared.take().expect("a Sender is used once");
        shared.finish_tx(Some(v))
    }

    /// True once the receiver is gone or closed the channel.
    pub fn is_closed(&self) -> bool {
        self.shared.as_ref().is_none_or(|s| s.lock().rx_closed)
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            let _ = shared.finish_tx(None);
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

/// The receiving end of a oneshot [`channel`]: a future of the value, or of
/// [`RecvError`] if the sender was dropped without sending.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The value (or error) was returned.
    done: bool,
}

impl<T> Receiver<T> {
    /// The value if it was sent, without waiting. `Err(TryRecvError::Empty)` while the
    /// sender may still send.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut st = self.shared.lock();
        match st.value.take() {
            Some(v) => {
                self.done = true;
                Ok(v)
            }
            None if st.tx_done || st.rx_closed => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Refuse the value: a later `send` fails and hands it back. A value sent before
    /// this call can still be taken with [`try_recv`](Self::try_recv).
    pub fn close(&mut self) {
        self.shared.lock().rx_closed = true;
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    /// # Panics
    /// If polled again after it returned `Ready`.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "oneshot::Receiver polled after it completed");
        let mut st = self.shared.lock();
        if let Some(v) = st.value.take() {
            drop(st);
            self.done = true;
            return Poll::Ready(Ok(v));
        }
        if st.tx_done || st.rx_closed {
            drop(st);
            self.done = true;
            return Poll::Ready(Err(RecvError));
        }
        let old = match &st.rx_waker {
            Some(w) if w.will_wake(cx.waker()) => None,
            _ => st.rx_waker.replace(cx.waker().clone()),
        };
        drop(st);
        drop(old); // unlocked: a waker's destructor may do anything (drop our sender)
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (value, waker) = {
            let mut st = self.shared.lock();
            st.rx_closed = true;
            (st.value.take(), st.rx_waker.take())
        };
        // Outside the lock: their destructors may do anything (a waker may own the
        // sender, whose drop takes the lock).
        drop(value);
        drop(waker);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// The sender was dropped without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the oneshot sender was dropped without sending")
    }
}

impl std::error::Error for RecvError {}

/// Why [`Receiver::try_recv`] returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing was sent yet.
    Empty,
    /// Nothing was sent and nothing will be (the sender is gone, or the channel closed),
    /// or the value was already taken.
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("nothing was sent yet"),
            TryRecvError::Closed => f.write_str("the oneshot channel is closed"),
        }
    }
}

impl std::error::Error for TryRecvError {}
