//! Copy a file with `xev::fs::copy` (`copy_file_range(2)` on the thread pool) and print
//! the bytes copied and the rate.
//!
//! ```text
//! cargo run --release --example file_copy -- SRC DST
//! ```

//!
//! Unix only for now: `xev::fs` is not on Windows yet.

#[cfg(unix)]
use std::time::Instant;

#[cfg(not(unix))]
fn main() {
    eprintln!("file_copy: Unix only (xev::fs is not on this platform yet)");
    std::process::exit(2);
}

#[cfg(unix)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = args.as_slice() else {
        eprintln!("usage: file_copy SRC DST");
        std::process::exit(2);
    };
    let start = Instant::now();
    let bytes = xev::block_on(xev::fs::copy(src, dst))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "copied {bytes} bytes in {:.3} s ({:.1} MB/s)",
        secs,
        bytes as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(())
}
