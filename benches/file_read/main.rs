//! file_read: read a 256 MiB regular file in 64 KiB chunks (`pread` at an offset).
//!
//! The file is created once per process in Cargo's target tmp dir (`target/tmp`), filled
//! with non-zero pseudo-random bytes (the first 8 bytes of every chunk tag its index, and
//! every read checks its tag), synced, and removed at the end (a run that was killed
//! leaves it behind; the next run removes it). Three workloads:
//!
//! - `seq warm`: offsets 0, 64 KiB, 128 KiB, ... in order, one read in flight, the file
//!   read once beforehand so the page cache holds all of it;
//! - `random warm`: every 64 KiB-aligned offset once, in an order shuffled with a fixed
//!   seed (the same order for every variant), 32 reads in flight, page cache warm;
//! - `random cold`: the same order, 32 in flight, after the file's pages are dropped
//!   (`fdatasync`, then `posix_fadvise(POSIX_FADV_DONTNEED)`, which needs no root). How
//!   much of the file is still cached is checked with `mincore(2)` and printed; a run
//!   that could not be made cold is flagged in the output.
//!
//! Variants, measured in the same process and interleaved (A B C ... A B C ...):
//!
//! 1. `xev io_uring`, 2. `xev epoll`: the callback API, one `Completion` per read in
//!    flight, each with its own 64 KiB buffer; the callback checks the data, sets the next
//!    offset in its `Op::Pread` and rearms (on epoll, a pread of data in the page cache
//!    is done on the loop thread, `preadv2(RWF_NOWAIT)`, and the others on the loop's
//!    thread pool, default size: 4 threads per core, 4..=64);
//! 3. `xev async io_uring`, 4. `xev async epoll`: `xev::rt`, one task per read in flight
//!    (`xev::spawn`), each looping `xev::fs::File::read_exact_at(Box<[u8]>, offset)`
//!    (one `read_at` unless a read comes back short);
//! 5. `raw io_uring (ref)`: a loop written on the `io-uring` crate with the ring setup xev
//!    uses, the same depth, one `submit_and_wait(1)` per batch of completions;
//! 6. `tokio::fs` (current_thread runtime): what a tokio user writes with `tokio::fs::File`.
//!    One read in flight: `read_exact` of 64 KiB in a loop (a `seek` only where the next
//!    offset is not the file position, i.e. once per pass). 32 in flight: 32 tasks
//!    (`tokio::spawn`), each with its own `File` (opened on its own: `try_clone` dups the
//!    descriptor, which shares the file position among the tasks), doing `seek` +
//!    `read_exact` per chunk. Each of these is a round trip to tokio's blocking pool (a
//!    random read is two: the seek and the read);
//! 7. `tokio spawn_blocking`: shown for information, the faster tokio idiom:
//!    `spawn_blocking(move || file.read_exact_at(&mut buf, offset))` per chunk on a shared
//!    `Arc<std::fs::File>`, one blocking-pool round trip per read.
//!
//! Each measurement: a fresh loop or runtime and file handle(s), a warm-up of 512 reads at
//! the workload's depth (pool threads and buffers reach their working size; cold: after a
//! drop, so the warm-up takes the cold path too), then the cache is put in the workload's
//! state (warm: re-read with `std` if anything is missing; cold: dropped), then the timed
//! reads: 4 passes over the file (1 GiB) in the warm workloads, and in the cold one 3
//! passes, each after its own (untimed) drop. Wall time, CPU time (user + system, all
//! threads) and the process-wide allocation count are read over the timed reads;
//! allocations are counted from the moment the timed reads are running (spawning the 1 or
//! 32 tasks that carry them, one allocation each in both runtimes, is left out), so
//! allocs/read is the steady state. MB/s is 10^6 bytes per second. Seven rounds, medians
//! shown (the machine is small and shared; the per-round figures are printed too). About
//! 70 s in all. A read that comes back short mid-file is continued (and counted, where the
//! variant sees it: "SHORT READS" in the output).
//!
//! `XEV_BENCH_QUICK=1`: an 8 MiB file, one pass, one round (a CI smoke run, well under a
//! second; the file fits in the CPU caches, so its figures say little).
//! For profiling: `XEV_BENCH_ONLY=epoll,tokio` (variants whose name contains a word),
//! `XEV_BENCH_WORKLOAD=seq,random,cold` (workloads whose name contains a word),
//! `XEV_FILE_MIB=N` (file size), `XEV_FILE_PASSES=N` (timed passes over the file in the
//! warm workloads), `XEV_FILE_COLD_PASSES=N` (in the cold one), `XEV_BENCH_ROUNDS=N`,
//! `XEV_FILE_POOL_THREADS=N` (xev's thread pool size on epoll; default 4 per core).
//!
//! Run with `cargo bench --bench file_read`.

