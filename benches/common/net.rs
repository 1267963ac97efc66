//! What the network benches (`pingpong`, `ping_udp`, `udp_pummel`) share: their six
//! variants and the header lines. Each runs two threads (client and server, or sender
//! and receiver) placed by `XEV_BENCH_PIN`, by default split over CPUs 0 and 1.

use xev::Backend;

/// The variants, measured in this order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    XevIoUring,
    XevEpoll,
    XevAsyncIoUring,
    XevAsyncEpoll,
    RawIoUring,
    Tokio,
}

impl Variant {
    pub const ALL: [Variant; 6] = [
        Variant::XevIoUring,
        Variant::XevEpoll,
        Variant::XevAsyncIoUring,
        Variant::XevAsyncEpoll,
        Variant::RawIoUring,
        Variant::Tokio,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::XevIoUring => "xev io_uring",
            Variant::XevEpoll => "xev epoll",
            Variant::XevAsyncIoUring => "xev async io_uring",
            Variant::XevAsyncEpoll => "xev async epoll",
            Variant::RawIoUring => "raw io_uring (ref)",
            Variant::Tokio => "tokio current_thread",
        }
    }

    pub fn is_xev(self) -> bool {
        !matches!(self, Variant::RawIoUring | Variant::Tokio)
    }

    pub fn on_io_uring(self) -> bool {
        matches!(
            self,
            Variant::XevIoUring | Variant::XevAsyncIoUring | Variant::RawIoUring
        )
    }

    /// The variants to measure (see [`super::report::select`]).
    pub fn selected() -> Vec<Variant> {
        super::report::select(&Variant::ALL, Variant::name, Variant::on_io_uring)
    }
}

/// The thread placement: `XEV_BENCH_PIN`, by default `split`.
pub fn pin_mode() -> String {
    super::sys::pin_mode("split")
}

/// The CPUs of (client or sender, server or receiver), when pinning.
pub fn pin_plan() -> (Option<usize>, Option<usize>) {
    super::sys::pin_plan(&pin_mode()).unzip()
}

/// Print the header: `title`, the command and the machine, the thread placement and
/// ring entries, whether io_uring is available and the mode (`quick`: 1 round).
pub fn header(bench: &str, title: &str, quick: bool, entries: u32) {
    println!("{title}");
    super::sys::print_command(bench, quick);
    println!("{}", super::sys::machine());
    println!(
        "thread placement (XEV_BENCH_PIN): {}   ring entries: {entries}",
        pin_mode()
    );
    println!(
        "io_uring available: {}   mode: {}",
        Backend::IoUring.is_available(),
        if quick {
            "quick (1 round)"
        } else {
            "full (median of 3 rounds, variants interleaved)"
        }
    );
}
