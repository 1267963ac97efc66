//! ThreadSanitizer canary for .ci/sanitizers.sh: an unsynchronised write from two
//! threads, so a build whose race detector is not really on fails the step.

use std::cell::UnsafeCell;

struct Racy(UnsafeCell<u64>);
// SAFETY: not sound, deliberately: this program exists to be caught by ThreadSanitizer.
unsafe impl Sync for Racy {}

static COUNTER: Racy = Racy(UnsafeCell::new(0));

fn main() {
    let t = std::thread::spawn(|| {
        // SAFETY: none; the data race is the point (see the module docs).
        unsafe { *COUNTER.0.get() += 1 }
    });
    // SAFETY: as above.
    unsafe { *COUNTER.0.get() += 1 }
    t.join().unwrap();
}
