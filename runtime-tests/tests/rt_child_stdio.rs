//! A child's piped stdin/stdout/stderr as async pipe ends (`xev::process`), and
//! `wait_with_output` / `output` (both streams read at once: no deadlock on a child that
//! writes a lot to both).

use std::io;
use std::process::{Command, Stdio};
use std::time::Duration;

use xev::process;
use xev::time::timeout;

const LOST: Duration = Duration::from_secs(20);

/// `cat` echoes what its async stdin gets to its async stdout, fed and drained by two
/// concurrent tasks (1 MiB: more than the pipes hold, so both must run), then exits 0
/// at end of input.
#[xev::test(backend = "all")]
async fn cat_through_stdin_and_stdout() -> io::Result<()> {
    const TOTAL: usize = 1 << 20;
    let mut child = process::spawn(
        Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    assert!(child.stderr.is_none(), "stderr was not piped");
    let data: Vec<u8> = (0..TOTAL).map(|i| (i % 253) as u8).collect();
    let expect = data.clone();
    let feeder = xev::spawn(async move {
        for chunk in data.chunks(100_000) {
            stdin.write_all(chunk.to_vec()).await.0?;
        }
        stdin.close().await
    });
    let mut got = Vec::new();
    timeout(LOST, stdout.read_to_end(&mut got))
        .await
        .expect("cat's output ends")?;
    feeder.await.unwrap()?;
    assert_eq!(got.len(), TOTAL);
    assert!(got == expect, "cat echoed different bytes");
    assert!(child.wait().await?.success());
    Ok(())
}

/// 2 MiB on stdout and 3 MiB on stderr, interleaved by the child: `wait_with_output`
/// reads both at once (reading one to its end first would deadlock on the other's full
/// pipe) and gets every byte.
#[xev::test(backend = "all")]
async fn wait_with_output_reads_both_streams_at_once() -> io::Result<()> {
    let script = "i=0; while [ $i -lt 32 ]; do \
                  head -c 65536 /dev/zero; head -c 98304 /dev/zero >&2; i=$((i+1)); done; \
                  exit 5";
    let child = process::spawn(
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let out = timeout(LOST, child.wait_with_output())
        .await
        .expect("no deadlock")?;
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(out.stdout.len(), 2 << 20);
    assert_eq!(out.stderr.len(), 3 << 20);
    assert!(out.stdout.iter().chain(&out.stderr).all(|&b| b == 0));
    Ok(())
}

/// `output` pipes stdout and stderr (whatever was set before); streams that were not
/// piped, or were taken out, are empty in `wait_with_output`'s result.
#[xev::test(backend = "all")]
async fn output_and_unpiped_streams() -> io::Result<()> {
    let out = process::output(
        Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 2"])
            .stdout(Stdio::null()),
    )
    .await?;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");

    let mut child = process::spawn(
        Command::new("sh")
            .args(["-c", "echo out; echo err >&2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let err = child.stderr.take().unwrap();
    let out = child.wait_with_output().await?;
    assert_eq!(out.stdout, b"out\n");
    assert!(out.stderr.is_empty(), "taken out before");
    let mut e = Vec::new();
    err.read_to_end(&mut e).await?;
    assert_eq!(e, b"err\n");

    // A missing program is spawn's NotFound.
    let e = process::output(&mut Command::new("/nonexistent/xev-no-such-program"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    Ok(())
}

/// A child that closes its stdin without reading: writing to it is `BrokenPipe` (an
/// error, not a signal: the test process would not notice one, `rt_pipe`'s child test
/// does), and the child's status is still collected.
#[xev::test(backend = "all")]
async fn a_child_closing_stdin_early_is_broken_pipe() -> io::Result<()> {
    let mut child = process::spawn(
        Command::new("sh")
            .args(["-c", "exec 0<&-; echo closed; sleep 0.2"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )?;
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (r, buf) = stdout.read_exact(vec![0u8; 7]).await;
    r?;
    assert_eq!(buf, b"closed\n");
    // More than a pipe holds, so the write cannot just land in the buffer.
    let (r, _) = timeout(LOST, stdin.write_all(vec![b'x'; 4 << 20]))
        .await
        .expect("the write ends");
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    assert!(child.wait().await?.success());
    Ok(())
}
