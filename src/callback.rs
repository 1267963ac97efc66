//! Type-erased storage for a completion's callback, inline when small.
//!
//! A closure of up to four words (an `Rc`, a couple of integers...) is stored inside the
//! [`Completion`] itself, so setting a callback allocates nothing; a larger closure is boxed
//! once when it is set (and reused by every rearm).

use std::mem::{self, MaybeUninit};
use std::pin::Pin;

use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
use crate::result::OpResult;

const WORDS: usize = 4;

type CallFn = unsafe fn(*mut u8, &mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction;
type DropFn = unsafe fn(*mut u8);

/// A `FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static`,
/// stored without allocation when it fits in four words.
pub(crate) struct Callback {
    data: MaybeUninit<[usize; WORDS]>,
    vtable: Option<(CallFn, DropFn)>,
}

unsafe fn call_impl<T>(
    data: *mut u8,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: OpResult,
) -> CallbackAction
where
    T: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction,
{
    // SAFETY: `data` holds an initialised `T` (written by `Callback::store::<T>`).
    let f = unsafe { &mut *data.cast::<T>() };
    f(lp, c, r)
}

unsafe fn drop_impl<T>(data: *mut u8) {
    // SAFETY: `data` holds an initialised `T` that is dropped exactly once.
    unsafe { std::ptr::drop_in_place(data.cast::<T>()) }
}

impl Callback {
    /// No callback: calling it does nothing and disarms.
    pub(crate) const fn empty() -> Callback {
        Callback {
            data: MaybeUninit::uninit(),
            vtable: None,
        }
    }

    /// Store `f`, inline if it fits.
    pub(crate) fn new<F>(f: F) -> Callback
    where
        F: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static,
    {
        if mem::size_of::<F>() <= mem::size_of::<[usize; WORDS]>()
            && mem::align_of::<F>() <= mem::align_of::<usize>()
        {
            Self::store(f)
        } else {
            Self::store(Box::new(f))
        }
    }

    fn store<T>(t: T) -> Callback
    where
        T: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static,
    {
        assert!(mem::size_of::<T>() <= mem::size_of::<[usize; WORDS]>());
        assert!(mem::align_of::<T>() <= mem::align_of::<usize>());
        let mut data = MaybeUninit::<[usize; WORDS]>::uninit();
        // SAFETY: `data` is large and aligned enough for `T` (asserted above).
        unsafe { data.as_mut_ptr().cast::<T>().write(t) };
        Callback {
            data,
            vtable: Some((call_impl::<T>, drop_impl::<T>)),
        }
    }

    /// True when no callback is stored.
    pub(crate) fn is_empty(&self) -> bool {
        self.vtable.is_none()
    }

    /// Run the callback (an empty one disarms).
    pub(crate) fn call(
        &mut self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        r: OpResult,
    ) -> CallbackAction {
        match self.vtable {
            // SAFETY: the vtable matches the type stored in `data`.
            Some((call, _)) => unsafe { call(self.data.as_mut_ptr().cast(), lp, c, r) },
            None => CallbackAction::Disarm,
        }
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some((_, drop_fn)) = self.vtable.take() {
            // SAFETY: the vtable matches the stored type, and `take` makes this run once.
            unsafe { drop_fn(self.data.as_mut_ptr().cast()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn small_closures_inline_large_boxed_both_dropped() {
        let token = Rc::new(());
        let t1 = token.clone();
        let small = Callback::new(move |_, _, _| {
            let _ = &t1;
            CallbackAction::Disarm
        });
        let t2 = token.clone();
        let big = [0u64; 16];
        let large = Callback::new(move |_, _, _| {
            let _ = (&t2, big);
            CallbackAction::Rearm
        });
        assert_eq!(Rc::strong_count(&token), 3);
        assert!(!small.is_empty() && !large.is_empty());
        drop(small);
        drop(large);
        assert_eq!(
            Rc::strong_count(&token),
            1,
            "captured state is released on drop"
        );
        assert!(Callback::empty().is_empty());
    }
}
