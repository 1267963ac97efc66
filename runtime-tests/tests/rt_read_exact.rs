//! `read_exact` (TCP) and `read_exact_at` (files) fill exactly the buffer's *length*,
//! like `std` and tokio: a reused `Vec` truncated to a short message reads that message
//! and leaves the next one for the next read. A `Vec` of length 0 with spare capacity is
//! an `InvalidInput` error (it would otherwise silently read nothing).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use xev::fs::OpenOptions;
use xev::net::{TcpListener, TcpStream};
use xev::time::timeout;

const MSG1: &[u8] = b"abcd";
const MSG2: &[u8] = b"second message: 0123456789012345678901234567890123456789abcd";

fn assert_fills_length_message(e: &io::Error) {
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("length") && msg.contains("capacity"),
        "the error should say that read_exact fills the length, not the capacity: {msg}"
    );
}

#[xev::test(backend = "all")]
async fn tcp_read_exact_fills_the_length_of_a_reused_vec() -> io::Result<()> {
    assert_eq!(MSG2.len(), 60);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (server, _) = listener.accept().await?;

    // Both messages are in the socket before the first read_exact starts.
    client.write_all(MSG1).await.0?;
    client.write_all(MSG2).await.0?;

    // A buffer reused from an earlier, longer message: capacity 64, length 4.
    let mut buf = vec![0u8; 64];
    buf.truncate(MSG1.len());
    let (r, buf) = timeout(Duration::from_secs(5), server.read_exact(buf))
        .await
        .expect("read_exact of 4 bytes must not wait for 64");
    r?;
    assert_eq!(buf, MSG1, "exactly message 1");
    assert_eq!(buf.capacity(), 64, "the allocation is kept");

    // Message 2 is still there for the next read.
    let mut buf = buf;
    buf.resize(MSG2.len(), 0);
    let (r, buf) = timeout(Duration::from_secs(5), server.read_exact(buf))
        .await
        .expect("message 2 is readable");
    r?;
    assert_eq!(buf, MSG2);

    // A Vec with capacity but no length is refused, and handed back untouched.
    let (r, buf) = server.read_exact(Vec::with_capacity(16)).await;
    assert_fills_length_message(&r.unwrap_err());
    assert!(buf.is_empty() && buf.capacity() >= 16);
    // A buffer with neither has nothing to fill (as in std).
    let (r, _) = server.read_exact(Vec::new()).await;
    r?;
    Ok(())
}

struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[xev::test(backend = "all")]
async fn file_read_exact_at_fills_the_length_of_a_reused_vec() -> io::Result<()> {
    let path = TempPath(std::env::temp_dir().join(format!(
        "xev-read-exact-{}-{:?}",
        std::process::id(),
        xev::rt::with_loop(|lp| lp.backend())
    )));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path.0)
        .await?;
    f.write_all_at([MSG1, MSG2].concat(), 0).await.0?;

    let mut buf = vec![0u8; 64];
    buf.truncate(MSG1.len());
    let (r, buf) = f.read_exact_at(buf, 0).await;
    r?; // before: UnexpectedEof after 64 bytes were asked of a 64-byte file at offset 0
    assert_eq!(buf, MSG1);

    let mut buf = buf;
    buf.resize(MSG2.len(), 0);
    let (r, buf) = f.read_exact_at(buf, MSG1.len() as u64).await;
    r?;
    assert_eq!(buf, MSG2);

    // Past the end: UnexpectedEof, and the length stays the requested one.
    let (r, buf) = f.read_exact_at(vec![0u8; 8], 60).await;
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(buf.len(), 8);
    assert_eq!(&buf[..4], &MSG2[56..]);

    let (r, _) = f.read_exact_at(Vec::with_capacity(8), 0).await;
    assert_fills_length_message(&r.unwrap_err());

    // Box<[u8]> is filled over its whole length, as before.
    let (r, b) = f.read_exact_at(Box::<[u8]>::from(vec![0u8; 4]), 0).await;
    r?;
    assert_eq!(&*b, MSG1);
    Ok(())
}
