//! Helpers for xev's behaviour tests: run a test body once per available backend and
//! say which backend failed.

use std::panic::{catch_unwind, AssertUnwindSafe};

pub use xev;

/// Run `body` once per available backend with a fresh loop of that backend; panic with
/// the names of the backends that failed.
pub fn each_backend(body: impl Fn(xev::Backend)) {
    let backends: Vec<xev::Backend> = xev::Backend::available().collect();
    assert!(!backends.is_empty(), "no backend available");
    let mut failed = Vec::new();
    for b in backends {
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| body(b))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            eprintln!("backend {b:?} failed: {msg}");
            failed.push(format!("{b:?}: {msg}"));
        }
    }
    assert!(failed.is_empty(), "failed on: {}", failed.join("; "));
}

/// A loop pinned to `backend`.
pub fn new_loop(backend: xev::Backend) -> xev::Loop {
    xev::Loop::new(xev::Options {
        backend: Some(backend),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("Loop::new({backend:?}): {e}"))
}
