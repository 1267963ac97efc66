//! The load generator: `conns` kept-alive connections, each sending `depth` pipelined
//! requests in one write and the next batch once all their responses are in, for a
//! warm-up and then a timed section. It runs on its own thread over raw epoll
//! (edge-triggered, each socket registered once), so it costs every server the same,
//! and checks every response: byte for byte against the server's exact response, or,
//! for servers whose headers vary (hyper's `date`), its framing, status and body.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::common::epoll::{Epoll, SOCKET};

/// The request every connection sends.
pub const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// How responses are checked.
#[derive(Clone, Copy)]
pub enum Expect {
    /// Exactly these bytes, every time.
    Exact(&'static [u8]),
    /// `HTTP/1.1 200 OK`, a `content-length` header (any case) equal to the body's
    /// length, any other headers, then exactly this body.
    Body(&'static [u8]),
}

/// What one load run asks for.
#[derive(Clone)]
pub struct Spec {
    pub addr: SocketAddr,
    pub conns: usize,
    pub depth: usize,
    pub warmup: Duration,
    pub timed: Duration,
    pub expect: Expect,
    /// The server thread's CPU clock (`pthread_getcpuclockid`), or
    /// `CLOCK_PROCESS_CPUTIME_ID` for a server of several threads (then the load
    /// thread's own CPU time is subtracted).
    pub server_clock: libc::clockid_t,
    /// The server's `/proc` stat file (thread or process), for its user/system split.
    pub server_stat: Option<std::sync::Arc<super::ticks::StatFile>>,
}

/// A point of the timed section.
#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    responses: u64,
    server_cpu: Duration,
    client_cpu: Duration,
    /// The server's (user, system) CPU time, in clock ticks.
    server_split: Option<(Duration, Duration)>,
    allocs: u64,
}

/// The figures of one run.
#[derive(Clone, Copy)]
pub struct Sample {
    pub per_sec: f64,
    pub server_us_per_req: f64,
    pub client_us_per_req: f64,
    pub allocs_per_req: f64,
    /// Share of the server's CPU time spent in user space (NaN when not measured).
    pub server_user_share: f64,
    /// Responses checked over the whole run (warm-up and drain included).
    pub checked: u64,
}

impl Sample {
    /// The server's user-space CPU time per request (NaN when not measured).
    pub fn server_user_us(&self) -> f64 {
        self.server_us_per_req * self.server_user_share
    }

    /// The load generator's share of one CPU.
    pub fn load_busy(&self) -> f64 {
        self.client_us_per_req * self.per_sec / 1e6
    }

