//! [`Timer`]: run, reset and cancel one-shot timers with a typed callback.

use std::pin::Pin;

use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
use crate::result::{CancelError, Error, OpResult, TimerTrigger};

use super::mismatch;

/// libxev's timer watcher.
///
/// The callback receives `Ok(())` when the deadline passes and `Err(Error::Canceled)`
/// when a [`cancel`](Self::cancel) stops it first. A timer never fires earlier than asked.
///
/// ```
/// use std::{cell::Cell, pin::pin, rc::Rc};
/// use xev::{CallbackAction, Completion, Loop, Options, RunMode, Timer};
///
/// let fired = Rc::new(Cell::new(0));
/// let mut c = pin!(Completion::new());
/// let mut lp = Loop::new(Options::default())?;
/// Timer::new().run(&mut lp, c.as_mut(), 5, fired.clone(), |fired, _lp, _c, r| {
///     assert!(r.is_ok());
///     fired.set(fired.get() + 1);
///     CallbackAction::Disarm
/// });
/// lp.run(RunMode::UntilDone)?;
/// assert_eq!(fired.get(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct Timer;

impl Timer {
    /// A timer watcher (it holds no state: the completion is the timer).
    pub fn new() -> Timer {
        Timer
    }

    /// Fire `cb` once, `ms` milliseconds from now. `Rearm` fires it again on the next
    /// tick (the absolute deadline is kept); to repeat every `ms`, call `run` again from
    /// the callback instead.
    pub fn run<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, ms: u64, userdata: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        lp.timer(c, ms, adapt(userdata, cb));
    }

    /// Restart `c` to fire `ms` milliseconds from now with this userdata and callback,
    /// whether it is running, never ran, or already fired. The callback fires once, with
    /// `Ok(())`; a reset never reports `Canceled`. (libxev takes a second completion to
    /// cancel the old timer; xev's timers live in user space, so none is needed.)
    pub fn reset<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, ms: u64, userdata: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        lp.timer_reset(c, ms, adapt(userdata, cb));
    }

    /// Cancel the timer `timer` using the completion `c_cancel`. The timer's callback
    /// gets `Err(Error::Canceled)`; `cb` gets `Ok(())`, or `Err(CancelError::NotFound)`
    /// if the timer was not running.
    pub fn cancel<U, F>(
        &self,
        lp: &mut Loop,
        timer: &Completion,
        c_cancel: Pin<&mut Completion>,
        userdata: U,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<(), CancelError>,
            ) -> CallbackAction
            + 'static,
    {
        let (mut ud, mut cb) = (userdata, cb);
        lp.cancel(c_cancel, timer, move |lp, c, r| {
            let r = match r {
                OpResult::Cancel(r) => r,
                _ => Err(CancelError::Io(mismatch().into())),
            };
            cb(&mut ud, lp, c, r)
        });
    }
}

/// Wrap a typed timer callback as a core callback.
fn adapt<U, F>(
    userdata: U,
    cb: F,
) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static
where
    U: 'static,
    F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
        + 'static,
{
    let (mut ud, mut cb) = (userdata, cb);
    move |lp, c, r| {
        let r = match r {
            OpResult::Timer(TimerTrigger::Expiration) => Ok(()),
            OpResult::Timer(TimerTrigger::Canceled) => Err(Error::Canceled),
            _ => Err(mismatch()),
        };
        cb(&mut ud, lp, c, r)
    }
}
