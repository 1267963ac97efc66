//! Bookkeeping shared by both APIs: counters, what is known about every connection, the
//! failures found, and the recent history of each fd number.

use std::collections::{BTreeMap, HashMap};

use crate::common::*;
use crate::receiver::Receiver;
use crate::MAX_FAILURES;

/// Named counters.
#[derive(Default, Debug, Clone)]
pub(crate) struct Stats(BTreeMap<&'static str, u64>);

impl Stats {
    pub(crate) fn add(&mut self, k: &'static str, n: u64) {
        *self.0.entry(k).or_default() += n;
    }
    pub(crate) fn bump(&mut self, k: &'static str) {
        self.add(k, 1);
    }
    pub(crate) fn line(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What is known about one connection, indexed by end ([`CLIENT`] / [`SERVER`]).
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// Bytes each end means to send.
    pub(crate) total: [u64; 2],
    /// Bytes each end received (of its peer's stream).
    pub(crate) received: [u64; 2],
    /// Bytes of its peer's stream each end lost to reads the test dropped.
    lost: [u64; 2],
    /// The end closed before finishing: the test cut it (or gave up on it).
    pub(crate) gone: [bool; 2],
    /// The fd number each end had (-1: none).
    pub(crate) fd: [i32; 2],
    /// The end's stream may stop short: a write's outcome became unknown (future
    /// dropped, queue cancelled) or failed because the peer was gone.
    pub(crate) truncated: [bool; 2],
    /// The end is finished (closed).
    pub(crate) done: [bool; 2],
    /// The end read its peer's end of stream.
    eof: [bool; 2],
    /// A server end has identified this connection.
    pub(crate) server_seen: bool,
    /// The client end saw the connection end before any server end took it: an accept
    /// whose future was dropped got it anyway, and the runtime closed it (documented).
    unclaimed_end: bool,
}

/// Every connection of a phase, and the failures found.
pub(crate) struct Ledger {
    pub(crate) records: HashMap<u32, Record>,
    next_id: u32,
    /// Server ends that closed before learning their connection's id.
    pub(crate) anon: u64,
    pub(crate) stats: Stats,
    pub(crate) failures: Vec<String>,
    label: String,
    /// Recent events per fd number, to show who used a number before a failure.
    events: std::collections::VecDeque<Event>,
    seq: u64,
    /// Fd numbers involved in failures, and when.
    suspects: Vec<(i32, u64)>,
}

/// One thing that happened to an fd number.
#[derive(Debug, Clone)]
struct Event {
    seq: u64,
    fd: i32,
    id: u32,
    side: u8,
    what: &'static str,
}

impl Ledger {
    pub(crate) fn new(label: String) -> Ledger {
        Ledger {
            records: HashMap::new(),
            next_id: 1,
            anon: 0,
            stats: Stats::default(),
            failures: Vec::new(),
            label,
            events: std::collections::VecDeque::new(),
            seq: 0,
            suspects: Vec::new(),
        }
    }

    /// Note that `what` happened to `fd` (end `side` of connection `id`; id 0: unknown).
    pub(crate) fn log(&mut self, fd: i32, id: u32, side: u8, what: &'static str) {
        self.seq += 1;
        if self.events.len() >= 50_000 {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            seq: self.seq,
            fd,
            id,
            side,
            what,
        });
    }

    /// Mark the fds of connection `id` as involved in a failure.
    pub(crate) fn suspect(&mut self, id: u32) {
        if let Some(r) = self.records.get(&id) {
            let seq = self.seq;
            let fds: Vec<i32> = r.fd.iter().copied().filter(|&fd| fd >= 0).collect();
            self.suspects.extend(fds.into_iter().map(|fd| (fd, seq)));
        }
    }

    /// The recent history of the suspect fds.
    pub(crate) fn history(&self) -> String {
        let mut out = String::new();
        for &(fd, seq) in self.suspects.iter().take(6) {
            let evs: Vec<String> = self
                .events
                .iter()
                .filter(|e| e.fd == fd && e.seq <= seq + 4)
                .map(|e| {
                    format!(
                        "#{} {} end of {}: {}",
                        e.seq,
                        end_name(e.side),
                        e.id,
                        e.what
                    )
                })
                .collect();
            let tail = &evs[evs.len().saturating_sub(16)..];
            out += &format!(
                "\n  fd {fd} (failure at #{seq}):\n    {}",
                tail.join("\n    ")
            );
        }
        out
    }

    pub(crate) fn fail(&mut self, msg: String) {
        if self.failures.len() < MAX_FAILURES {
            eprintln!("storm {}: FAILURE: {msg}", self.label);
            self.failures.push(msg);
        }
    }

    /// The largest id handed out (for decoding foreign bytes).
    pub(crate) fn max_id(&self) -> u32 {
        self.next_id
    }

    /// A new connection with random stream lengths; the client sends at least its
    /// first word, which tells the server end the id.
    pub(crate) fn new_conn(&mut self, rng: &mut Rng) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let r = Record {
            total: [8 + stream_len(rng), stream_len(rng)],
            fd: [-1, -1],
            ..Record::default()
        };
        self.records.insert(id, r);
        id
    }

    pub(crate) fn rec(&mut self, id: u32) -> &mut Record {
        self.records.get_mut(&id).expect("known connection id")
    }

    /// A server end read `first` as its first word: claim the connection.
    pub(crate) fn claim(&mut self, first: [u8; 8]) -> Result<u32, String> {
        match decode(first, self.max_id()) {
            Some((id, CLIENT, 0)) => {
                let r = self
                    .records
                    .get_mut(&id)
                    .ok_or_else(|| format!("accepted connection claims unknown id {id}"))?;
                if r.server_seen {
                    return Err(format!("two server ends received connection {id}"));
                }
                r.server_seen = true;
                Ok(id)
            }
            _ => Err(format!(
                "an accepted connection starts with {first:02x?}, which {}",
                describe(&first, self.max_id())
            )),
        }
    }

    /// Whether an error on end `me` of `id` is explained by the test (its peer was cut,
    /// or the peer never took the connection).
    pub(crate) fn peer_error_ok(&mut self, id: u32, me: u8) -> bool {
        let r = self.rec(id);
        if me == CLIENT && !r.server_seen {
            r.unclaimed_end = true;
            return true;
        }
        r.gone[1 - me as usize]
    }

    /// End `me` of `id` read end of stream after receiving what `rx` saw.
    pub(crate) fn eof(&mut self, id: u32, me: u8, rx: &Receiver) {
        let peer = 1 - me as usize;
        let r = self.rec(id);
        r.eof[me as usize] = true;
        r.received[me as usize] = rx.got;
        if me == CLIENT && !r.server_seen {
            r.unclaimed_end = true;
        }
        let short = r.gone[peer] || r.truncated[peer] || r.unclaimed_end;
        let total = r.total[peer];
        match rx.complete(total) {
            Some(lost) => {
                r.lost[me as usize] = lost;
                self.stats.add("bytes_lost_to_dropped_reads", lost);
            }
            None if short => {}
            None => {
                let msg = format!(
                    "connection {id}: the {} end read end of stream after {} of the {total} \
                     bytes its peer sent (peer neither cut nor truncated; positions {:?}); {r:?}",
                    end_name(me),
                    rx.got,
                    rx.cands
                );
                self.suspect(id);
                self.fail(msg);
            }
        }
    }

    /// After the phase: every connection ended on both sides.
    pub(crate) fn validate(&mut self) {
        let mut msgs = Vec::new();
        let mut unclaimed_short = 0;
        let mut ids: Vec<_> = self.records.keys().copied().collect();
        ids.sort();
        for id in ids {
            let r = &self.records[&id];
            if !r.done[CLIENT as usize] {
                msgs.push(format!(
                    "connection {id}: the client end never finished: {r:?}"
                ));
            }
            if r.server_seen && !r.done[SERVER as usize] {
                msgs.push(format!(
                    "connection {id}: the server end never finished: {r:?}"
                ));
            }
            let client_short = r.gone[CLIENT as usize] || r.truncated[CLIENT as usize];
            if !r.server_seen {
                if client_short {
                    unclaimed_short += 1;
                } else if r.unclaimed_end {
                    self.stats.bump("conns_closed_by_a_dropped_accept");
                } else {
                    msgs.push(format!(
                        "connection {id}: no server end ever received it: {r:?}"
                    ));
                }
            }
            for me in [CLIENT, SERVER] {
                let (m, p) = (me as usize, 1 - me as usize);
                let expected = r.total[p];
                let unclaimed = me == CLIENT && r.unclaimed_end;
                if r.eof[m]
                    && !r.gone[p]
                    && !r.truncated[p]
                    && !unclaimed
                    && r.received[m] + r.lost[m] != expected
                {
                    msgs.push(format!(
                        "connection {id}: the {} end got {} + {} lost of {expected} bytes",
                        end_name(me),
                        r.received[m],
                        r.lost[m]
                    ));
                }
                self.stats.add("bytes_verified", r.received[m]);
            }
            if r.gone.iter().any(|&g| g) {
                self.stats.bump("conns_cut");
            } else if r.truncated.iter().any(|&t| t) {
                self.stats.bump("conns_truncated");
            } else {
                self.stats.bump("conns_complete");
            }
        }
        if self.anon > unclaimed_short {
            msgs.push(format!(
                "{} server ends closed without an id, but only {unclaimed_short} connections \
                 were cut or truncated before reaching a server end",
                self.anon
            ));
        }
        self.stats.add("conns", self.records.len() as u64);
        self.stats.add("server_ends_anonymous", self.anon);
        for m in msgs {
            self.fail(m);
        }
    }
}

pub(crate) fn end_name(me: u8) -> &'static str {
    if me == CLIENT {
        "client"
    } else {
        "server"
    }
}

/// A random stream length: mostly short, sometimes long.
fn stream_len(rng: &mut Rng) -> u64 {
    match rng.below(100) {
        0..=69 => rng.below(16 * 1024 + 1),
        70..=94 => rng.below(128 * 1024 + 1),
        _ => rng.below(512 * 1024 + 1),
    }
}
