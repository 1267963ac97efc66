//! tokio variants, on a current_thread runtime with every driver enabled (what
//! `#[tokio::main(flavor = "current_thread")]` builds). tokio has no async file I/O of
//! its own: `tokio::fs::File` runs each operation on the blocking pool (up to 512
//! threads by default) and copies the bytes through an internal buffer.

use super::*;

use std::io::SeekFrom;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// The next offset of `list` to read, if any (shared by the tasks of a phase).
fn take(next: &AtomicUsize, list: &'static [u64]) -> Option<u64> {
    list.get(next.fetch_add(1, Ordering::Relaxed)).copied()
}

/// Spawn one task per entry of `lanes` (`work` runs it and hands the entry back), await
/// them all, and return the entries and the allocations made while they ran.
fn run_phase<L, Fut>(
    rt: &tokio::runtime::Runtime,
    lanes: Vec<L>,
    work: impl Fn(L, Arc<AtomicUsize>) -> Fut,
) -> (Vec<L>, Result<u64, String>)
where
    L: Send + 'static,
    Fut: std::future::Future<Output = Result<L, String>> + Send + 'static,
{
    rt.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(lanes.len());
        let mut back = Vec::with_capacity(lanes.len());
        for l in lanes {
            tasks.push(tokio::spawn(work(l, next.clone())));
        }
        let allocs = common::allocations();
        let mut error = None;
        for t in tasks {
            match t.await {
                Ok(Ok(l)) => back.push(l),
                Ok(Err(e)) => {
                    error.get_or_insert(e);
                }
                Err(e) => {
                    error.get_or_insert(format!("task: {e}"));
                }
            }
        }
        let allocs = common::allocations() - allocs;
        (back, error.map_or(Ok(allocs), Err))
    })
}

/// One `tokio::fs::File` per read in flight, each opened on its own: `try_clone` would
/// `dup` the descriptor, whose file position is then shared, and concurrent `seek` +
/// `read_exact` pairs would race. Each keeps its position and its 64 KiB buffer.
pub(super) struct TokioFsReader {
    rt: tokio::runtime::Runtime,
    lanes: Vec<(tokio::fs::File, u64, Vec<u8>)>,
}

impl TokioFsReader {
    pub(super) fn new(path: &Path, depth: usize) -> Result<TokioFsReader, String> {
        let rt = runtime()?;
        let lanes = rt.block_on(async {
            let mut lanes = Vec::with_capacity(depth);
            for _ in 0..depth {
                let f = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| format!("open: {e}"))?;
                lanes.push((f, 0, vec![0u8; CHUNK]));
            }
            Ok::<_, String>(lanes)
        })?;
        Ok(TokioFsReader { rt, lanes })
    }
}

impl Reader for TokioFsReader {
    fn phase(&mut self, list: &'static [u64]) -> Result<u64, String> {
        let lanes = std::mem::take(&mut self.lanes);
        let (lanes, r) = run_phase(
            &self.rt,
            lanes,
            |(mut f, mut pos, mut buf), next| async move {
                while let Some(off) = take(&next, list) {
                    if pos != off {
                        f.seek(SeekFrom::Start(off))
                            .await
                            .map_err(|e| format!("seek to {off}: {e}"))?;
                    }
                    f.read_exact(&mut buf)
                        .await
                        .map_err(|e| format!("read at {off}: {e}"))?;
                    pos = off + CHUNK as u64;
                    check(CHUNK, &buf, off)?;
                }
                Ok((f, pos, buf))
            },
        );
        self.lanes = lanes;
        r
    }
}

/// `spawn_blocking(read_exact_at)` per read on one shared `std::fs::File`.
pub(super) struct TokioBlockingReader {
    rt: tokio::runtime::Runtime,
    file: Arc<File>,
    bufs: Vec<Vec<u8>>,
}

impl TokioBlockingReader {
    pub(super) fn new(path: &Path, depth: usize) -> Result<TokioBlockingReader, String> {
        Ok(TokioBlockingReader {
            rt: runtime()?,
            file: Arc::new(File::open(path).map_err(|e| format!("open: {e}"))?),
            bufs: (0..depth).map(|_| vec![0u8; CHUNK]).collect(),
        })
    }
}

impl Reader for TokioBlockingReader {
    fn phase(&mut self, list: &'static [u64]) -> Result<u64, String> {
        let bufs = std::mem::take(&mut self.bufs);
        let file = self.file.clone();
        let (bufs, r) = run_phase(&self.rt, bufs, |mut buf, next| {
            let file = file.clone();
            async move {
                while let Some(off) = take(&next, list) {
                    let f = file.clone();
                    let (r, b) = tokio::task::spawn_blocking(move || {
                        let r = f.read_exact_at(&mut buf, off);
                        (r, buf)
                    })
                    .await
                    .map_err(|e| format!("spawn_blocking: {e}"))?;
                    buf = b;
                    r.map_err(|e| format!("read at {off}: {e}"))?;
                    check(CHUNK, &buf, off)?;
                }
                Ok(buf)
            }
        });
        self.bufs = bufs;
        r
    }
}