    /// The server's share of one CPU (of all CPUs together for a multi-threaded one).
    pub fn server_busy(&self) -> f64 {
        self.server_us_per_req * self.per_sec / 1e6
    }
}

/// CPU time of the clock `id` so far.
pub fn clock_time(id: libc::clockid_t) -> Duration {
    // SAFETY: clock_gettime fills the zeroed timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above; an invalid id is an error return, not UB.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The CPU clock of a running thread.
pub fn thread_clock(thread: libc::pthread_t) -> io::Result<libc::clockid_t> {
    let mut id: libc::clockid_t = 0;
    // SAFETY: `thread` is a live thread (its JoinHandle is held by the caller); `id` is
    // ours to write.
    let r = unsafe { libc::pthread_getcpuclockid(thread, &mut id) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(id)
}

/// One connection's state.
struct Conn {
    sock: TcpStream,
    /// Requests of the current batch not yet answered.
    outstanding: usize,
    /// Bytes of the current batch written so far (< batch length while a write waits).
    sent: usize,
    /// Exact mode: bytes of the expected response matched so far.
    matched: usize,
    /// Body mode: bytes received and not yet parsed.
    partial: Vec<u8>,
}

/// Checks and counts responses.
struct Checker {
    expect: Expect,
    responses: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Checker {
    fn fail(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }

    /// Consume `data` (what one read returned on `c`); returns responses completed.
    fn feed(&mut self, c: &mut Conn, data: &[u8]) -> Result<usize, String> {
        match self.expect {
            Expect::Exact(want) => {
                let mut done = 0;
                let mut data = data;
                while !data.is_empty() {
                    let k = (want.len() - c.matched).min(data.len());
                    if data[..k] != want[c.matched..c.matched + k] {
                        return Err(format!(
                            "response differs: expected {:?}, got {:?}",
                            String::from_utf8_lossy(&want[c.matched..c.matched + k]),
                            String::from_utf8_lossy(&data[..k])
                        ));
                    }
                    c.matched += k;
                    data = &data[k..];
                    if c.matched == want.len() {
                        c.matched = 0;
                        done += 1;
                    }
                }
                Ok(done)
            }
            Expect::Body(body) => {
                c.partial.extend_from_slice(data);
                let mut at = 0;
                let mut done = 0;
                while let Some(len) = framed(&c.partial[at..], body)? {
                    at += len;
                    done += 1;
                }
                c.partial.drain(..at);
                Ok(done)
            }
        }
    }
}

/// The length of the whole response at the start of `buf`, None if incomplete.
fn framed(buf: &[u8], body: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 4096 {
            return Err("response head over 4 KiB".into());
        }
        return Ok(None);
    };
    let head = &buf[..end];
    let mut lines = head.split(|&b| b == b'\n');
    let status = lines.next().unwrap_or_default();
    if status != b"HTTP/1.1 200 OK\r" {
        return Err(format!("status line {:?}", String::from_utf8_lossy(status)));
    }
    let mut length = None;
    for l in lines {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            return Err(format!("header line {:?}", String::from_utf8_lossy(l)));
        };
        if l[..colon].eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(l[colon + 1..].trim_ascii())
                .ok()
                .and_then(|s| s.parse::<usize>().ok());
        }
    }
    if length != Some(body.len()) {
        return Err(format!(
            "content-length {length:?}, expected {}",
            body.len()
        ));
    }
    let total = end + 4 + body.len();
    if buf.len() < total {
        return Ok(None);
    }
    if &buf[end + 4..total] != body {
        return Err(format!(
            "body {:?}",
            String::from_utf8_lossy(&buf[end + 4..total])
        ));
    }
    Ok(Some(total))
}

/// Write what is left of the batch; false when the socket is full (EPOLLOUT resumes).
fn send_batch(c: &mut Conn, batch: &[u8]) -> Result<bool, String> {
    while c.sent < batch.len() {
        match (&c.sock).write(&batch[c.sent..]) {
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    Ok(true)
}

/// Handle the readiness `events` of connection `c`: go on with a write the socket
/// refused, read and check all there is, and send the next batch once the current one
/// is answered (while `sending`). Ok(false) when the connection is done (its last batch
/// answered after `sending` ended).
fn service(
    c: &mut Conn,
    events: u32,
    batch: &[u8],
    rbuf: &mut [u8],
    ck: &mut Checker,
    sending: bool,
    depth: usize,
) -> Result<bool, String> {
    if c.sent < batch.len() && events & libc::EPOLLOUT as u32 != 0 {
        send_batch(c, batch)?;
    }
    // Read everything there is (edge-triggered). A short read emptied the socket: data
    // that arrives after it raises a new edge, so no read is spent to see EAGAIN (at
    // depth 1 that read would be a third syscall per request, on the load generator's
    // CPU, which the servers share).
    loop {
        let n = match (&c.sock).read(rbuf) {
            Ok(0) => {
                return Err(format!(
                    "end of stream with {} response(s) outstanding",
                    c.outstanding
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        let done = ck.feed(c, &rbuf[..n])?;
        if done > c.outstanding {
            return Err(format!(
                "{done} response(s) to {} request(s)",
                c.outstanding
            ));
        }
        ck.responses += done as u64;
        c.outstanding -= done;
        if c.outstanding == 0 {
            if !sending {
                return Ok(false);
            }
            c.outstanding = depth;
            c.sent = 0;
            send_batch(c, batch)?;
        }
        if n < rbuf.len() {
            return Ok(true);
        }
    }
}

/// Run the load against `spec.addr`: the figures of the timed section, or the first
/// error (a failed connection, a wrong or missing response).
pub fn run(spec: Spec) -> Result<Sample, String> {
    let batch = REQUEST.repeat(spec.depth);
    let ep = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut conns = Vec::with_capacity(spec.conns);
    for i in 0..spec.conns {
        let sock = TcpStream::connect(spec.addr).map_err(|e| format!("connect: {e}"))?;
        sock.set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        ep.add(sock.as_raw_fd(), SOCKET, i as u64)
            .map_err(|e| format!("epoll_ctl: {e}"))?;
        conns.push(Conn {
            sock,
            outstanding: 0,
            sent: 0,
            matched: 0,
            partial: Vec::with_capacity(4096),
        });
    }
    let mut ck = Checker {
        expect: spec.expect,
        responses: 0,
        errors: 0,
        first_error: None,
    };
    let mark = |ck: &Checker| {
        let client_cpu = super::common::thread_cpu_time();
        // A multi-threaded server's CPU time is the process's minus this thread's.
        let server_cpu = if spec.server_clock == libc::CLOCK_PROCESS_CPUTIME_ID {
            clock_time(spec.server_clock).saturating_sub(client_cpu)
        } else {
            clock_time(spec.server_clock)
        };
        Mark {
            at: Instant::now(),
            responses: ck.responses,
            server_cpu,
            client_cpu,
            server_split: spec.server_stat.as_ref().and_then(|f| f.user_sys()),
            allocs: super::common::allocations(),
        }
    };
    let begin = Instant::now();
    let timed_from = begin + spec.warmup;
    let timed_to = timed_from + spec.timed;
    // After the timed section: no new batches; wait this long for the last responses.
    let drain_to = timed_to + Duration::from_secs(5);
    // A timed section in which no response came yet is held open this much longer for
    // one (rates are over the section's real length): a stalled VM once left a 0.25 s
    // quick-mode section of a peer empty, which measured nothing rather than a hang.
    let stall_grace = Duration::from_secs(2);
    let (mut start, mut end): (Option<Mark>, Option<Mark>) = (None, None);
    let mut sending = true;
    let mut in_flight: usize = conns.len();
    for c in conns.iter_mut() {
        c.outstanding = spec.depth;
        if let Err(e) = send_batch(c, &batch) {
            ck.fail(e);
            c.outstanding = 0;
            in_flight -= 1;
        }
    }
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut rbuf = vec![0u8; 64 * 1024];
    while in_flight > 0 {
        let now = Instant::now();
        if start.is_none() && now >= timed_from {
            start = Some(mark(&ck));
        }
        let answered = start.as_ref().is_some_and(|a| ck.responses > a.responses);
        if end.is_none() && now >= timed_to && (answered || now >= timed_to + stall_grace) {
            end = Some(mark(&ck));
            sending = false;
        }
        if now >= drain_to {
            ck.fail(format!(
                "{in_flight} connection(s) still waiting for responses 5 s after the end"
            ));
            break;
        }
        let next = if start.is_none() {
            timed_from
        } else if end.is_none() {
            if now < timed_to {
                timed_to
            } else {
                timed_to + stall_grace
            }
        } else {
            drain_to
        };
        let n = ep
            .wait(
                &mut evs,
                Some(next.saturating_duration_since(now) + Duration::from_millis(1)),
            )
            .map_err(|e| format!("epoll_wait: {e}"))?;
        for ev in &evs[..n] {
            let c = &mut conns[ev.u64 as usize];
            if c.outstanding == 0 {
                continue; // done, or given up after an error: nothing is expected
            }
            match service(
                c, ev.events, &batch, &mut rbuf, &mut ck, sending, spec.depth,
            ) {
                Ok(true) => {}
                Ok(false) => in_flight -= 1,
                Err(e) => {
                    // Count it and give up on this connection; the others go on.
                    ck.fail(e);
                    c.outstanding = 0;
                    in_flight -= 1;
                }
            }
        }
    }
    if let Some(e) = ck.first_error {
        return Err(format!("{} error(s); first: {e}", ck.errors));
    }
    let (Some(a), Some(b)) = (start, end) else {
        return Err("the run ended before its timed section did".into());
    };
    let n = (b.responses - a.responses) as f64;
    if n == 0.0 {
        return Err(format!(
            "no response in the timed section (held open {stall_grace:?} longer for one)"
        ));
    }
    Ok(Sample {
        per_sec: n / (b.at - a.at).as_secs_f64(),
        server_us_per_req: (b.server_cpu.saturating_sub(a.server_cpu)).as_secs_f64() * 1e6 / n,
        client_us_per_req: (b.client_cpu.saturating_sub(a.client_cpu)).as_secs_f64() * 1e6 / n,
        allocs_per_req: (b.allocs - a.allocs) as f64 / n,
        server_user_share: match (a.server_split, b.server_split) {
            (Some((u0, s0)), Some((u1, s1))) => {
                let (u, k) = ((u1 - u0).as_secs_f64(), (s1 - s0).as_secs_f64());
                if u + k > 0.0 {
                    u / (u + k)
                } else {
                    f64::NAN
                }
            }
            _ => f64::NAN,
        },
        checked: ck.responses,
    })
}
