//! A TCP echo server written with xev's callback API (watchers), serving many clients at
//! once on one thread.
//!
//! ```text
//! cargo run --example echo_callbacks -- [port] [--count N] [--backend io_uring|epoll]
//! ```
//!
//! It listens on 127.0.0.1:`port` (default 0: any free port; the bound address is
//! printed) until Ctrl-C, or until `--count N` connections have been served and closed.
//! Try it with `nc 127.0.0.1 PORT`, or:
//!
//! ```text
//! python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",int(sys.argv[1])));
//! s.sendall(b"hello\n"); print(s.recv(64)); s.close()' PORT
//! ```
//!
//! The shape:
//! - one accept completion that rearms for every connection; when accepting fails for
//!   lack of descriptors (`EMFILE`, `ENFILE`) or memory, it pauses instead (a retry now
//!   would fail now, in a busy loop): the same completion runs a 50 ms timer, cut short
//!   when a client closes, then accepts again. Accepted clients are served meanwhile;
//!   the waiting ones stay in the listen backlog;
//! - per client, an `Rc<RefCell<Client>>` holding its socket, a boxed read completion, a
//!   close completion and a [`WriteQueue`]: every read is echoed through the queue (writes
//!   go out in order and in full) and the read rearms; when too much is queued the read
//!   pauses until the queue drains (back-pressure); buffers of finished writes are reused;
//! - on EOF the client is closed once its queue is empty;
//! - a 100 ms timer polls the Ctrl-C flag (set by a plain signal handler) and frees the
//!   closed clients: a completion must not be freed inside its own callback, so a client
//!   is dropped later, by another completion's callback, once its completions are Dead.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};

use xev::watcher::stream::WriteQueue;
use xev::watcher::tcp::Tcp;
use xev::watcher::Timer;
use xev::{
    Backend, Buffer, CallbackAction, Completion, CompletionState, Error, Loop, Options, ReadError,
    RunMode,
};

/// Bytes per read.
const READ_SIZE: usize = 16 * 1024;
/// Queued writes per client above which its reads pause.
const MAX_QUEUED: usize = 8;
/// How long accepting pauses after running out of descriptors (unless a client closes).
const ACCEPT_BACKOFF_MS: u64 = 50;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Server {
    listener: Tcp,
    /// The accept completion; while accepting is paused it runs the backoff timer.
    accept: Pin<Box<Completion>>,
    /// The backoff timer is running on `accept`.
    paused: bool,
    /// The last accept failed for lack of descriptors (reported once per episode).
    starved: bool,
    clients: HashMap<u64, Rc<RefCell<Client>>>,
    /// Closed clients, freed by the next timer tick or accept once their completions are
    /// Dead.
    finished: Vec<Rc<RefCell<Client>>>,
    next_id: u64,
    served: usize,
    limit: Option<usize>,
}

struct Client {
    id: u64,
    /// `None` once closing.
    tcp: Option<Tcp>,
    read: Pin<Box<Completion>>,
    close: Pin<Box<Completion>>,
    queue: WriteQueue,
    /// Buffers of finished writes, reused for the next echoes.
    spare: Vec<Vec<u8>>,
    reading: bool,
    eof: bool,
    echoed: usize,
}

/// Userdata of a client's callbacks: weak, so a client's completions (which it owns) do
/// not keep it alive in a cycle.
#[derive(Clone)]
struct Ud {
    server: Rc<RefCell<Server>>,
    client: Weak<RefCell<Client>>,
}

