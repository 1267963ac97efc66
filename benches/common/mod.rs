//! Shared helpers for the benchmark programs: a counting global allocator, CPU time and
//! peak RSS from the kernel, the environment knobs, and (in the submodules) the report,
//! the machine header and CPU pinning, the watchdog, and what the network benches share.
//! Each bench does `mod common;` and installs `common::Counting` as its
//! `#[global_allocator]`.
#![allow(dead_code)]

pub mod epoll;
pub mod net;
pub mod report;
pub mod roundtrip;
pub mod sys;
pub mod uring;
pub mod watchdog;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A global allocator that counts allocations (process-wide, all threads).
pub struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
}

/// Allocations so far (all threads).
pub fn allocations() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// User + system CPU time of this process so far.
pub fn cpu_time() -> Duration {
    let (user, system) = cpu_times();
    user + system
}

/// This process's CPU time so far, split: (user, system), from `getrusage`.
pub fn cpu_times() -> (Duration, Duration) {
    let u = usage();
    (u.user, u.system)
}

/// This process's resource use so far (`getrusage(RUSAGE_SELF)`).
#[derive(Clone, Copy)]
pub struct Usage {
    pub user: Duration,
    pub system: Duration,
    /// Context switches, voluntary (a thread blocked: sleeping in the kernel until woken)
    /// and involuntary (preempted).
    pub switches: u64,
}

/// See [`Usage`].
pub fn usage() -> Usage {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage {
        user: tv(ru.ru_utime),
        system: tv(ru.ru_stime),
        switches: (ru.ru_nvcsw + ru.ru_nivcsw) as u64,
    }
}

/// Current resident set size in bytes (from /proc/self/statm).
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Reset the kernel's peak-RSS counter (Linux 4.0+: write 5 to clear_refs), so a peak
/// can be measured per variant within one process. Returns false if not permitted.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size in bytes since start or the last `reset_peak_rss`
/// (VmHWM from /proc/self/status).
pub fn peak_rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Whether the quick mode (CI smoke run) is on: `XEV_BENCH_QUICK=1`.
pub fn quick() -> bool {
    std::env::var_os("XEV_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Median of a non-empty list.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// CPU time (user + system) of the calling thread so far (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    // SAFETY: clock_gettime fills the zeroed timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Profiling filter: with `var` set, keep the names containing one of its
/// comma-separated words (a word starting with `=` keeps only the name equal to the
/// rest: `=xev io_uring` leaves out `xev io_uring multishot`). Unset (or blank):
/// everything.
pub fn wanted(var: &str, name: &str) -> bool {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|w| match w.trim().strip_prefix('=') {
            Some(exact) => name == exact,
            None => name.contains(w.trim()),
        }),
        _ => true,
    }
}

/// Profiling filter on a number (`XEV_BENCH_CONNS=1,100`, `XEV_BENCH_THREADS=1,8`): with
/// `var` set, keep `n` if it is one of its comma-separated values. Unset: everything.
pub fn wanted_number(var: &str, n: usize) -> bool {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|w| w.trim() == n.to_string()),
        _ => true,
    }
}

/// A numeric knob: `var` parsed as is (not trimmed); None when unset or not a number.
pub fn env_parse<T: std::str::FromStr>(var: &str) -> Option<T> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}
