//! xev variants: the callback API (`XevReader`) and the async runtime (`XevAsyncReader`).

use super::*;

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;

use xev::{Buffer, CallbackAction, Completion, Loop, Op, OpResult, Options, RunMode};

/// `XEV_FILE_POOL_THREADS=N`: the size of xev's thread pool (epoll backend), instead of
/// its default (4 per core, 4..=64).
fn pool_threads() -> Option<usize> {
    common::env_parse::<usize>("XEV_FILE_POOL_THREADS").filter(|&n| n > 0)
}

/// What the read callbacks share: the offsets of the current phase and the next one to
/// dispatch.
struct Shared {
    list: Cell<&'static [u64]>,
    next: Cell<usize>,
    error: RefCell<Option<String>>,
    /// Reads that returned less than asked (their chunk was then finished by more reads).
    short: Cell<u64>,
}

impl Shared {
    /// The next offset to read, if any.
    fn take(&self) -> Option<u64> {
        let i = self.next.get();
        let off = *self.list.get().get(i)?;
        self.next.set(i + 1);
        Some(off)
    }
}

/// One `Completion` per read in flight; each owns its 64 KiB buffer for the whole
/// measurement. The callback checks the chunk, moves its `Op::Pread` to the next offset
/// and rearms (after a short read: to the rest of the chunk, counted in `short`).
pub(super) struct XevReader {
    // Declared first, so dropped first (every completion is Dead between phases anyway).
    lp: Loop,
    comps: Vec<Pin<Box<Completion>>>,
    sh: Rc<Shared>,
    _file: File,
}

fn on_read(sh: &Shared, mut c: Pin<&mut Completion>, r: OpResult) -> CallbackAction {
    let Some(Op::Pread { buf, offset, .. }) = c.as_mut().op_mut() else {
        unreachable!("a pread completion holds its op in its callback");
    };
    let res = match r {
        OpResult::Pread(Ok(n)) if n < buf.len() => {
            // Short (a pread may be): read the rest of the chunk with the same completion.
            sh.short.set(sh.short.get() + 1);
            buf.advance(n);
            *offset += n as u64;
            return CallbackAction::Rearm;
        }
        OpResult::Pread(Ok(n)) => {
            let start = *offset + n as u64 - CHUNK as u64;
            buf.rewind();
            check(CHUNK, buf.as_slice(), start)
        }
        other => Err(format!("read at {offset}: {other:?}")),
    };
    if let Err(e) = res {
        sh.error.borrow_mut().get_or_insert(e);
        sh.next.set(usize::MAX); // stop dispatching
        return CallbackAction::Disarm;
    }
    match sh.take() {
        Some(off) => {
            *offset = off;
            CallbackAction::Rearm
        }
        None => CallbackAction::Disarm,
    }
}

impl XevReader {
    pub(super) fn new(backend: Backend, path: &Path, depth: usize) -> Result<XevReader, String> {
        let file = File::open(path).map_err(|e| format!("open: {e}"))?;
        let lp = Loop::new(Options {
            backend: Some(backend),
            entries: ENTRIES,
            thread_pool: pool_threads().map(|n| {
                xev::ThreadPool::new(xev::ThreadPoolOptions {
                    max_threads: n,
                    ..xev::ThreadPoolOptions::default()
                })
            }),
            ..Options::default()
        })
        .map_err(|e| format!("Loop::new: {e}"))?;
        let sh = Rc::new(Shared {
            list: Cell::new(&[]),
            next: Cell::new(0),
            error: RefCell::new(None),
            short: Cell::new(0),
        });
        let fd = file.as_raw_fd();
        let comps = (0..depth)
            .map(|_| {
                let mut c = Box::pin(Completion::new());
                let sh = sh.clone();
                c.as_mut().prep(
                    Op::Pread {
                        fd,
                        buf: Buffer::from(vec![0u8; CHUNK]),
                        offset: 0,
                    },
                    move |_lp, c, r| on_read(&sh, c, r),
                );
                c
            })
            .collect();
        Ok(XevReader {
            lp,
            comps,
            sh,
            _file: file,
        })
    }
}

impl Reader for XevReader {
    fn phase(&mut self, list: &'static [u64]) -> Result<u64, String> {
        let allocs = common::allocations();
        self.sh.list.set(list);
        self.sh.next.set(0);
        for c in &mut self.comps {
            let Some(off) = self.sh.take() else { break };
            if let Some(Op::Pread { offset, .. }) = c.as_mut().op_mut() {
                *offset = off;
            }
            self.lp.add(c.as_mut());
        }
        self.lp
            .run(RunMode::UntilDone)
            .map_err(|e| format!("run: {e}"))?;
        if let Some(e) = self.sh.error.borrow_mut().take() {
            return Err(e);
        }
        Ok(common::allocations() - allocs)
    }

    fn short_reads(&self) -> u64 {
        self.sh.short.get()
    }
}

/// An `xev::rt` runtime and one `xev::fs::File`; each phase spawns one task per read in
/// flight, looping `read_exact_at` (one `read_at` unless a read comes back short) with
/// its own `Box<[u8]>` (handed back at the end and reused
/// by the next phase).
pub(super) struct XevAsyncReader {
    rt: xev::rt::Runtime,
    file: Rc<xev::fs::File>,
    bufs: Vec<Box<[u8]>>,
}

impl XevAsyncReader {
    pub(super) fn new(
        backend: Backend,
        path: &Path,
        depth: usize,
    ) -> Result<XevAsyncReader, String> {
        let mut b = xev::rt::Builder::new().backend(backend).entries(ENTRIES);
        if let Some(n) = pool_threads() {
            b = b.blocking_threads(n);
        }
        let rt = b.build().map_err(|e| format!("xev runtime: {e}"))?;
        let file = rt
            .block_on(xev::fs::File::open(path))
            .map_err(|e| format!("open: {e}"))?;
        Ok(XevAsyncReader {
            rt,
            file: Rc::new(file),
            bufs: (0..depth)
                .map(|_| vec![0u8; CHUNK].into_boxed_slice())
                .collect(),
        })
    }
}

/// One task's reads: take the next offset, read it, check it, until none is left.
async fn lane(
    file: Rc<xev::fs::File>,
    next: Rc<Cell<usize>>,
    list: &'static [u64],
    mut buf: Box<[u8]>,
) -> Result<Box<[u8]>, String> {
    loop {
        let i = next.get();
        let Some(&off) = list.get(i) else {
            return Ok(buf);
        };
        next.set(i + 1);
        let (r, b) = file.read_exact_at(buf, off).await;
        buf = b;
        r.map_err(|e| format!("read at {off}: {e}"))?;
        check(CHUNK, &buf, off)?;
    }
}

impl Reader for XevAsyncReader {
    fn phase(&mut self, list: &'static [u64]) -> Result<u64, String> {
        let bufs = std::mem::take(&mut self.bufs);
        let file = self.file.clone();
        let depth = bufs.len();
        let (bufs, r) = self.rt.block_on(async move {
            let next = Rc::new(Cell::new(0));
            let mut tasks = Vec::with_capacity(depth);
            let mut back = Vec::with_capacity(depth);
            for buf in bufs {
                tasks.push(xev::spawn(lane(file.clone(), next.clone(), list, buf)));
            }
            let allocs = common::allocations();
            let mut error = None;
            for t in tasks {
                match t.await {
                    Ok(Ok(buf)) => back.push(buf),
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
        });
        self.bufs = bufs;
        r
    }
}
