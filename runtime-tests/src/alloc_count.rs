//! A global allocator that counts the current thread's allocations, for the tests that
//! prove an operation allocates nothing per use (other tests' threads do not count).
//!
//! A test file installs it with
//! `#[global_allocator] static A: runtime_tests::alloc_count::Counting = runtime_tests::alloc_count::Counting;`
//! and reads the count with [`allocs`] or [`allocs_in`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator and counts each `alloc`/`realloc` of this thread.
pub struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards to the system allocator; the counter is a thread-local `Cell` with a
// const initializer, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations this thread has made so far (counted only while [`Counting`] is the
/// global allocator).
pub fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Allocations made by `f` on this thread.
pub fn allocs_in(f: impl FnOnce()) -> u64 {
    let before = allocs();
    f();
    allocs() - before
}
