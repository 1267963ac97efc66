//! The file-op side: the pattern files, and the reads and writes of them on both APIs
//! (`File` watchers in the callback storm, `xev::fs` and `spawn_blocking` in the async
//! storm).

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;

use xev::time::timeout;
use xev::{Buffer, CallbackAction, Completion, CompletionState, Error, Loop, ReadError};

use crate::callback::CbWorld;
use crate::common::*;
use crate::runtime::{us, Live, RtWorld};
use crate::{FILE_ID, FILE_LEN};

/// Two files of [`FILE_LEN`] bytes of the pattern stream: one read-only, one that the
/// storm also writes (the same bytes, so reads may overlap writes).
pub(crate) struct Files {
    pub(crate) read_only: PathBuf,
    pub(crate) scratch: PathBuf,
}

impl Files {
    pub(crate) fn new(tag: &str) -> Files {
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        let f = Files {
            read_only: dir.join(format!("xev-storm-{pid}-{tag}-ro")),
            scratch: dir.join(format!("xev-storm-{pid}-{tag}-rw")),
        };
        let content = stream_bytes(FILE_ID, CLIENT, 0, FILE_LEN as usize);
        std::fs::write(&f.read_only, &content).unwrap();
        std::fs::write(&f.scratch, &content).unwrap();
        f
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.read_only);
        let _ = std::fs::remove_file(&self.scratch);
    }
}

pub(crate) struct FileSlot {
    pub(crate) c: Pin<Box<Completion>>,
    pub(crate) k: Pin<Box<Completion>>,
    pub(crate) busy: bool,
}

impl CbWorld {
    pub(crate) fn file_action(&mut self, lp: &mut Loop, i: usize) {
        let draining = self.core.draining;
        let rng = &mut self.core.rng;
        let slot = &mut self.files[i];
        if slot.busy {
            if rng.chance(400) && slot.k.state() == CompletionState::Dead {
                self.core.ledger.stats.bump("file_cancels_issued");
                lp.cancel(slot.k.as_mut(), &slot.c, |_, _, _| CallbackAction::Disarm);
            }
            return;
        }
        if draining || slot.c.state() != CompletionState::Dead {
            return;
        }
        let off = rng.below(FILE_LEN);
        let len = rng.range(1, 64 * 1024).min(FILE_LEN - off);
        let weak = self.core.weak.clone();
        slot.busy = true;
        let which = rng.below(3);
        if which == 2 {
            self.core.ledger.stats.bump("file_pwrites");
            let buf = stream_bytes(FILE_ID, CLIENT, off, len as usize);
            self.file_rw.pwrite(
                lp,
                slot.c.as_mut(),
                Buffer::from(buf),
                off,
                (weak, i, len),
                |(weak, i, len), _, _, r| {
                    if let Some(w) = weak.upgrade() {
                        let mut w = w.borrow_mut();
                        w.files[*i].busy = false;
                        let ledger = &mut w.core.ledger;
                        match r {
                            Ok(n) if n as u64 <= *len => ledger.stats.bump("file_pwrites_done"),
                            Err(Error::Canceled) => ledger.stats.bump("file_ops_canceled"),
                            other => ledger.fail(format!("callback: pwrite of {len}: {other:?}")),
                        }
                    }
                    CallbackAction::Disarm
                },
            );
        } else {
            self.core.ledger.stats.bump("file_preads");
            let file = if which == 0 {
                &self.file_ro
            } else {
                &self.file_rw
            };
            file.pread(
                lp,
                slot.c.as_mut(),
                Buffer::from(vec![0u8; len as usize]),
                off,
                (weak, i, off),
                |(weak, i, off), _, c, r| {
                    if let Some(w) = weak.upgrade() {
                        let mut w = w.borrow_mut();
                        w.files[*i].busy = false;
                        let ledger = &mut w.core.ledger;
                        match r {
                            Ok(n) => {
                                ledger.stats.bump("file_preads_done");
                                let data = &c.buffer().unwrap().as_slice()[..n];
                                if let Err(e) = check(FILE_ID, CLIENT, *off, data, FILE_ID) {
                                    ledger.fail(format!("callback: pread: {e}"));
                                }
                            }
                            Err(ReadError::Canceled) => ledger.stats.bump("file_ops_canceled"),
                            Err(e) => ledger.fail(format!("callback: pread at {off}: {e:?}")),
                        }
                    }
                    CallbackAction::Disarm
                },
            );
        }
    }
}

pub(crate) async fn rt_files(w: Rc<RtWorld>) {
    let _live = Live::task(&w);
    let mut rng = w.fork();
    let open = |w: &RtWorld| {
        let ro = w.files.read_only.clone();
        let rw = w.files.scratch.clone();
        async move {
            let a = xev::fs::File::open(ro).await;
            let b = xev::fs::File::options()
                .read(true)
                .write(true)
                .open(rw)
                .await;
            (a.expect("open"), b.expect("open"))
        }
    };
    let (mut ro, mut rw) = open(&w).await;
    let mut n = 0u64;
    while !w.stop.get() {
        n += 1;
        if n.is_multiple_of(40) {
            // New descriptors (whose numbers earlier operations may have used).
            (ro, rw) = open(&w).await;
            w.bump("file_reopens");
        }
        let off = rng.below(FILE_LEN);
        let len = rng.range(1, 64 * 1024).min(FILE_LEN - off);
        let verify = |r: io::Result<usize>, b: Vec<u8>| match r {
            Ok(n) => {
                if let Err(e) = check(FILE_ID, CLIENT, off, &b[..n], FILE_ID) {
                    w.fail(format!("async: read_at: {e}"));
                }
            }
            Err(e) => w.fail(format!("async: read_at {off}: {e}")),
        };
        match rng.below(10) {
            0..=2 => {
                let (r, b) = ro.read_at(vec![0u8; len as usize], off).await;
                w.bump("file_reads");
                verify(r, b);
            }
            3 => {
                let (r, b) = rw.read_at(vec![0u8; len as usize], off).await;
                w.bump("file_reads");
                verify(r, b);
            }
            4..=5 => {
                let buf = stream_bytes(FILE_ID, CLIENT, off, len as usize);
                match rw.write_at(buf, off).await.0 {
                    Ok(n) if n as u64 <= len => w.bump("file_writes"),
                    other => w.fail(format!("async: write_at {off}+{len}: {other:?}")),
                }
            }
            6 => {
                poll_once_and_drop(ro.read_at(vec![0u8; len as usize], off));
                w.bump("file_reads_polled_once");
            }
            7 => match timeout(us(&mut rng, 500), ro.read_at(vec![0u8; len as usize], off)).await {
                Ok((r, b)) => verify(r, b),
                Err(_) => w.bump("file_reads_dropped"),
            },
            _ => {
                let k = rng.below(1000);
                let h = xev::spawn_blocking(move || k * 2);
                if rng.chance(300) {
                    h.abort();
                    let _ = h.await;
                    w.bump("blocking_aborted");
                } else {
                    match h.await {
                        Ok(v) if v == k * 2 => w.bump("blocking_done"),
                        other => w.fail(format!("async: spawn_blocking: {other:?}")),
                    }
                }
            }
        }
    }
}
