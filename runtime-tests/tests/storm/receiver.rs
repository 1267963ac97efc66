//! The checker of a received self-describing stream (see `common`), which tolerates the
//! bytes a dropped read may have taken.

use crate::common::*;

/// Verifies a received stream. Normally the position is known exactly; after a read
/// future was dropped (whose bytes, if it had already read some, are lost by design), up
/// to that read's length may be missing at some later point, so the receiver keeps
/// every position consistent with what arrived, each with the loss it may still absorb.
pub(crate) struct Receiver {
    pub(crate) id: u32,
    pub(crate) from: u8,
    /// (position in the stream, bytes that may still be missing).
    pub(crate) cands: Vec<(u64, u64)>,
    /// Bytes received.
    pub(crate) got: u64,
}

impl Receiver {
    pub(crate) fn new(id: u32, from: u8) -> Receiver {
        Receiver {
            id,
            from,
            cands: vec![(0, 0)],
            got: 0,
        }
    }

    /// A read of `len` bytes was dropped: up to `len` bytes may be lost.
    pub(crate) fn dropped_read(&mut self, len: u64) {
        for c in &mut self.cands {
            c.1 += len;
        }
    }

    /// `data` arrived; `total` is the length of the stream.
    pub(crate) fn data(&mut self, data: &[u8], total: u64, max_id: u32) -> Result<(), String> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len() as u64;
        if let [(p, 0)] = self.cands[..] {
            check(self.id, self.from, p, data, max_id)?;
            if p + len > total {
                return Err(format!(
                    "stream (id {}, {}) ran past its end: bytes {p}..{} of {total}",
                    self.id,
                    side_name(self.from),
                    p + len
                ));
            }
            self.cands[0].0 += len;
            self.got += len;
            return Ok(());
        }
        let mut next = Vec::new();
        for &(p, b) in &self.cands {
            for k in self.skips(p, b, data) {
                let q = p + k;
                if q + len <= total && matches(self.id, self.from, q, data) {
                    next.push((q + len, b - k));
                }
            }
        }
        if next.is_empty() {
            let (p, b) = self.cands[0];
            let why = check(self.id, self.from, p, data, max_id).err();
            return Err(format!(
                "{len} bytes match no position of stream (id {}, {}) at {p}..={} ({} \
                 candidates): {}",
                self.id,
                side_name(self.from),
                p + b,
                self.cands.len(),
                why.unwrap_or_else(|| "they would run past its end".into())
            ));
        }
        next.sort_unstable();
        next.dedup_by(|a, b| {
            a.0 == b.0 && {
                b.1 = b.1.max(a.1);
                true
            }
        });
        self.cands = next;
        self.got += len;
        Ok(())
    }

    /// How many bytes may have been skipped before `data`, from position `p` with
    /// budget `b`: read off the words `data` carries when it holds a whole one,
    /// otherwise every possibility.
    fn skips(&self, p: u64, b: u64, data: &[u8]) -> Vec<u64> {
        if b == 0 {
            return vec![0];
        }
        if data.len() >= 15 {
            let mut ks = Vec::new();
            for a in 0..8 {
                let w: [u8; 8] = data[a..a + 8].try_into().unwrap();
                if let Some((id, side, idx)) = decode(w, u32::MAX) {
                    let q = (idx * 8).checked_sub(a as u64);
                    if let (true, Some(q)) = (id == self.id && side == self.from, q) {
                        if q >= p && q - p <= b {
                            ks.push(q - p);
                        }
                    }
                }
            }
            ks.sort_unstable();
            ks.dedup();
            return ks;
        }
        (0..=b).collect()
    }

    /// At end of stream: the bytes lost, if the whole stream of length `total` is
    /// accounted for (received, or lost to dropped reads).
    pub(crate) fn complete(&self, total: u64) -> Option<u64> {
        self.cands
            .iter()
            .any(|&(p, b)| p == total || (p < total && p + b >= total))
            .then(|| total - self.got)
    }
}
