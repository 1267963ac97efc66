//! file_copy: copy a 1 GiB regular file to a new file in the same directory (Cargo's
//! `target/tmp`), page cache warm for the source.
//!
//! Variants, interleaved (A B C ... A B C ...), each copying to a fresh destination that
//! is removed (untimed) after the copy; before each copy, the filesystem's dirty pages
//! are written back (`syncfs`, untimed) so no copy pays for another's writeback:
//!
//! 1. `xev io_uring`, 2. `xev epoll`: `xev::fs::copy` on a runtime of that backend
//!    (`copy_file_range(2)` in 64 MiB jobs on the thread pool: the backend does not
//!    matter, both are shown);
//! 3. `std::fs::copy` (the reference: `copy_file_range` in one thread);
//! 4. `tokio::fs::copy` (current_thread runtime: `std::fs::copy` on its blocking pool);
//! 5. `raw io_uring splice (ref)`: what `IORING_OP_SPLICE` through a 1 MiB pipe would
//!    give, written on the `io-uring` crate (source -> pipe, pipe -> destination, one
//!    pair of SQEs per MiB, each pair linked, both performed by io-wq workers since
//!    regular files cannot be spliced without blocking).
//!
//! MB/s is 10^6 bytes per second; median of 5 rounds (`XEV_BENCH_ROUNDS=N` for more),
//! and the best round (the one least disturbed by other work on a shared machine),
//! per-round figures printed too.
//! `XEV_BENCH_QUICK=1`: an 8 MiB file, one round. `XEV_COPY_MIB=N`: the file size.
//! `XEV_BENCH_ONLY=std,splice`: variants whose name contains a word.
//!
//! Run with `cargo bench --bench file_copy`.

mod common;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::report::{self, per_round_line, ratio};
use common::{median, sys, watchdog};
use xev::Backend;

const FULL_MIB: u64 = 1024;
const QUICK_MIB: u64 = 8;
const FULL_ROUNDS: usize = 5;
/// The splice reference's step (and its pipe's size).
const SPLICE_STEP: u32 = 1 << 20;
/// A single copy that takes longer than this is a hang: the process exits.
const MEASUREMENT_LIMIT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    XevIoUring,
    XevEpoll,
    Std,
    Tokio,
    RawSplice,
}

impl Variant {
    const ALL: [Variant; 5] = [
        Variant::XevIoUring,
        Variant::XevEpoll,
        Variant::Std,
        Variant::Tokio,
        Variant::RawSplice,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::XevIoUring => "xev io_uring",
            Variant::XevEpoll => "xev epoll",
            Variant::Std => "std::fs::copy",
            Variant::Tokio => "tokio::fs::copy",
            Variant::RawSplice => "raw io_uring splice (ref)",
        }
    }

    fn on_io_uring(self) -> bool {
        matches!(self, Variant::XevIoUring | Variant::RawSplice)
    }
}

fn main() {
    let started = Instant::now();
    let quick = common::quick();
    let mib = common::env_parse::<u64>("XEV_COPY_MIB").unwrap_or(if quick {
        QUICK_MIB
    } else {
        FULL_MIB
    });
    let rounds = if quick {
        1
    } else {
        common::env_parse("XEV_BENCH_ROUNDS").unwrap_or(FULL_ROUNDS)
    };
    sys::print_command("file_copy", quick);
    println!("machine: {}", sys::machine());
    println!("file_copy: {mib} MiB, page cache warm, {rounds} round(s), median shown (shared machine: noisy)");

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join(format!("xev-file-copy-src-{}", std::process::id()));
    let dst = dir.join(format!("xev-file-copy-dst-{}", std::process::id()));
    let bytes = mib << 20;
    make_source(&src, bytes).expect("create the source file");

    let variants = report::select(&Variant::ALL, Variant::name, Variant::on_io_uring);
    let mut failed = false;
    let samples = report::interleaved(
        rounds,
        &variants,
        &mut failed,
        |v| {
            let _ = std::fs::remove_file(&dst);
            // Every copy starts with no dirty pages waiting (the last one's were dropped
            // with its file, or written back here): writeback throttling then hits each
            // variant alike.
            settle(&dir);
            watchdog::arm(MEASUREMENT_LIMIT);
            let t = Instant::now();
            let n = copy(v, &src, &dst).map_err(|e| e.to_string())?;
            let secs = t.elapsed().as_secs_f64();
            watchdog::disarm();
            if n != bytes {
                return Err(format!("copied {n} of {bytes} bytes"));
            }
            let got = std::fs::metadata(&dst).map_err(|e| e.to_string())?.len();
            if got != bytes {
                return Err(format!("destination has {got} of {bytes} bytes"));
            }
            let _ = std::fs::remove_file(&dst);
            Ok(bytes as f64 / 1e6 / secs)
        },
        |v| v.name().to_string(),
    );
    let _ = std::fs::remove_file(&src);

    let std_median = variants
        .iter()
        .position(|&v| v == Variant::Std)
        .filter(|&i| !samples[i].is_empty())
        .map(|i| median(samples[i].clone()));
    println!();
    let best = |i: usize| samples[i].iter().copied().fold(0.0, f64::max);
    let std_best = variants.iter().position(|&v| v == Variant::Std).map(best);
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "variant", "MB/s", "vs std", "best MB/s", "vs std"
    );
    for (i, v) in variants.iter().enumerate() {
        if samples[i].is_empty() {
            continue;
        }
        let m = median(samples[i].clone());
        println!(
            "{:<28} {:>10.0} {:>10} {:>10.0} {:>10}",
            v.name(),
            m,
            ratio(m, std_median),
            best(i),
            ratio(best(i), std_best.filter(|&b| b > 0.0))
        );
    }
    per_round_line(
        "MB/s",
        0,
        variants
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name(), samples[i].clone())),
    );
    if let Some(s) = std_median {
        for (i, v) in variants.iter().enumerate() {
            if matches!(v, Variant::XevIoUring | Variant::XevEpoll) && !samples[i].is_empty() {
                let q = median(samples[i].clone()) / s;
                // Within 1.1x of std: at least 1/1.1 of its rate.
                // Judged in quick mode too (an 8 MiB file, one round: noisy, but never
                // a MET that was not measured).
                report::target(
                    format_args!(
                        "{} within 1.1x of std::fs::copy: {q:.3}x of its rate{}",
                        v.name(),
                        if quick { " (quick run)" } else { "" }
                    ),
                    q >= 1.0 / 1.1,
                );
            }
        }
    }
    report::finish("file_copy", started, failed);
}

