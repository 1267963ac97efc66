//! Helpers shared by the proof tests (storm, faults, bad_input, load): a seeded random
//! generator, self-describing byte streams, process resource probes (open fds, RSS,
//! fd limit), a no-op waker, and "is this loop still healthy" checks for both APIs.
//!
//! Each test file uses only part of it.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::{Read, Write};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use xev::watcher::tcp::Tcp;
use xev::{Buffer, CallbackAction, Completion, Loop, RunMode};

// ---------------------------------------------------------------------------------------
// Random numbers

/// splitmix64: small, fast, and good enough to pick actions.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// A fresh generator derived from this one (for a task of its own).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

/// The seed from `var` (decimal or 0x-hex), else one from the clock; printed either way
/// so a failing run can be repeated.
pub fn seed_from_env(var: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{var}={s:?} is not a number: {e}"))
        }
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    eprintln!("{var}={seed}");
    seed
}

// ---------------------------------------------------------------------------------------
// Self-describing streams

/// Which direction a stream flows: what the client sends, or what the server sends.
pub const CLIENT: u8 = 0;
/// See [`CLIENT`].
pub const SERVER: u8 = 1;

const SALT: u64 = 0x5A5A_5A5A_5A5A_5A5A;
const W_MASK: u64 = 0x7FFF_FFFF;

/// Word `w` of the stream that `side` of connection `id` sends. Every 8-byte word names
/// its connection, direction and position, so foreign, duplicated, lost or zeroed bytes
/// are caught and identified (a zero-filled buffer decodes to no valid connection).
pub fn word(id: u32, side: u8, w: u64) -> u64 {
    (((id as u64) << 32) | (((side & 1) as u64) << 31) | (w & W_MASK)) ^ SALT
}

/// `(id, side, word index)` of a word, if it looks like one of ours (`max_id` bounds the
/// ids in use).
pub fn decode(bytes: [u8; 8], max_id: u32) -> Option<(u32, u8, u64)> {
    let v = u64::from_le_bytes(bytes) ^ SALT;
    let id = (v >> 32) as u32;
    (id >= 1 && id <= max_id).then_some((id, ((v >> 31) & 1) as u8, v & W_MASK))
}

/// Fill `buf` with bytes `off..off + buf.len()` of stream `(id, side)`.
pub fn fill(id: u32, side: u8, off: u64, buf: &mut [u8]) {
    let mut i = 0;
    let mut p = off;
    while i < buf.len() {
        let skip = (p % 8) as usize;
        let bytes = word(id, side, p / 8).to_le_bytes();
        let n = (8 - skip).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&bytes[skip..skip + n]);
        i += n;
        p += n as u64;
    }
}

/// Bytes `off..off + len` of stream `(id, side)`.
pub fn stream_bytes(id: u32, side: u8, off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    fill(id, side, off, &mut v);
    v
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Whether `data` is exactly bytes `off..` of stream `(id, side)`.
pub fn matches(id: u32, side: u8, off: u64, data: &[u8]) -> bool {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        s.resize(data.len(), 0);
        fill(id, side, off, &mut s);
        s[..] == *data
    })
}

/// `Ok` if `data` is bytes `off..` of stream `(id, side)`; otherwise a description of
/// the first difference and of whose bytes arrived instead.
pub fn check(id: u32, side: u8, off: u64, data: &[u8], max_id: u32) -> Result<(), String> {
    if matches(id, side, off, data) {
        return Ok(());
    }
    let expected = stream_bytes(id, side, off, data.len());
    let first = (0..data.len())
        .find(|&i| data[i] != expected[i])
        .expect("a mismatch has a first differing byte");
    Err(format!(
        "stream (id {id}, {}) at offset {}: {} of {} bytes in, got {:02x?} expected {:02x?}; \
         the bytes there {}",
        side_name(side),
        off + first as u64,
        first,
        data.len(),
        &data[first..(first + 8).min(data.len())],
        &expected[first..(first + 8).min(data.len())],
        describe(&data[first..], max_id),
    ))
}

/// Name a stream direction.
pub fn side_name(side: u8) -> &'static str {
    if side == CLIENT {
        "client->server"
    } else {
        "server->client"
    }
}

/// Whose stream `data` seems to come from: an alignment at which two consecutive words
/// decode to consecutive positions of one stream (or one word, if that is all there is).
pub fn describe(data: &[u8], max_id: u32) -> String {
    let word_at = |start: usize| -> Option<(u32, u8, u64)> {
        let b: [u8; 8] = data.get(start..start + 8)?.try_into().ok()?;
        decode(b, max_id)
    };
    let mut single = None;
    for align in 0..8 {
        match (word_at(align), word_at(align + 8)) {
            (Some((id, side, w)), Some((id2, side2, w2)))
                if id == id2 && side == side2 && w2 == w + 1 =>
            {
                return format!(
                    "look like stream (id {id}, {}) at offset {} (alignment {align})",
                    side_name(side),
                    w * 8 - align as u64
                );
            }
            (Some(d), None) if data.len() < align + 16 => single = single.or(Some((d, align))),
            _ => {}
        }
    }
    if let Some(((id, side, w), align)) = single {
        return format!(
            "may be stream (id {id}, {}) at offset {} (one word at alignment {align})",
            side_name(side),
            (w * 8).wrapping_sub(align as u64)
        );
    }
    if data.iter().all(|&b| b == 0) {
        "are zeros (never written)".into()
    } else {
        "match no stream of this run".into()
    }
}

// ---------------------------------------------------------------------------------------
// Process resources

