//! Compatibility with the poll-based I/O traits of the ecosystem: `futures-io`, tokio's
//! `AsyncRead`/`AsyncWrite`, and hyper 1.x (I/O, executor and timer).
//!
//! DOCS-PLACEHOLDER

mod stream;
#[cfg(feature = "futures-io")]
mod futures_io;
#[cfg(feature = "hyper")]
mod hyper;
#[cfg(feature = "tokio-io")]
mod tokio_io;

use std::rc::Rc;

pub use stream::{Compat, CompatReadHalf, CompatWriteHalf, DEFAULT_BUFFER};
#[cfg(feature = "hyper")]
pub use self::hyper::{HyperExecutor, HyperSleep, HyperTimer};

use crate::rt::loop_fd::LoopFd;
pub(crate) use stream::IoKind;

pub(crate) mod sealed {
    use super::*;

    /// What [`Compat`] needs from a stream: its fd and how to read and write it.
    #[derive(Debug)]
    pub struct Parts {
        pub(crate) fd: Rc<LoopFd>,
        pub(crate) kind: IoKind,
    }

    /// Implemented through [`compat_io!`].
    pub trait CompatFd {
        /// The fd every operation names (each operation keeps a clone until it ends), and
        /// how to read and write it.
        fn compat_parts(&self) -> Parts;
    }
}

/// A stream [`Compat`] can wrap. Sealed; implemented for
/// [`TcpStream`](crate::net::TcpStream).
pub trait CompatIo: sealed::CompatFd {}

/// `compat_io!(Type, Kind)`: [`CompatIo`] for an async type with a
/// `pub(crate) fn loop_fd(&self) -> &Rc<LoopFd>`, where `Kind` is `Socket` (recv/send,
/// close shuts the writing side down), `Stream` (read/write) or `Positioned`
/// (pread/pwrite at offsets the wrapper tracks from 0).
macro_rules! compat_io {
    ($ty:ty, $kind:ident) => {
        impl $crate::rt::compat::sealed::CompatFd for $ty {
            fn compat_parts(&self) -> $crate::rt::compat::sealed::Parts {
                $crate::rt::compat::sealed::Parts {
                    fd: self.loop_fd().clone(),
                    kind: $crate::rt::compat::IoKind::$kind,
                }
            }
        }
        impl $crate::rt::compat::CompatIo for $ty {}
    };
}

compat_io!(crate::net::TcpStream, Socket);
