//! Feed lines to a child's stdin and read its stdout, both through async pipes: spawns
//! `sort`, writes some words to it from one task while another reads the sorted result,
//! prints it and checks it. Runs without input, so CI can run it.
//!
//! ```text
//! cargo run --example pipe_child
//! XEV_BACKEND=epoll cargo run --example pipe_child    # the epoll backend
//! ```
//!
//! Unix only: xev has no pipes or child stdio on Windows.

#[cfg(unix)]
use std::process::{Command, Stdio};

#[cfg(unix)]
const WORDS: [&str; 8] = [
    "pear", "apple", "fig", "cherry", "banana", "kiwi", "date", "grape",
];

#[cfg(not(unix))]
fn main() {
    eprintln!("pipe_child: Unix only (xev has no pipes or child stdio on this platform)");
    std::process::exit(2);
}

#[cfg(unix)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rt = xev::rt::Builder::new();
    if std::env::var("XEV_BACKEND").as_deref() == Ok("epoll") {
        rt = rt.backend(xev::Backend::Epoll);
    }
    let sorted = rt.build()?.block_on(async {
        let mut child = xev::process::spawn(
            Command::new("sort")
                .env("LC_ALL", "C")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        )?;
        let stdin = child.stdin.take().expect("piped");
        // Writing and reading at once: with more data than the pipes hold, a child like
        // `cat` would otherwise block on a full stdout while we block on its full stdin.
        let writer = xev::spawn(async move {
            for w in WORDS {
                stdin.write_all(format!("{w}\n")).await.0?;
            }
            stdin.close().await // end of input: sort prints its result
        });
        let stdout = child.stdout.take().expect("piped");
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).await?;
        writer.await??;
        let status = child.wait().await?;
        if !status.success() {
            return Err(std::io::Error::other(format!("sort failed: {status}")));
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    })?;
    print!("{sorted}");
    let mut expect = WORDS.to_vec();
    expect.sort_unstable();
    assert_eq!(sorted.lines().collect::<Vec<_>>(), expect, "sort's output");
    Ok(())
}
