//! Procedural macros for `xev`.
//!
//! `#[xev::main]` and `#[xev::test]` arrive with the async runtime; until then this
//! crate is an empty placeholder so that the workspace layout is final.
