//! Type-erased storage for a completion's callback, inline when small.
//!
//! A closure of up to two words (an `Rc` and an index, two pointers...) is stored inside
//! the [`Completion`] itself next to one pointer to a static vtable, so setting a callback
//! allocates nothing. Two words is what the runtime's own callbacks capture; the third word
//! a larger inline area would cost is paid by every completion, and the whole completion is
//! 128 bytes.
//!
//! A larger closure of up to [`BLOCK`] bytes (a watcher's userdata, its callback and the
//! descriptor it keeps) goes in a block from a small per-thread cache: a block freed when
//! a callback is dropped is reused by the next one set, so a program that prepares a
//! completion again for every operation (as the watchers do) allocates only while the
//! cache warms up. Anything larger is boxed once when it is set (and reused by every
//! rearm).

use std::alloc::{self as heap, Layout};
use std::cell::Cell;
use std::marker::PhantomData;
use std::mem::{self, MaybeUninit};
use std::pin::Pin;
use std::ptr;

use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
use crate::result::OpResult;

/// Inline capacity, in machine words.
const WORDS: usize = 2;

/// Size of a cached block for closures too large to be inline.
pub(crate) const BLOCK: usize = 64;

/// Alignment of a cached block.
const BLOCK_ALIGN: usize = 16;

/// The layout every block is allocated and freed with.
const BLOCK_LAYOUT: Layout = match Layout::from_size_align(BLOCK, BLOCK_ALIGN) {
    Ok(l) => l,
    Err(_) => panic!("bad block layout"),
};

/// Free blocks a thread keeps: a callback dropped right after its replacement was set
/// (a completion prepared again from its own callback) is the common case, so a few do.
const CACHED: usize = 8;

/// A thread's free blocks (each `BLOCK_LAYOUT`, uninitialised).
struct BlockCache {
    blocks: [Cell<*mut u8>; CACHED],
    len: Cell<usize>,
}

impl Drop for BlockCache {
    fn drop(&mut self) {
        for b in &self.blocks[..self.len.get()] {
            // SAFETY: every cached block was allocated with `BLOCK_LAYOUT` and is owned by
            // the cache alone.
            unsafe { heap::dealloc(b.get(), BLOCK_LAYOUT) }
        }
    }
}

thread_local! {
    static FREE_BLOCKS: BlockCache = const {
        BlockCache {
            blocks: [const { Cell::new(ptr::null_mut()) }; CACHED],
            len: Cell::new(0),
        }
    };
}

/// A block for one closure: a cached one if any, else a new allocation.
fn take_block() -> *mut u8 {
    let cached = FREE_BLOCKS
        .try_with(|c| {
            let n = c.len.get();
            (n > 0).then(|| {
                c.len.set(n - 1);
                c.blocks[n - 1].get()
            })
        })
        .ok()
        .flatten();
    cached.unwrap_or_else(|| {
        // SAFETY: `BLOCK_LAYOUT` has a non-zero size.
        let p = unsafe { heap::alloc(BLOCK_LAYOUT) };
        if p.is_null() {
            heap::handle_alloc_error(BLOCK_LAYOUT);
        }
        p
    })
}

