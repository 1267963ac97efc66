//! Compile-fail tests: misuses that the type system must reject (issue #9, item 14).
//!
//! This module exists only under `cfg(doctest)`; each block below is a doctest. A
//! `compile_fail,E0xxx` block passes only if the compiler rejects it *with that error
//! code*, so a snippet that stops compiling for an unrelated reason (a renamed API) fails
//! the test. Where a block has a passing twin, the twin shows the accepted shape, so the
//! failure is known to come from the one thing that differs.
//!
//! # Completions cannot move once pinned
//!
//! A completion's address is what the loop and the kernel hold while it is Active, so
//! the pinned place must be the only place it ever lives.
//!
//! Moving a completion out of its pin does not compile (`Completion` is `!Unpin`):
//!
//! ```compile_fail,E0507
//! let c = std::pin::pin!(xev::Completion::new());
//! let moved: xev::Completion = *c;
//! # drop(moved);
//! ```
//!
//! Swapping two pinned completions (which would swap the memory the loop points at)
//! does not compile: `Pin<&mut Completion>` gives no `&mut Completion`:
//!
//! ```compile_fail,E0596
//! let mut a = std::pin::pin!(xev::Completion::new());
//! let mut b = std::pin::pin!(xev::Completion::new());
//! std::mem::swap(&mut *a, &mut *b);
//! ```
//!
//! Nor does `Pin::get_mut` (the safe way out of a pin is only for `Unpin` types):
//!
//! ```compile_fail,E0277
//! let c = std::pin::pin!(xev::Completion::new());
//! let _inner: &mut xev::Completion = c.get_mut();
//! ```
//!
//! Adding a completion pinned with `Pin::new` (a pin that could be undone) does not
//! compile; the accepted shapes are `std::pin::pin!` and `Box::pin`:
//!
//! ```compile_fail,E0277
//! use std::pin::Pin;
//! let mut lp = xev::Loop::new(xev::Options::default()).unwrap();
//! let mut c = xev::Completion::new();
//! lp.timer(Pin::new(&mut c), 1, |_, _, _| xev::CallbackAction::Disarm);
//! ```
//!
//! ```
//! // The passing twin: the same timer on a completion pinned in place.
//! let mut lp = xev::Loop::new(xev::Options::default()).unwrap();
//! let mut c = std::pin::pin!(xev::Completion::new());
//! lp.timer(c.as_mut(), 1, |_, _, _| xev::CallbackAction::Disarm);
//! lp.run(xev::RunMode::UntilDone).unwrap();
//! ```
//!
//! # Callbacks own what they capture
//!
//! A callback may run after the frame that added it has returned, so it is `'static`:
//! borrowing a local does not compile.
//!
//! ```compile_fail,E0373
//! let mut lp = xev::Loop::new(xev::Options::default()).unwrap();
//! let mut c = std::pin::pin!(xev::Completion::new());
//! let mut hits = 0u32;
//! lp.timer(c.as_mut(), 1, |_, _, _| {
//!     hits += 1;
//!     xev::CallbackAction::Disarm
//! });
//! ```
//!
//! ```
//! // The passing twin: shared state moved in (an `Rc<Cell<_>>`).
//! use std::{cell::Cell, rc::Rc};
//! let mut lp = xev::Loop::new(xev::Options::default()).unwrap();
//! let mut c = std::pin::pin!(xev::Completion::new());
//! let hits = Rc::new(Cell::new(0u32));
//! let h = hits.clone();
//! lp.timer(c.as_mut(), 1, move |_, _, _| {
//!     h.set(h.get() + 1);
//!     xev::CallbackAction::Disarm
//! });
//! lp.run(xev::RunMode::UntilDone).unwrap();
//! assert_eq!(hits.get(), 1);
//! ```
//!
//! # The kernel only gets memory the operation owns
//!
//! Async reads take an owned [`IoBufMut`](crate::rt::IoBufMut): a borrowed stack buffer
//! does not compile, because a dropped future leaves the read in the kernel and the
//! borrow would end while the kernel may still write into it.
//!
//! ```compile_fail,E0277
//! async fn read_into_stack(s: &xev::net::TcpStream) {
//!     let mut buf = [0u8; 64];
//!     let (_n, _buf) = s.read(&mut buf[..]).await;
//! }
//! ```
//!
//! A write may take a `&'static [u8]` (never written to, never freed) but not a borrow of
//! a local:
//!
//! ```compile_fail,E0597
//! async fn write_from_local(s: &xev::net::TcpStream) {
//!     let buf = vec![1u8; 64];
//!     let (_n, _buf) = s.write(&buf[..]).await;
//! }
//! ```
//!
//! ```
//! // The passing twins: owned buffers, handed back with the result.
//! async fn owned(s: &xev::net::TcpStream) -> std::io::Result<()> {
//!     let (n, buf) = s.read(vec![0u8; 64]).await;
//!     let (m, _buf) = s.write(buf).await;
//!     let (_k, _b) = s.write(&b"static bytes"[..]).await;
//!     n.and(m).map(|_| ())
//! }
//! ```
//!
//! The callback API's borrowed buffers exist only behind `unsafe`:
//!
//! ```compile_fail,E0133
//! let mut buf = [0u8; 16];
//! let _b = xev::Buffer::from_raw(buf.as_mut_ptr(), buf.len());
//! ```
//!
//! A socket cannot be dropped (closing its fd) while an operation future borrows it:
//!
//! ```compile_fail,E0505
//! async fn close_while_reading(s: xev::net::TcpStream) {
//!     let read = s.read(vec![0u8; 64]);
//!     drop(s);
//!     let _ = read.await;
//! }
//! ```
//!
//! # Runtime types stay on their thread
//!
//! A runtime, its tasks' handles and its sockets share the runtime's single-threaded
//! state (`Rc`s, the loop's `RefCell`), so none of them is `Send`. Each block below
//! moves one of them into `std::thread::spawn`.
//!
//! `xev::rt::Runtime` (its docs: "it is not `Send`"):
//!
//! ```compile_fail,E0277
//! let rt = xev::rt::Runtime::new().unwrap();
//! std::thread::spawn(move || drop(rt));
//! ```
//!
//! `JoinHandle` (its docs: "it is not `Send`"):
//!
//! ```compile_fail,E0277
//! xev::block_on(async {
//!     let h = xev::spawn(async { 1 });
//!     std::thread::spawn(move || drop(h));
//! });
//! ```
//!
//! `TcpStream` (dropping it on another thread would touch its runtime's `Rc`):
//!
//! ```compile_fail,E0277
//! async fn send_stream(s: xev::net::TcpStream) {
//!     std::thread::spawn(move || drop(s));
//! }
//! ```
//!
//! `Loop`: callbacks need not be `Send` (they may capture an `Rc`), so a loop that holds
//! them must not run them on another thread:
//!
//! ```compile_fail,E0277
//! let lp = xev::Loop::new(xev::Options::default()).unwrap();
//! std::thread::spawn(move || drop(lp));
//! ```
//!
//! `Completion` is not `Send` either: it stores its callback, which may capture an `Rc`
//! (as here), and the loop's raw links.
//!
//! ```compile_fail,E0277
//! let mut c = Box::pin(xev::Completion::new());
//! let shared = std::rc::Rc::new(());
//! c.as_mut().prep(xev::Op::Noop, move |_, _, _| {
//!     let _ = &shared;
//!     xev::CallbackAction::Disarm
//! });
//! std::thread::spawn(move || drop(c));
//! ```
//!
//! `spawn_blocking` runs its closure on a pool thread, so the closure must be `Send`:
//!
//! ```compile_fail,E0277
//! xev::block_on(async {
//!     let rc = std::rc::Rc::new(1);
//!     let _ = xev::spawn_blocking(move || *rc).await;
//! });
//! ```
//!
//! ```
//! // The passing twins: what is meant to cross threads does. `Notify` is
//! // `Send + Sync`, and a `spawn_blocking` closure that owns `Send` data runs.
//! fn assert_send_sync<T: Send + Sync>() {}
//! assert_send_sync::<xev::notify::Notify>();
//! xev::block_on(async {
//!     let v = vec![1, 2, 3];
//!     let sum = xev::spawn_blocking(move || v.iter().sum::<i32>()).await.unwrap();
//!     assert_eq!(sum, 6);
//! });
//! ```