#[path = "../common/mod.rs"]
mod common;
mod raw;
mod tokio_side;
mod xev_side;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::report::{self, per_round_line, ratio, ratio_target};
use common::{sys, watchdog};
use xev::Backend;

/// Size of every read.
const CHUNK: usize = 64 * 1024;
/// io_uring entries, for xev (its default) and the raw reference alike.
const ENTRIES: u32 = 256;
/// Reads before the timed section, at the workload's depth.
const WARMUP_READS: usize = 512;
/// Reads in flight in the random workloads.
const DEPTH: usize = 32;
/// Seed of the shuffled offset order (the same for every variant and run).
const SEED: u64 = 0x5eed_f11e_0000_0001;
/// A single measurement that takes longer than this is a hang: the process exits.
const MEASUREMENT_LIMIT: Duration = Duration::from_secs(120);
/// A cold run whose file is more cached than this (after the drop) is flagged.
const COLD_MAX_RESIDENT: f64 = 0.02;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    XevIoUring,
    XevEpoll,
    XevAsyncIoUring,
    XevAsyncEpoll,
    RawIoUring,
    TokioFs,
    TokioBlocking,
}

impl Variant {
    const ALL: [Variant; 7] = [
        Variant::XevIoUring,
        Variant::XevEpoll,
        Variant::XevAsyncIoUring,
        Variant::XevAsyncEpoll,
        Variant::RawIoUring,
        Variant::TokioFs,
        Variant::TokioBlocking,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::XevIoUring => "xev io_uring",
            Variant::XevEpoll => "xev epoll",
            Variant::XevAsyncIoUring => "xev async io_uring",
            Variant::XevAsyncEpoll => "xev async epoll",
            Variant::RawIoUring => "raw io_uring (ref)",
            Variant::TokioFs => "tokio::fs",
            Variant::TokioBlocking => "tokio spawn_blocking",
        }
    }

    fn is_xev(self) -> bool {
        matches!(
            self,
            Variant::XevIoUring
                | Variant::XevEpoll
                | Variant::XevAsyncIoUring
                | Variant::XevAsyncEpoll
        )
    }

    fn uses_io_uring(self) -> bool {
        matches!(
            self,
            Variant::XevIoUring | Variant::XevAsyncIoUring | Variant::RawIoUring
        )
    }
}