/// Return a block from [`take_block`] (its closure already dropped) to the cache, or free
/// it when the cache is full or gone (thread exit).
///
/// # Safety
/// `p` came from `take_block`, holds no live value, and is not used afterwards.
unsafe fn give_block(p: *mut u8) {
    let kept = FREE_BLOCKS
        .try_with(|c| {
            let n = c.len.get();
            if n < CACHED {
                c.blocks[n].set(p);
                c.len.set(n + 1);
                true
            } else {
                false
            }
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: the caller's contract; blocks are allocated with `BLOCK_LAYOUT`.
        unsafe { heap::dealloc(p, BLOCK_LAYOUT) }
    }
}

/// The closure in `data` called with the result at the last pointer, which it takes
/// (reads out: the caller must not use or drop it afterwards). Taken through a pointer,
/// the result is read where it was built: passed by value, it would first be copied to
/// the call's argument, and the closure's reads of that copy stall (the copy's 16-byte
/// stores do not forward to its 8-byte loads), a cost on every callback.
type CallFn = unsafe fn(*mut u8, &mut Loop, Pin<&mut Completion>, *mut OpResult) -> CallbackAction;
type DropFn = unsafe fn(*mut u8);

/// How to call and drop the closure type stored in a [`Callback`]: one static table per
/// type, so a callback carries a single pointer to it.
struct VTable {
    call: CallFn,
    drop: DropFn,
    /// The inline words hold a pointer to a cached block holding the closure.
    #[cfg_attr(not(test), allow(dead_code))]
    in_block: bool,
}

/// The vtable of `T` (a promoted constant: `&VTableOf::<T>::VTABLE` is `'static`).
struct VTableOf<T>(std::marker::PhantomData<T>);

impl<T> VTableOf<T>
where
    T: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction,
{
    /// `T` stored inline.
    const VTABLE: VTable = VTable {
        call: call_impl::<T>,
        drop: drop_impl::<T>,
        in_block: false,
    };

    /// `T` stored in a cached block whose pointer is stored inline.
    const IN_BLOCK: VTable = VTable {
        call: call_in_block::<T>,
        drop: drop_in_block::<T>,
        in_block: true,
    };
}

/// A `FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static`,
/// stored without allocation when it fits in two words.
pub(crate) struct Callback {
    data: MaybeUninit<[usize; WORDS]>,
    vtable: Option<&'static VTable>,
    /// The stored closure need not be `Send` or `Sync` (it may capture an `Rc`), but
    /// `MaybeUninit<[usize; 2]>` and a `&'static VTable` are both: without this marker a
    /// `Callback` would be `Send + Sync` automatically, and a type holding one (and
    /// nothing else that is `!Send`) could carry an `Rc` to another thread.
    _not_send: PhantomData<*mut ()>,
}

unsafe fn call_impl<T>(
    data: *mut u8,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: *mut OpResult,
) -> CallbackAction
where
    T: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction,
{
    // SAFETY: `data` holds an initialised `T` (written by `Callback::store::<T>`); `r`
    // is an initialised result handed over to us (see `CallFn`).
    let (f, r) = unsafe { (&mut *data.cast::<T>(), r.read()) };
    f(lp, c, r)
}

unsafe fn drop_impl<T>(data: *mut u8) {
    // SAFETY: `data` holds an initialised `T` that is dropped exactly once.
    unsafe { std::ptr::drop_in_place(data.cast::<T>()) }
}

unsafe fn call_in_block<T>(
    data: *mut u8,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: *mut OpResult,
) -> CallbackAction
where
    T: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction,
{
    // SAFETY: `data` holds the pointer to a block holding an initialised `T` (written by
    // `Callback::store_in_block::<T>`); `r` is handed over to us (see `CallFn`).
    let (f, r) = unsafe { (&mut *data.cast::<*mut T>().read(), r.read()) };
    f(lp, c, r)
}

unsafe fn drop_in_block<T>(data: *mut u8) {
    // SAFETY: as in `call_in_block`; the `T` is dropped exactly once, then its block is
    // given back and never used through this callback again.
    unsafe {
        let p = data.cast::<*mut T>().read();
        std::ptr::drop_in_place(p);
        give_block(p.cast());
    }
}

impl Callback {
    /// No callback: calling it does nothing and disarms.
    pub(crate) const fn empty() -> Callback {
        Callback {
            data: MaybeUninit::uninit(),
            vtable: None,
            _not_send: PhantomData,
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
        } else if Self::fits_block::<F>() {
            Self::store_in_block(f)
        } else {
            Self::store(Box::new(f))
        }
    }

    /// Whether a closure of type `F` (too large to be inline) goes in a cached block.
    const fn fits_block<F>() -> bool {
        mem::size_of::<F>() <= BLOCK && mem::align_of::<F>() <= BLOCK_ALIGN
    }

    fn store_in_block<T>(t: T) -> Callback
    where
        T: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static,
    {
        assert!(Self::fits_block::<T>());
        let p = take_block().cast::<T>();
        // SAFETY: the block is `BLOCK` bytes aligned to `BLOCK_ALIGN`, enough for `T`
        // (asserted above), and holds nothing.
        unsafe { p.write(t) };
        let mut data = MaybeUninit::<[usize; WORDS]>::uninit();
        // SAFETY: a pointer fits in the inline words.
        unsafe { data.as_mut_ptr().cast::<*mut T>().write(p) };
        Callback {
            data,
            vtable: Some(&VTableOf::<T>::IN_BLOCK),
            _not_send: PhantomData,
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
            _not_send: PhantomData,
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
        let mut r = MaybeUninit::new(r);
        // SAFETY: `r` is initialised and not used after this.
        unsafe { self.call_taking(lp, c, r.as_mut_ptr()) }
    }

    /// [`call`](Self::call) with the result taken from where it lies (the loop's hot
    /// path; see `CallFn`).
    ///
    /// # Safety
    /// `r` is initialised; it is moved out (or dropped), so the caller must not use or
    /// drop it afterwards.
    #[inline]
    pub(crate) unsafe fn call_taking(
        &mut self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        r: *mut OpResult,
    ) -> CallbackAction {
        match self.vtable {
            // SAFETY: the vtable matches the type stored in `data`; `r` is handed over
            // (the caller's contract).
            Some(vt) => unsafe { (vt.call)(self.data.as_mut_ptr().cast(), lp, c, r) },
            None => {
                // SAFETY: the caller's contract: ours to drop.
                unsafe { r.drop_in_place() };
                CallbackAction::Disarm
            }
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
        assert!(fits_inline_of(&rt_like));
        let ud = Rc::new(Cell::new(0usize));
        let user = |n: &mut Rc<Cell<usize>>| n.set(n.get() + 1);
        let watcher_like = move |_: &mut Loop, _: Pin<&mut Completion>, _: OpResult| {
            let mut ud = ud.clone();
            user(&mut ud);
            CallbackAction::Disarm
        };
        assert!(fits_inline_of(&watcher_like));
        let (rc, i) = (Rc::new(()), 7usize);
        let rc_index = move |_: &mut Loop, _: Pin<&mut Completion>, _: OpResult| {
            let _ = (&rc, i);
            CallbackAction::Disarm
        };
        assert!(fits_inline_of(&rc_index));
        let three = [0usize; 3];
        let too_big = move |_: &mut Loop, _: Pin<&mut Completion>, _: OpResult| {
            std::hint::black_box(&three);
            CallbackAction::Disarm
        };
        assert!(!fits_inline_of(&too_big));
    }

    /// A closure too large to be inline goes in a block; a block freed by dropping one
    /// callback is reused by the next (the same address), and each closure's captures are
    /// called and dropped exactly once.
    #[test]
    fn blocks_are_reused() {
        let token = Rc::new(());
        let make = |tag: u64| {
            let t = token.clone();
            let pad = [tag; 4]; // 32 bytes + an Rc: past the inline words, within a block
            move |_: &mut Loop, _: Pin<&mut Completion>, _: OpResult| {
                let _ = (&t, pad);
                if pad[0] == 1 {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            }
        };
        let f = make(1);
        assert!(!fits_inline_of(&f) && fits(&f));
        let a = Callback::new(f);
        let block_a = block_ptr(&a);
        assert!(!block_a.is_null());
        drop(a);
        let b = Callback::new(make(2));
        assert_eq!(block_ptr(&b), block_a, "the freed block is reused");
        let c = Callback::new(make(3));
        assert_ne!(
            block_ptr(&c),
            block_a,
            "a second live callback has its own block"
        );
        assert_eq!(Rc::strong_count(&token), 3);
        drop((b, c));
        assert_eq!(Rc::strong_count(&token), 1, "captures are dropped");
        // More frees than the cache keeps: the rest are freed, nothing leaks (Miri).
        let many: Vec<Callback> = (0..CACHED as u64 + 3)
            .map(|i| Callback::new(make(i)))
            .collect();
        drop(many);
        assert_eq!(Rc::strong_count(&token), 1);
    }

    /// Calling goes through the vtable to the closure's own state, inline or in a block.
    #[test]
    #[cfg_attr(miri, ignore)] // needs a Loop (syscalls)
    fn calls_reach_the_closure_inline_or_in_a_block() {
        let mut lp = Loop::new(crate::Options::default()).unwrap();
        let mut cpl = Box::pin(Completion::new());
        let hits = Rc::new(Cell::new(0u64));
        let h = hits.clone();
        let pad = [5u64; 4];
        let mut blocked = Callback::new(move |_, _, _| {
            h.set(h.get() + pad[0]);
            CallbackAction::Rearm
        });
        assert!(!block_ptr(&blocked).is_null());
        let r = OpResult::build(&crate::Op::Noop, 0, None);
        assert_eq!(
            blocked.call(&mut lp, cpl.as_mut(), r),
            CallbackAction::Rearm
        );
        assert_eq!(hits.get(), 5);
        assert_eq!(
            Callback::empty().call(&mut lp, cpl.as_mut(), OpResult::Noop),
            CallbackAction::Disarm
        );
    }

    fn fits<F>(_f: &F) -> bool {
        Callback::fits_block::<F>()
    }

    /// [`Callback::fits_inline`] for the type of `_f` (closures are unnameable).
    fn fits_inline_of<F>(_f: &F) -> bool {
        Callback::fits_inline::<F>()
    }

    /// The block holding the closure of `cb`, if it is in one.
    fn block_ptr(cb: &Callback) -> *mut u8 {
        match cb.vtable {
            // SAFETY: an `IN_BLOCK` callback's first inline word is its block pointer.
            Some(vt) if vt.in_block => unsafe { cb.data.as_ptr().cast::<*mut u8>().read() },
            _ => ptr::null_mut(),
        }
    }

    /// A boxed callback is called and dropped through the same vtable path as an inline
    /// one, and calling an inline callback mutates its captured state in place.
    #[test]
    #[cfg_attr(miri, ignore)] // needs a Loop (syscalls)
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