/// Entries of /proc/self/fd.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// The open fds with what they point to, for a leak report.
pub fn fd_list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{}->{}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    v.sort();
    v
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resident set size now, in KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// Peak resident set size (since start or the last [`reset_peak_rss`]), in KiB.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// Reset the peak RSS to the current RSS (Linux 4.0+); false if the kernel refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Raise the soft fd limit to the hard one; returns the new soft limit.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is `u64` on Linux, not on every target
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(r, 0, "getrlimit: {}", std::io::Error::last_os_error());
    if lim.rlim_cur < lim.rlim_max {
        let new = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            return new.rlim_cur as u64;
        }
    }
    lim.rlim_cur as u64
}

/// One lock for the tests of a file that count process-wide resources.
pub fn serial(lock: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

/// The message of a panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".into())
}

// ---------------------------------------------------------------------------------------
// Futures

fn noop_raw() -> RawWaker {
    fn clone(_: *const ()) -> RawWaker {
        noop_raw()
    }
    fn nothing(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, nothing, nothing, nothing);
    RawWaker::new(std::ptr::null(), &VTABLE)
}

/// A waker that does nothing.
pub fn noop_waker() -> Waker {
    // SAFETY: the vtable's functions ignore the (null) data pointer.
    unsafe { Waker::from_raw(noop_raw()) }
}

/// Poll `fut` exactly once with a no-op waker, then drop it; true if it was ready.
pub fn poll_once_and_drop<F: Future>(fut: F) -> bool {
    let mut fut = pin!(fut);
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    matches!(fut.as_mut().poll(&mut cx), Poll::Ready(_))
}

// ---------------------------------------------------------------------------------------
// Health checks: after a fault or a bad input, the same loop still works.

/// On `lp`: a 1 ms timer fires (not early) and a TCP round trip through the callback API
/// (accept, connect, send, recv) carries its bytes.
pub fn assert_loop_healthy(lp: &mut Loop, what: &str) {
    let start = Instant::now();
    let fired = Rc::new(Cell::new(false));
    let mut t = Box::pin(Completion::new());
    let f = fired.clone();
    lp.timer(t.as_mut(), 1, move |_, _, _| {
        f.set(true);
        CallbackAction::Disarm
    });
    lp.run(RunMode::UntilDone)
        .unwrap_or_else(|e| panic!("{what}: loop run failed: {e}"));
    assert!(fired.get(), "{what}: the timer did not fire");
    assert!(
        start.elapsed() >= Duration::from_millis(1),
        "{what}: timer fired early"
    );

    let server = Tcp::new("127.0.0.1:0".parse().unwrap()).unwrap();
    server.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    server.listen(8).unwrap();
    let addr = server.local_addr().unwrap();
    let got: Rc<RefCell<Vec<u8>>> = Rc::default();
    let mut a = Box::pin(Completion::new());
    let mut cn = Box::pin(Completion::new());
    server.accept(lp, a.as_mut(), got.clone(), |got, lp, c, res| {
        let (conn, _) = res.expect("health accept");
        let conn = Rc::new(conn);
        let ud = (conn.clone(), got.clone());
        conn.read(lp, c, Buffer::inline(32), ud, |(_conn, got), _, c, res| {
            let n = res.expect("health read");
            got.borrow_mut()
                .extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
            if got.borrow().len() < 5 {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        });
        CallbackAction::Disarm
    });
    let client = Rc::new(Tcp::new(addr).unwrap());
    client.connect(
        lp,
        cn.as_mut(),
        addr,
        client.clone(),
        |client, lp, c, res| {
            res.expect("health connect");
            client.write(lp, c, Buffer::copy_from(b"hello"), (), |_, _, _, res| {
                assert_eq!(res.expect("health write"), 5);
                CallbackAction::Disarm
            });
            CallbackAction::Disarm
        },
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while lp.active() > 0 {
        lp.run(RunMode::Once)
            .unwrap_or_else(|e| panic!("{what}: loop run failed: {e}"));
        assert!(
            Instant::now() < deadline,
            "{what}: the health round trip hung"
        );
    }
    assert_eq!(&*got.borrow(), b"hello", "{what}: round trip bytes");
}

/// In a runtime: a sleep ends (not early) and a TCP round trip through `xev::net`
/// carries its bytes.
pub async fn assert_runtime_healthy(what: &str) {
    let start = Instant::now();
    xev::time::sleep(Duration::from_millis(1)).await;
    assert!(
        start.elapsed() >= Duration::from_millis(1),
        "{what}: sleep ended early"
    );
    let round_trip = async {
        let l = xev::net::TcpListener::bind("127.0.0.1:0").expect("health bind");
        let addr = l.local_addr().unwrap();
        let client = xev::net::TcpStream::connect(addr)
            .await
            .expect("health connect");
        let (server, _) = l.accept().await.expect("health accept");
        let (r, _) = client.write_all(b"hello".to_vec()).await;
        r.expect("health write");
        let (r, got) = server.read_exact(vec![0u8; 5]).await;
        r.expect("health read");
        got
    };
    let got = xev::time::timeout(Duration::from_secs(10), round_trip)
        .await
        .unwrap_or_else(|_| panic!("{what}: the health round trip hung"));
    assert_eq!(got, b"hello", "{what}: round trip bytes");
}

/// A blocking std TCP pair on loopback: (client, server side).
pub fn std_tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// Send all of `data` and read back exactly as much on a blocking std socket pair (a
/// sanity check that the process itself is fine).
pub fn std_round_trip() {
    let (mut c, mut s) = std_tcp_pair();
    c.write_all(b"ok").unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ok");
}

/// A pinned, boxed completion.
pub fn completion() -> Pin<Box<Completion>> {
    Box::pin(Completion::new())
}
