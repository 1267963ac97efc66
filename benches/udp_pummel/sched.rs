//! The scheduler's view of the calling thread (`/proc/thread-self/schedstat`): time on a
//! CPU, time runnable but waiting for one (preempted or not yet picked after a wake-up),
//! and how many times it was given a CPU. Read twice per run (never per datagram), it
//! tells a receiver that sleeps for want of datagrams from one that is kept off the CPU.

use std::time::Duration;

/// One reading (all zero where the kernel has no schedstat).
#[derive(Clone, Copy, Default)]
pub struct Sched {
    /// Time on a CPU.
    pub run: Duration,
    /// Time runnable on a run queue, waiting for a CPU.
    pub wait: Duration,
    /// Times given a CPU (each wake-up or preemption ends one).
    pub slices: u64,
}

impl Sched {
    /// The calling thread's figures so far.
    pub fn now() -> Sched {
        use std::io::Read;
        // Into a stack buffer: no allocation (the bench counts them).
        let mut buf = [0u8; 128];
        let n = match std::fs::File::open("/proc/thread-self/schedstat")
            .and_then(|mut f| f.read(&mut buf))
        {
            Ok(n) => n,
            Err(_) => return Sched::default(),
        };
        let s = std::str::from_utf8(&buf[..n]).unwrap_or("");
        let mut f = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
        let (run, wait, slices) = (
            f.next().unwrap_or(0),
            f.next().unwrap_or(0),
            f.next().unwrap_or(0),
        );
        Sched {
            run: Duration::from_nanos(run),
            wait: Duration::from_nanos(wait),
            slices,
        }
    }

    /// What happened between `self` (earlier) and `later`.
    pub fn until(self, later: Sched) -> Sched {
        Sched {
            run: later.run.saturating_sub(self.run),
            wait: later.wait.saturating_sub(self.wait),
            slices: later.slices.saturating_sub(self.slices),
        }
    }
}
