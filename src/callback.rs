//! Type-erased storage for a completion's callback, inline when small.
//!
//! A closure of up to two words (an `Rc` and an index, two pointers...) is stored inside
//! the [`Completion`] itself next to one pointer to a static vtable, so setting a callback
//! allocates nothing; a larger closure is boxed once when it is set (and reused by every
//! rearm). Two words is what the runtime's and the watchers' own callbacks capture; the
//! third word a larger inline area would cost is paid by every completion, and the whole
//! completion is 128 bytes.

use std::mem::{self, MaybeUninit};
use std::pin::Pin;

use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
use crate::result::OpResult;

/// Inline capacity, in machine words.
const WORDS: usize = 2;

type CallFn = unsafe fn(*mut u8, &mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction;
type DropFn = unsafe fn(*mut u8);

/// How to call and drop the closure type stored in a [`Callback`]: one static table per
/// type, so a callback carries a single pointer to it.
struct VTable {
    call: CallFn,
    drop: DropFn,
}

/// The vtable of `T` (a promoted constant: `&VTableOf::<T>::VTABLE` is `'static`).
struct VTableOf<T>(std::marker::PhantomData<T>);

impl<T> VTableOf<T>
where
    T: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction,
{
    const VTABLE: VTable = VTable {
        call: call_impl::<T>,
        drop: drop_impl::<T>,
    };
}

/// A `FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static`,
/// stored without allocation when it fits in two words.
pub(crate) struct Callback {
    data: MaybeUninit<[usize; WORDS]>,
    vtable: Option<&'static VTable>,
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

    /// Whether a closure of type `F` is stored inline (no allocation).
    pub(crate) const fn fits_inline<F>() -> bool {
        mem::size_of::<F>() <= mem::size_of::<[usize; WORDS]>()
            && mem::align_of::<F>() <= mem::align_of::<usize>()
    }

    /// Store `f`, inline if it fits.
    pub(crate) fn new<F>(f: F) -> Callback
    where
        F: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static,
    {
        if Self::fits_inline::<F>() {
            Self::store(f)
        } else {
            Self::store(Box::new(f))
        }
    }

    fn store<T>(t: T) -> Callback
    where
        T: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static,
    {
        assert!(Self::fits_inline::<T>());
        let mut data = MaybeUninit::<[usize; WORDS]>::uninit();
        // SAFETY: `data` is large and aligned enough for `T` (asserted above).
        unsafe { data.as_mut_ptr().cast::<T>().write(t) };
        Callback {
            data,
            vtable: Some(&VTableOf::<T>::VTABLE),
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
            Some(vt) => unsafe { (vt.call)(self.data.as_mut_ptr().cast(), lp, c, r) },
            None => CallbackAction::Disarm,
        }
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(vt) = self.vtable.take() {
            // SAFETY: the vtable matches the stored type, and `take` makes this run once.
            unsafe { (vt.drop)(self.data.as_mut_ptr().cast()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
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

    /// The shapes the crate's own callbacks capture stay inline: the runtime's op slots
    /// (a pool pointer and a slot pointer), a watcher's userdata `Rc` plus a zero-sized
    /// user closure, and an `Rc` plus an index.
    #[test]
    fn two_word_captures_are_inline() {
        let (p, s) = (std::ptr::null::<u8>(), std::ptr::NonNull::<u64>::dangling());
        let rt_like = move |_: &mut Loop, _: Pin<&mut Completion>, _: OpResult| {
            let _ = (p, s);
            CallbackAction::Disarm
        };
        assert!(Callback::fits_inline_of(&rt_like));
        let ud = Rc::new(Cell::new(0usize));
        let user = |n: &mut Rc<Cell<usize>>| n.set(n.get() + 1);
        let watcher_like = move |_: &mut Loop, _: Pin<&mut Completion>, _: OpResult| {
            let mut ud = ud.clone();
            user(&mut ud);
            CallbackAction::Disarm
        };
        assert!(Callback::fits_inline_of(&watcher_like));
        let (rc, i) = (Rc::new(()), 7usize);
        let rc_index = move |_: &mut Loop, _: Pin<&mut Completion>, _: OpResult| {
            let _ = (&rc, i);
            CallbackAction::Disarm
        };
        assert!(Callback::fits_inline_of(&rc_index));
        let three = [0usize; 3];
        let too_big = move |_: &mut Loop, _: Pin<&mut Completion>, _: OpResult| {
            std::hint::black_box(&three);
            CallbackAction::Disarm
        };
        assert!(!Callback::fits_inline_of(&too_big));
    }

    /// A boxed callback is called and dropped through the same vtable path as an inline
    /// one, and calling an inline callback mutates its captured state in place.
    #[test]
    fn inline_state_is_mutated_in_place() {
        let hits = Rc::new(Cell::new(0));
        let h = hits.clone();
        let mut n = 0u32;
        let mut cb = Callback::new(move |_, _, _| {
            n += 1;
            h.set(n);
            CallbackAction::Rearm
        });
        let mut lp = Loop::new(crate::Options::default()).unwrap();
        let mut c = Box::pin(Completion::new());
        for want in 1..=3 {
            let r = OpResult::build(&crate::Op::Noop, 0, None);
            assert_eq!(cb.call(&mut lp, c.as_mut(), r), CallbackAction::Rearm);
            assert_eq!(hits.get(), want);
        }
        drop(cb);
        assert_eq!(Rc::strong_count(&hits), 1);
    }
}

#[cfg(test)]
impl Callback {
    /// [`fits_inline`](Self::fits_inline) for the type of `_f` (closures are unnameable).
    fn fits_inline_of<F>(_f: &F) -> bool {
        Self::fits_inline::<F>()
    }
}
