//! Callbacks and futures on one loop: a callback-style timer (the `xev::Timer` watcher)
//! ticks every 10 ms and hands each tick to an async task, while another task sleeps
//! with `xev::time` and a third waits for both. Everything runs on the runtime's single
//! loop, on one thread.
//!
//! Run it with `cargo run --release --example mixed`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use xev::{CallbackAction, Completion, Timer};

/// What the callback side shares with the async side: ticks not yet consumed, and the
/// waker of the task waiting for them.
#[derive(Default)]
struct Ticks {
    queue: VecDeque<u64>,
    waiter: Option<Waker>,
    closed: bool,
}

#[xev::main]
async fn main() {
    let start = Instant::now();
    let ticks = Rc::new(RefCell::new(Ticks::default()));

    // 1. Callback style: a Timer watcher on the runtime's loop, rearmed 5 times. The
    //    completion is boxed (pinned) and kept alive by this task until the end.
    let mut completion: Pin<Box<Completion>> = Box::pin(Completion::new());
    let timer = Timer::new();
    let shared = ticks.clone();
    xev::rt::with_loop(|lp| {
        let mut n = 0;
        timer.run(
            lp,
            completion.as_mut(),
            10,
            shared,
            move |ticks, lp, c, _r| {
                n += 1;
                let mut t = ticks.borrow_mut();
                t.queue.push_back(n);
                t.closed = n == 5;
                if let Some(w) = t.waiter.take() {
                    w.wake();
                }
                if n < 5 {
                    // Periodic: re-add the completion from its callback, which measures a
                    // fresh 10 ms and keeps this callback (a Rearm would keep the old
                    // deadline and fire at once).
                    lp.add(c);
                }
                CallbackAction::Disarm
            },
        );
    });

    // 2. Async style: a task that consumes the callback's ticks as they arrive.
    let consumer = {
        let ticks = ticks.clone();
        xev::spawn(async move {
            let mut got = Vec::new();
            loop {
                let next = std::future::poll_fn(|cx| {
                    let mut t = ticks.borrow_mut();
                    match t.queue.pop_front() {
                        Some(v) => Poll::Ready(Some(v)),
                        None if t.closed => Poll::Ready(None),
                        None => {
                            t.waiter = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    }
                })
                .await;
                match next {
                    Some(v) => {
                        println!(
                            "{:>4} ms  task got callback tick {v}",
                            start.elapsed().as_millis()
                        );
                        got.push(v);
                    }
                    None => return got,
                }
            }
        })
    };

    // 3. Another task that only uses xev::time.
    let sleeper = xev::spawn(async move {
        for i in 1..=3 {
            xev::time::sleep(Duration::from_millis(15)).await;
            println!("{:>4} ms  sleeper woke ({i})", start.elapsed().as_millis());
        }
    });

    let got = consumer.await.expect("consumer");
    sleeper.await.expect("sleeper");
    println!("callback ticks seen by the task: {got:?}");
    assert_eq!(got, [1, 2, 3, 4, 5]);
    // The timer's completion is Dead after its last callback; dropping it is fine.
    drop(completion);
}