/// One variant's reader, open for one measurement. `phase` reads at `offs` (in order of
/// dispatch, up to the reader's depth at a time), checks every chunk, and returns the
/// allocations made while the reads ran (see the module docs).
trait Reader {
    fn phase(&mut self, offs: &'static [u64]) -> Result<u64, String>;

    /// Reads so far that returned fewer bytes than asked mid-file (and were continued);
    /// counted where the variant sees them (the callback API).
    fn short_reads(&self) -> u64 {
        0
    }
}

fn open_reader(v: Variant, path: &Path, depth: usize) -> Result<Box<dyn Reader>, String> {
    Ok(match v {
        Variant::XevIoUring => Box::new(xev_side::XevReader::new(Backend::IoUring, path, depth)?),
        Variant::XevEpoll => Box::new(xev_side::XevReader::new(Backend::Epoll, path, depth)?),
        Variant::XevAsyncIoUring => Box::new(xev_side::XevAsyncReader::new(
            Backend::IoUring,
            path,
            depth,
        )?),
        Variant::XevAsyncEpoll => {
            Box::new(xev_side::XevAsyncReader::new(Backend::Epoll, path, depth)?)
        }
        Variant::RawIoUring => Box::new(raw::RawReader::new(path, depth)?),
        Variant::TokioFs => Box::new(tokio_side::TokioFsReader::new(path, depth)?),
        Variant::TokioBlocking => Box::new(tokio_side::TokioBlockingReader::new(path, depth)?),
    })
}

// ---------------------------------------------------------------------------------------
// The file: contents, checks, page cache.

/// The tag in the first 8 bytes of chunk `idx` (every byte non-zero).
fn tag(idx: u64) -> u64 {
    (idx + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 0x0101_0101_0101_0101
}

/// Check a read of `n` bytes at `off` into `buf`.
fn check(n: usize, buf: &[u8], off: u64) -> Result<(), String> {
    if n != CHUNK {
        return Err(format!("read at {off}: {n} bytes, expected {CHUNK}"));
    }
    let got = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    if got != tag(off / CHUNK as u64) {
        return Err(format!("read at {off}: wrong data (tag {got:#x})"));
    }
    Ok(())
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The test file, removed on drop; `map` is a `PROT_READ` mapping used only by
/// `mincore` (never touched, so it faults nothing in and pins nothing).
struct TestFile {
    path: PathBuf,
    file: File,
    len: usize,
    map: *mut libc::c_void,
    /// mincore's output, one byte per page (allocated once).
    vec: Vec<u8>,
}

impl TestFile {
    fn create(dir: &Path, len: usize) -> io::Result<TestFile> {
        std::fs::create_dir_all(dir)?;
        remove_stale(dir);
        let path = dir.join(format!("{STALE_PREFIX}{}.bin", std::process::id()));
        let mut f = File::create(&path)?;
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut chunk = vec![0u8; CHUNK];
        let mut w = io::BufWriter::with_capacity(4 << 20, &mut f);
        for idx in 0..(len / CHUNK) as u64 {
            for word in chunk.chunks_exact_mut(8) {
                word.copy_from_slice(&(rng.next() | 0x0101_0101_0101_0101).to_le_bytes());
            }
            chunk[..8].copy_from_slice(&tag(idx).to_le_bytes());
            w.write_all(&chunk)?;
        }
        w.flush()?;
        drop(w);
        // Clean pages only: dirty ones could not be dropped for the cold runs.
        f.sync_all()?;
        drop(f);
        let file = File::open(&path)?;
        // SAFETY: a new read-only shared mapping of `len` bytes of an open file; unmapped
        // in Drop.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(TestFile {
            path,
            file,
            len,
            map,
            vec: vec![0u8; len.div_ceil(page_size())],
        })
    }

    /// Fraction of the file's pages in the page cache (mincore).
    fn resident(&mut self) -> Result<f64, String> {
        // SAFETY: `map` is our mapping of `len` bytes; `vec` has one byte per page.
        let r = unsafe { libc::mincore(self.map, self.len, self.vec.as_mut_ptr()) };
        if r != 0 {
            return Err(format!("mincore: {}", io::Error::last_os_error()));
        }
        let n = self.vec.iter().filter(|&&b| b & 1 != 0).count();
        Ok(n as f64 / self.vec.len() as f64)
    }

    /// Make sure the whole file is cached: read it with `std` if any page is missing.
    /// Returns the residency before the timed section.
    fn warm(&mut self) -> Result<f64, String> {
        let r = self.resident()?;
        if r >= 1.0 {
            return Ok(r);
        }
        let mut f = File::open(&self.path).map_err(|e| format!("open: {e}"))?;
        let mut buf = vec![0u8; 1 << 20];
        while f.read(&mut buf).map_err(|e| format!("read: {e}"))? > 0 {}
        self.resident()
    }

    /// Drop the file's pages from the page cache; returns the residency afterwards.
    fn drop_cache(&mut self) -> Result<f64, String> {
        let fd = self.file.as_raw_fd();
        // SAFETY: plain syscalls on an fd we own.
        unsafe {
            if libc::fdatasync(fd) != 0 {
                return Err(format!("fdatasync: {}", io::Error::last_os_error()));
            }
            let r = libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED);
            if r != 0 {
                return Err(format!(
                    "posix_fadvise(DONTNEED): {}",
                    io::Error::from_raw_os_error(r)
                ));
            }
        }
        self.resident()
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        // SAFETY: our mapping, unmapped once.
        unsafe { libc::munmap(self.map, self.len) };
        let _ = std::fs::remove_file(&self.path);
    }
}