/// Write back the dirty pages of the filesystem holding `dir` (`syncfs(2)`), untimed.
fn settle(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        // SAFETY: syncfs on an fd we hold open.
        unsafe { libc::syncfs(d.as_raw_fd()) };
    }
}

/// A file of `bytes` non-zero pseudo-random bytes, written and synced once, read once so
/// the page cache holds it.
fn make_source(path: &Path, bytes: u64) -> io::Result<()> {
    let mut f = File::create(path)?;
    let mut block = vec![0u8; 1 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x as u8) | 1;
    }
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        block.rotate_left(1);
        left -= n as u64;
    }
    f.sync_all()?;
    drop(f);
    std::fs::read(path).map(|_| ())
}

fn copy(v: Variant, src: &Path, dst: &Path) -> io::Result<u64> {
    match v {
        Variant::XevIoUring | Variant::XevEpoll => {
            let b = if v == Variant::XevIoUring {
                Backend::IoUring
            } else {
                Backend::Epoll
            };
            let rt = xev::rt::Builder::new().backend(b).build()?;
            rt.block_on(xev::fs::copy(src, dst))
        }
        Variant::Std => std::fs::copy(src, dst),
        Variant::Tokio => tokio::runtime::Builder::new_current_thread()
            .build()?
            .block_on(tokio::fs::copy(src, dst)),
        Variant::RawSplice => splice_copy(src, dst),
    }
}

/// Copy through a pipe with `IORING_OP_SPLICE`: per MiB, source -> pipe linked with
/// pipe -> destination; a short transfer is finished with further pairs.
fn splice_copy(src: &Path, dst: &Path) -> io::Result<u64> {
    use io_uring::{opcode, squeue, types};
    let s = File::open(src)?;
    let len = s.metadata()?.len();
    let d = File::create(dst)?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new fds into our array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are new and ours.
    let (pr, pw) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: F_SETPIPE_SZ on our pipe.
    unsafe {
        libc::fcntl(
            pw.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            SPLICE_STEP as libc::c_int,
        )
    };
    let mut ring = common::uring::ring(8)?;
    let (mut off_in, mut off_out) = (0u64, 0u64);
    while off_out < len {
        let want = ((len - off_in).min(SPLICE_STEP as u64)) as u32;
        let in_pipe = off_in - off_out;
        let mut n_sqe = 0;
        // SAFETY: the SQEs name fds that stay open until their completions are reaped
        // below, and no memory.
        unsafe {
            let mut sq = ring.submission();
            if want > 0 && in_pipe == 0 {
                let fill = opcode::Splice::new(
                    types::Fd(s.as_raw_fd()),
                    off_in as i64,
                    types::Fd(pw.as_raw_fd()),
                    -1,
                    want,
                )
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(1);
                sq.push(&fill).map_err(io::Error::other)?;
                n_sqe += 1;
            }
            let drain_len = if in_pipe > 0 { in_pipe as u32 } else { want };
            let drain = opcode::Splice::new(
                types::Fd(pr.as_raw_fd()),
                -1,
                types::Fd(d.as_raw_fd()),
                off_out as i64,
                drain_len,
            )
            .build()
            .user_data(2);
            sq.push(&drain).map_err(io::Error::other)?;
            n_sqe += 1;
        }
        ring.submit_and_wait(n_sqe)?;
        let mut seen = 0;
        while seen < n_sqe {
            let cqes: Vec<_> = ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            if cqes.is_empty() {
                common::uring::submit_and_wait_one(&ring.submitter())?;
                continue;
            }
            for (ud, res) in cqes {
                seen += 1;
                if res < 0 && res != -libc::ECANCELED {
                    return Err(io::Error::from_raw_os_error(-res));
                }
                match ud {
                    1 if res == 0 => return Err(io::Error::other("source ended early")),
                    1 => off_in += res as u64,
                    _ if res > 0 => off_out += res as u64,
                    _ => {}
                }
            }
        }
    }
    Ok(off_out)
}
