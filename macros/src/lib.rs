//! Procedural macros for `xev`: [`macro@main`] and [`macro@test`], re-exported as
//! `xev::main` and `xev::test`.
//!
//! The crate is split in two halves that work on `proc_macro2` types (so they can be
//! unit-tested outside the compiler):
//!
//! - `options.rs` — parsing: the attribute arguments and the checks on the function;
//! - `expand.rs` — expansion: the synchronous wrapper that runs the body on a runtime.
//!
//! Misuse (a function that is not `async`, takes arguments or is generic, an unknown
//! option, an unknown backend) is reported as a compile error pointing at the offending
//! tokens.

mod expand;
mod options;

use proc_macro::TokenStream;

/// Runs an `async fn main` on an xev runtime.
///
/// ```ignore
/// #[xev::main]
/// async fn main() -> std::io::Result<()> {
///     // ... `.await` as usual
///     Ok(())
/// }
/// ```
///
/// expands to
///
/// ```ignore
/// fn main() -> std::io::Result<()> {
///     let body = async move {
///         // ... `.await` as usual
///         Ok(())
///     };
///     ::xev::rt::Builder::new()
///         .build()
///         .expect("xev::main: failed to build the runtime")
///         .block_on(body)
/// }
/// ```
///
/// The attributes, visibility, name and return type of the function are kept.
///
/// # Options
///
/// - `backend = "io_uring"`, `"epoll"`, `"kqueue"` or `"iocp"`: run on that backend
///   (`.backend(::xev::Backend::IoUring)` etc. on the builder) instead of the default
///   one. Building the runtime panics if the backend is not available.
///
/// ```ignore
/// #[xev::main(backend = "epoll")]
/// async fn main() {}
/// ```
///
/// - `threads = N` (a positive integer literal): start a thread-per-core
///   `::xev::rt::Pool` of `N` workers (`Builder::threads(N).build_pool()`, with the
///   backend option if given) and run the body **on worker 0**, blocking the calling
///   thread until it returns (`Pool::block_on`). The body need not be `Send`, but its
///   output must be; inside, `xev::rt::PoolHandle::current()` spawns on the other
///   workers. When `main` returns, the pool shuts down (pending tasks are cancelled);
///   a panic of the body is resumed on the calling thread.
///
/// ```ignore
/// #[xev::main(threads = 2)]
/// async fn main() {
///     let pool = xev::rt::PoolHandle::current().expect("main runs on worker 0");
///     let on_1 = pool.spawn_on(1, || async { xev::rt::Pool::worker_index() });
///     assert_eq!(on_1.await.unwrap(), Some(1));
/// }
/// ```
///
/// (`xev::rt::pool`'s docs run this example.)
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::main(attr.into(), item.into()).into()
}

/// Turns an `async fn` into a `#[test]` that runs it on an xev runtime.
///
/// The function takes no arguments and returns `()` or a `Result<(), E>` with
/// `E: Debug`; an `Err` fails the test with the error's `Debug` form. Other attributes
/// (`#[ignore]`, `#[should_panic]`, ...) are kept after the generated `#[test]`.
///
/// ```ignore
/// #[xev::test]
/// async fn sleeps() {
///     // runs once, on the default backend
/// }
///
/// #[xev::test(backend = "io_uring")]
/// async fn uring_only() -> std::io::Result<()> {
///     // skipped (with a note on stderr) where io_uring is not available
///     Ok(())
/// }
///
/// #[xev::test(backend = "all")]
/// async fn everywhere() {
///     // runs once per `xev::Backend::available()`, each on a fresh runtime
/// }
/// ```
///
/// # Options
///
/// - no option: one run on `::xev::rt::Builder::new()`'s default backend;
/// - `backend = "io_uring"`, `"epoll"`, `"kqueue"` or `"iocp"`: one run on that backend;
///   if `!Backend::is_available()` the test prints that it was skipped and passes;
/// - `backend = "all"`: one run per available backend, each announced on stderr as
///   `xev::test: <name> on <Backend>`. A panic or `Err` in any run fails the test with a
///   message naming the backend:
///
/// ```text
/// xev::test `everywhere` failed on backend Epoll: assertion failed: ...
/// ```
#[proc_macro_attribute]
pub fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::test(attr.into(), item.into()).into()
}