fn on_accept(
    server: &mut Rc<RefCell<Server>>,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: Result<(Tcp, Option<SocketAddr>), Error>,
) -> CallbackAction {
    reap(server);
    let (tcp, peer) = match r {
        Ok(x) => x,
        Err(Error::Io(e)) if out_of_resources(&e) => {
            // The connection stays in the backlog, and accepting again now would fail
            // again now: pause until a client closes or the timer fires.
            let mut s = server.borrow_mut();
            if !s.starved {
                println!(
                    "accept: {e}; pausing accepts ({} clients open)",
                    s.clients.len()
                );
                s.starved = true;
            }
            s.paused = true;
            Timer::new().run(lp, c, ACCEPT_BACKOFF_MS, server.clone(), resume_accept);
            return CallbackAction::Disarm;
        }
        Err(e) => {
            // Something about that one connection (e.g. ECONNABORTED): go on.
            eprintln!("accept: {e}");
            return CallbackAction::Rearm;
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut s = server.borrow_mut();
    if s.starved {
        println!("accepting again");
        s.starved = false;
    }
    let id = s.next_id;
    s.next_id += 1;
    let client = Rc::new(RefCell::new(Client {
        id,
        tcp: Some(tcp),
        read: Box::pin(Completion::new()),
        close: Box::pin(Completion::new()),
        queue: WriteQueue::new(),
        spare: Vec::new(),
        reading: false,
        eof: false,
        echoed: 0,
    }));
    s.clients.insert(id, client.clone());
    drop(s);
    println!("client {id}: connected from {peer:?}");
    let ud = Ud {
        server: server.clone(),
        client: Rc::downgrade(&client),
    };
    start_read(lp, &mut client.borrow_mut(), ud);
    CallbackAction::Rearm
}

/// Whether an accept error means "out of descriptors or memory" (pause accepting).
fn out_of_resources(e: &std::io::Error) -> bool {
    xev::fd::is_out_of_descriptors(e)
}

/// The backoff timer (on the accept completion) fired, or was cut short: accept again.
fn resume_accept(
    server: &mut Rc<RefCell<Server>>,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    _r: Result<(), Error>,
) -> CallbackAction {
    let ud = server.clone();
    let mut s = server.borrow_mut();
    s.paused = false;
    s.listener.accept(lp, c, ud, on_accept);
    CallbackAction::Disarm
}

fn start_read(lp: &mut Loop, cl: &mut Client, ud: Ud) {
    let Client {
        tcp, read, reading, ..
    } = cl;
    if let Some(tcp) = tcp {
        *reading = true;
        tcp.read(
            lp,
            read.as_mut(),
            Buffer::from(vec![0; READ_SIZE]),
            ud,
            on_read,
        );
    }
}

fn on_read(
    ud: &mut Ud,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: Result<usize, ReadError>,
) -> CallbackAction {
    let Some(client) = ud.client.upgrade() else {
        return CallbackAction::Disarm;
    };
    let mut cl = client.borrow_mut();
    match r {
        // A write failed (the peer is gone): stop echoing.
        Ok(_) if cl.eof => cl.reading = false,
        Ok(n) => {
            let mut bytes = cl.spare.pop().unwrap_or_default();
            bytes.clear();
            bytes.extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
            let Client { tcp, queue, .. } = &mut *cl;
            if let Some(tcp) = tcp {
                tcp.queue_write(lp, queue, Buffer::from(bytes), ud.clone(), on_written);
            }
            if cl.queue.len() < MAX_QUEUED {
                return CallbackAction::Rearm;
            }
            cl.reading = false; // resumed by `on_written` once the queue drains
        }
        Err(ReadError::Eof) | Err(ReadError::Canceled) => {
            cl.reading = false;
            cl.eof = true;
        }
        Err(e) => {
            println!("client {}: read: {e}", cl.id);
            cl.reading = false;
            cl.eof = true;
        }
    }
    maybe_close(lp, &mut cl, ud);
    CallbackAction::Disarm
}

fn on_written(
    ud: &mut Ud,
    lp: &mut Loop,
    buf: &mut Buffer,
    r: Result<usize, Error>,
) -> CallbackAction {
    let Some(client) = ud.client.upgrade() else {
        return CallbackAction::Disarm;
    };
    let mut cl = client.borrow_mut();
    match r {
        Ok(n) => cl.echoed += n,
        Err(Error::Canceled) => cl.eof = true,
        Err(e) => {
            println!("client {}: write: {e}", cl.id);
            cl.eof = true;
        }
    }
    if let Some(v) = std::mem::replace(buf, Buffer::inline(0)).into_vec() {
        if cl.spare.len() < MAX_QUEUED {
            cl.spare.push(v);
        }
    }
    if cl.eof {
        maybe_close(lp, &mut cl, ud);
    } else if !cl.reading && cl.queue.len() < MAX_QUEUED / 2 {
        start_read(lp, &mut cl, ud.clone());
    }
    CallbackAction::Disarm
}

/// Close the client once it reached EOF and everything it sent has been echoed.
fn maybe_close(lp: &mut Loop, cl: &mut Client, ud: &Ud) {
    if !cl.eof || cl.reading || !cl.queue.is_empty() {
        return;
    }
    if let Some(tcp) = cl.tcp.take() {
        tcp.close(lp, cl.close.as_mut(), ud.clone(), on_closed);
    }
}

fn on_closed(
    ud: &mut Ud,
    lp: &mut Loop,
    _c: Pin<&mut Completion>,
    r: Result<(), Error>,
) -> CallbackAction {
    let Some(client) = ud.client.upgrade() else {
        return CallbackAction::Disarm;
    };
    let (id, echoed) = {
        let cl = client.borrow();
        (cl.id, cl.echoed)
    };
    println!("client {id}: closed ({echoed} bytes echoed) {r:?}");
    let mut s = ud.server.borrow_mut();
    if let Some(cl) = s.clients.remove(&id) {
        s.finished.push(cl);
    }
    if s.paused {
        // A descriptor is free again: end the accept backoff now.
        let server = ud.server.clone();
        Timer::new().reset(lp, s.accept.as_mut(), 0, server, resume_accept);
    }
    s.served += 1;
    if s.limit.is_some_and(|n| s.served >= n) && s.clients.is_empty() {
        lp.stop();
    }
    CallbackAction::Disarm
}

/// Free the closed clients whose completions are all Dead.
fn reap(server: &Rc<RefCell<Server>>) {
    let done = {
        let mut s = server.borrow_mut();
        let (done, busy): (Vec<_>, Vec<_>) =
            std::mem::take(&mut s.finished).into_iter().partition(|cl| {
                let cl = cl.borrow();
                cl.read.state() == CompletionState::Dead
                    && cl.close.state() == CompletionState::Dead
            });
        s.finished = busy;
        done
    };
    drop(done);
}

fn on_tick(
    server: &mut Rc<RefCell<Server>>,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    _r: Result<(), Error>,
) -> CallbackAction {
    reap(server);
    if STOP.load(Ordering::Relaxed) {
        println!("interrupted");
        lp.stop();
        return CallbackAction::Disarm;
    }
    Timer::new().run(lp, c, 100, server.clone(), on_tick);
    CallbackAction::Disarm
}

fn parse_args() -> Result<(u16, Option<usize>, Option<Backend>), String> {
    let (mut port, mut count, mut backend) = (0, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--count" => {
                let n = args.next().ok_or("--count needs a number")?;
                count = Some(n.parse().map_err(|e| format!("--count {n}: {e}"))?);
            }
            "--backend" => {
                let name = args.next().ok_or("--backend needs a name")?;
                let b = Backend::candidates().iter().find(|b| b.name() == name);
                backend = Some(*b.ok_or(format!("unknown backend {name:?}"))?);
            }
            p => port = p.parse().map_err(|e| format!("port {p:?}: {e}"))?,
        }
    }
    Ok((port, count, backend))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (port, limit, backend) = parse_args()?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t,
        )
    };

    // Completions and state first, the loop last: the loop is dropped first, which
    // cancels and drains whatever is still in flight before they go away.
    let mut timer = pin!(Completion::new());
    let listener = Tcp::new(SocketAddr::from(([127, 0, 0, 1], port)))?;
    listener.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    listener.listen(128)?;
    let server = Rc::new(RefCell::new(Server {
        listener,
        accept: Box::pin(Completion::new()),
        paused: false,
        starved: false,
        clients: HashMap::new(),
        finished: Vec::new(),
        next_id: 1,
        served: 0,
        limit,
    }));
    let mut lp = Loop::new(Options {
        backend,
        ..Options::default()
    })?;
    let addr = server.borrow().listener.local_addr()?;
    println!(
        "echo server listening on {addr} (backend {})",
        lp.backend().name()
    );

    let ud = server.clone();
    let mut s = server.borrow_mut();
    let Server {
        listener, accept, ..
    } = &mut *s;
    listener.accept(&mut lp, accept.as_mut(), ud, on_accept);
    drop(s);
    Timer::new().run(&mut lp, timer.as_mut(), 100, server.clone(), on_tick);
    lp.run(RunMode::UntilDone)?;

    println!("served {} connections", server.borrow().served);
    Ok(())
}