const STALE_PREFIX: &str = "xev-file-read-";

/// Remove the files of earlier runs that did not get to clean up (killed, or ended by the
/// watchdog): those whose process is gone.
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(STALE_PREFIX)?.strip_suffix(".bin"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Where the file goes: Cargo's tmp dir inside the target dir (a real disk filesystem,
/// unlike a tmpfs /tmp whose pages cannot be dropped), else the system temp dir.
fn file_dir() -> PathBuf {
    option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

// ---------------------------------------------------------------------------------------
// Workloads and measurements.

struct Workload {
    name: &'static str,
    title: String,
    depth: usize,
    cold: bool,
    warmup: &'static [u64],
    timed: &'static [u64],
    /// Timed passes over `timed` per measurement, each after its own cache preparation
    /// (the cold workload drops the cache before each).
    repeats: usize,
}

/// One measurement's figures.
#[derive(Clone, Copy)]
struct Sample {
    mb_per_sec: f64,
    reads_per_sec: f64,
    cpu_us_per_read: f64,
    allocs: u64,
    allocs_per_read: f64,
    /// Fraction of the file cached when the timed section started.
    resident: f64,
    /// Short reads in the timed section.
    short: u64,
}

fn measure(v: Variant, w: &Workload, f: &mut TestFile) -> Result<Sample, String> {
    watchdog::arm(MEASUREMENT_LIMIT);
    let mut r = open_reader(v, &f.path, w.depth)?;
    if w.cold {
        // The warm-up takes the cold path too (on epoll: the thread pool starts).
        f.drop_cache()?;
    }
    r.phase(w.warmup)?;
    let (mut secs, mut cpu, mut allocs, mut n, mut short) = (0.0, Duration::ZERO, 0, 0, 0);
    let mut resident = if w.cold { 0.0 } else { 1.0 };
    for _ in 0..w.repeats {
        // Not timed: the cache is put in the workload's state before each timed pass.
        let res = if w.cold { f.drop_cache()? } else { f.warm()? };
        resident = if w.cold {
            f64::max(resident, res)
        } else {
            f64::min(resident, res)
        };
        let t0 = Instant::now();
        let cpu0 = common::cpu_time();
        let short0 = r.short_reads();
        allocs += r.phase(w.timed)?;
        short += r.short_reads() - short0;
        cpu += common::cpu_time().saturating_sub(cpu0);
        secs += t0.elapsed().as_secs_f64();
        n += w.timed.len();
    }
    drop(r);
    watchdog::disarm();
    let n = n as f64;
    Ok(Sample {
        mb_per_sec: n * CHUNK as f64 / secs / 1e6,
        reads_per_sec: n / secs,
        cpu_us_per_read: cpu.as_secs_f64() * 1e6 / n,
        allocs,
        allocs_per_read: allocs as f64 / n,
        resident,
        short,
    })
}

// ---------------------------------------------------------------------------------------
// Report.

fn header(quick: bool, file_len: usize, rounds: usize, passes: (usize, usize), dir: &Path) {
    println!(
        "file_read: pread a regular file in {} KiB chunks",
        CHUNK / 1024
    );
    sys::print_command("file_read", quick);
    println!(
        "{}   memory: {}",
        sys::machine(),
        sys::proc_field("/proc/meminfo", "MemTotal")
    );
    println!(
        "file: {} MiB in {} ({} reads per pass)   warm-up: {WARMUP_READS} reads   \
         timed passes: warm {} cold {}   ring entries: {ENTRIES}",
        file_len >> 20,
        dir.display(),
        file_len / CHUNK,
        passes.0,
        passes.1
    );
    println!(
        "io_uring available: {}   mode: {}",
        Backend::IoUring.is_available(),
        if quick {
            "quick (1 round)".to_string()
        } else {
            format!("full (median of {rounds} rounds, variants interleaved)")
        }
    );
}

/// Print one workload's table and targets; returns each variant's median MB/s. `warm`:
/// the medians of the same reads with the cache warm, for the cold table's timing check.
fn table(
    w: &Workload,
    variants: &[Variant],
    samples: &[Vec<Sample>],
    rounds: usize,
    warm: Option<&[Option<f64>]>,
) -> Vec<Option<f64>> {
    println!();
    println!(
        "== {}: {} reads of {} KiB per run (+{} warm-up), {} in flight, {} round(s) ==",
        w.title,
        w.timed.len() * w.repeats,
        CHUNK / 1024,
        w.warmup.len(),
        w.depth,
        rounds
    );
    let med = |i: usize| -> Option<Sample> {
        let s = &samples[i];
        if s.is_empty() {
            return None;
        }
        let m = |f: fn(&Sample) -> f64| common::median(s.iter().map(f).collect());
        Some(Sample {
            mb_per_sec: m(|x| x.mb_per_sec),
            reads_per_sec: m(|x| x.reads_per_sec),
            cpu_us_per_read: m(|x| x.cpu_us_per_read),
            allocs: s.iter().map(|x| x.allocs).max().unwrap_or(0),
            allocs_per_read: s.iter().map(|x| x.allocs_per_read).fold(0.0, f64::max),
            // The worst case for the workload: the warmest cold run, the coldest warm one.
            resident: if w.cold {
                s.iter().map(|x| x.resident).fold(0.0, f64::max)
            } else {
                s.iter().map(|x| x.resident).fold(1.0, f64::min)
            },
            short: s.iter().map(|x| x.short).max().unwrap_or(0),
        })
    };
    let find = |want: Variant| variants.iter().position(|&v| v == want).and_then(&med);
    let reference = find(Variant::RawIoUring);
    let tokio = find(Variant::TokioFs);
    println!(
        "{:<22} {:>9} {:>10} {:>9} {:>10} {:>10} {:>11} {:>12} {:>9}",
        "variant",
        "MB/s",
        "reads/s",
        "vs raw",
        "vs tokio",
        "cpu µs/rd",
        "allocs/rd",
        "allocs (max)",
        "cached"
    );
    let (reference, tokio) = (reference.map(|r| r.mb_per_sec), tokio.map(|t| t.mb_per_sec));
    for (i, v) in variants.iter().enumerate() {
        match med(i) {
            Some(s) => println!(
                "{:<22} {:>9.0} {:>10.0} {:>9} {:>10} {:>10.2} {:>11.4} {:>12} {:>8.1}%",
                v.name(),
                s.mb_per_sec,
                s.reads_per_sec,
                ratio(s.mb_per_sec, reference),
                ratio(s.mb_per_sec, tokio),
                s.cpu_us_per_read,
                s.allocs_per_read,
                s.allocs,
                s.resident * 100.0
            ),
            None => println!("{:<22} {:>9}", v.name(), "failed"),
        }
    }
    per_round_line(
        "MB/s",
        0,
        variants
            .iter()
            .zip(samples)
            .map(|(v, s)| (v.name(), s.iter().map(|x| x.mb_per_sec).collect())),
    );
    let short: Vec<String> = (0..variants.len())
        .filter_map(|i| Some((variants[i].name(), med(i)?.short)))
        .filter(|&(_, n)| n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if !short.is_empty() {
        println!(
            "SHORT READS mid-file (fewer than {} KiB; the bench read the rest with more \
             reads), most in a run: {}",
            CHUNK / 1024,
            short.join(", ")
        );
    }
    if w.cold {
        let warmest = samples
            .iter()
            .flatten()
            .map(|s| s.resident)
            .fold(0.0, f64::max);
        if warmest > COLD_MAX_RESIDENT {
            println!(
                "COLD CACHE NOT ACHIEVED: up to {:.1}% of the file was still cached after \
                 fdatasync + POSIX_FADV_DONTNEED (mincore); these runs are partly warm",
                warmest * 100.0
            );
        } else {
            println!(
                "cold cache verified: at most {:.2}% of the file cached when the timed \
                 reads started (mincore after fdatasync + POSIX_FADV_DONTNEED)",
                warmest * 100.0
            );
        }
        if let Some(warm) = warm {
            let q: Vec<String> = variants
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let (c, w) = (med(i)?.mb_per_sec, warm.get(i).copied().flatten()?);
                    Some(format!("{} {:.3}", v.name(), c / w))
                })
                .collect();
            println!(
                "timing check, cold MB/s / warm MB/s (same random reads): {}",
                q.join(", ")
            );
        }
    }
    for (i, v) in variants.iter().enumerate() {
        if !v.is_xev() {
            continue;
        }
        let Some(s) = med(i) else { continue };
        let goal = |g: &str| format!("{g} ({})", w.name);
        if let Some(r) = reference {
            ratio_target(
                v.name(),
                &goal("0.95x raw io_uring"),
                s.mb_per_sec / r,
                0.95,
            );
        }
        if let (false, Some(t)) = (w.cold, tokio) {
            ratio_target(v.name(), &goal("3x tokio::fs"), s.mb_per_sec / t, 3.0);
        }
        report::target(
            format_args!(
                "{} allocations per read after warm-up = 0 ({}): {:.4}",
                v.name(),
                w.name,
                s.allocs_per_read
            ),
            s.allocs == 0,
        );
    }
    (0..variants.len())
        .map(|i| med(i).map(|s| s.mb_per_sec))
        .collect()
}

fn main() {
    let quick = common::quick();
    let started = Instant::now();
    watchdog::start(
        "file-read-watchdog",
        Duration::from_millis(200),
        format!("file_read: a measurement exceeded {MEASUREMENT_LIMIT:?}; exiting"),
    );
    let (mib, mut rounds, mut passes) = if quick { (8, 1, 1) } else { (256, 7, 4) };
    let cold_passes = common::env_parse::<usize>("XEV_FILE_COLD_PASSES")
        .unwrap_or(if quick { 1 } else { 3 })
        .max(1);
    let mib = common::env_parse::<usize>("XEV_FILE_MIB")
        .unwrap_or(mib)
        .max(4);
    passes = common::env_parse::<usize>("XEV_FILE_PASSES")
        .unwrap_or(passes)
        .max(1);
    rounds = common::env_parse::<usize>("XEV_BENCH_ROUNDS")
        .unwrap_or(rounds)
        .max(1);
    let len = mib << 20;
    let chunks = len / CHUNK;
    let dir = file_dir();
    header(quick, len, rounds, (passes, cold_passes), &dir);

    let t = Instant::now();
    let mut file = match TestFile::create(&dir, len) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "file_read: cannot create the test file in {}: {e}",
                dir.display()
            );
            std::process::exit(1);
        }
    };
    println!(
        "created {} in {:.2} s",
        file.path.display(),
        t.elapsed().as_secs_f64()
    );

    // The offset sequences, built once and shared by every variant (leaked: they live
    // for the whole process, and the readers' tasks need `'static` slices).
    let seq: Vec<u64> = (0..chunks as u64).map(|i| i * CHUNK as u64).collect();
    let mut perm = seq.clone();
    let mut rng = XorShift(SEED);
    for i in (1..perm.len()).rev() {
        perm.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let repeat = |v: &[u64], n: usize| -> &'static [u64] { v.repeat(n).leak() };
    // The first WARMUP_READS offsets of a sequence (wrapping around a small file).
    let warmup = |v: &[u64]| -> &'static [u64] {
        v.iter()
            .copied()
            .cycle()
            .take(WARMUP_READS)
            .collect::<Vec<u64>>()
            .leak()
    };
    let workloads = [
        Workload {
            name: "seq warm",
            title: "sequential, page cache warm".into(),
            depth: 1,
            cold: false,
            warmup: warmup(&seq),
            timed: repeat(&seq, passes),
            repeats: 1,
        },
        Workload {
            name: "random warm",
            title: "random offsets, page cache warm".into(),
            depth: DEPTH,
            cold: false,
            warmup: warmup(&perm),
            timed: repeat(&perm, passes),
            repeats: 1,
        },
        Workload {
            name: "random cold",
            title: format!(
                "random offsets, page cache cold (dropped before each of {cold_passes} timed \
                 pass(es) per run)"
            ),
            depth: DEPTH,
            cold: true,
            warmup: warmup(&perm),
            timed: repeat(&perm, 1),
            repeats: cold_passes,
        },
    ];

    match file.drop_cache() {
        Ok(r) if r > COLD_MAX_RESIDENT => println!(
            "WARNING: the page cache could not be dropped ({:.1}% still cached after \
             fdatasync + POSIX_FADV_DONTNEED): the cold workload will not be cold",
            r * 100.0
        ),
        Ok(r) => println!(
            "page cache drop works: {:.2}% cached after fdatasync + POSIX_FADV_DONTNEED",
            r * 100.0
        ),
        Err(e) => println!("WARNING: cannot drop the page cache: {e}"),
    }

    match file.warm() {
        Ok(r) => println!("page cache warmed: {:.1}% of the file cached", r * 100.0),
        Err(e) => eprintln!("file_read: warming the cache: {e}"),
    }
    let variants = report::select(&Variant::ALL, Variant::name, Variant::uses_io_uring);

    let mut failed = false;
    let mut warm_random: Option<Vec<Option<f64>>> = None;
    for w in workloads
        .iter()
        .filter(|w| common::wanted("XEV_BENCH_WORKLOAD", w.name))
    {
        let samples = report::interleaved(
            rounds,
            &variants,
            &mut failed,
            |v| measure(v, w, &mut file),
            |v| format!("file_read: {} / {}", w.name, v.name()),
        );
        let warm = warm_random.as_deref().filter(|_| w.cold);
        let medians = table(w, &variants, &samples, rounds, warm);
        if w.name == "random warm" {
            warm_random = Some(medians);
        }
    }
    drop(file);
    println!();
    println!(
        "MB/s = 10^6 bytes/s over the timed reads; vs raw / vs tokio = MB/s over raw \
         io_uring's / tokio::fs's (same workload, same depth); cpu = user+sys of all \
         threads (getrusage) per read; allocs/rd = allocations while the timed reads ran / \
         reads (max over rounds); cached = share of the file in the page cache when the \
         timed reads started (mincore; warm: lowest, cold: highest over rounds)."
    );
    report::finish("total wall time", started, failed);
}
