//! million-timers, callback style (after libxev's `src/bench/million-timers.zig`): arm
//! 1,000,000 one-shot timers with the [`Timer`] watcher, deadlines rising by 1 ms every
//! 1000 timers (timer `i` fires after `i / 1000 + 1` ms), run the loop until all have
//! fired, and print how long inserting and running took.
//!
//! ```text
//! cargo run --release --example million_timers [COUNT] [io_uring|epoll]
//! ```
//!
//! For the side-by-side comparison with tokio (and allocation counts, peak RSS), see
//! `cargo bench --bench timers`.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use xev::{Backend, CallbackAction, Completion, Loop, Options, RunMode, Timer};

/// Timers per millisecond of deadline.
const PER_MS: usize = 1000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut count = 1_000_000usize;
    let mut backend = None;
    for arg in std::env::args().skip(1) {
        if let Ok(n) = arg.replace('_', "").parse() {
            count = n;
        } else {
            let b = Backend::candidates()
                .iter()
                .copied()
                .find(|b| b.name() == arg)
                .ok_or_else(|| format!("usage: million_timers [COUNT] [backend]; got {arg:?}"))?;
            backend = Some(b);
        }
    }

    // All completions in one allocation, declared before the loop so that the loop is
    // dropped first. (`(0..count).map(|_| Box::pin(Completion::new()))` would be the
    // fully safe spelling, at one allocation per timer.)
    let mut completions: Box<[Completion]> = (0..count).map(|_| Completion::new()).collect();
    let mut lp = Loop::new(Options {
        backend,
        ..Options::default()
    })?;
    let fired = Rc::new(Cell::new(0usize));
    let timer = Timer::new();

    let t0 = Instant::now();
    for (i, c) in completions.iter_mut().enumerate() {
        // SAFETY: the completions live in the boxed slice above, which is never moved or
        // reallocated (only the `Box` pointer could move) and is dropped in place after the
        // loop, so each address stays valid and unmoved until the completion's drop.
        let c = unsafe { Pin::new_unchecked(c) };
        let deadline = (i / PER_MS) as u64 + 1;
        timer.run(&mut lp, c, deadline, fired.clone(), |fired, _lp, _c, r| {
            r.expect("timer");
            fired.set(fired.get() + 1);
            CallbackAction::Disarm
        });
    }
    let t1 = Instant::now();
    lp.run(RunMode::UntilDone)?;
    let t2 = Instant::now();

    assert_eq!(fired.get(), count, "every timer fired once");
    let last_deadline_ms = count.saturating_sub(1) / PER_MS + 1;
    println!("backend: {}", lp.backend().name());
    println!("timers:  {count} (last deadline {last_deadline_ms} ms)");
    println!("insert:  {:.2?}", t1 - t0);
    println!("run:     {:.2?}", t2 - t1);
    println!("total:   {:.2?}", t2 - t0);
    Ok(())
}
