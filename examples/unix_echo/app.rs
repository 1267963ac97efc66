//! The Unix-only body of the `unix_echo` example (see `main.rs`).

use std::io::{self, BufRead, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use xev::net::{UnixListener, UnixStream};
use xev::UnixAddr;

/// Echo until the peer closes; the same 16 KiB buffer goes back and forth.
async fn serve(stream: UnixStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let (res, b) = stream.read(buf).await;
        let n = res?;
        if n == 0 {
            return Ok(total);
        }
        let mut out = b;
        out.truncate(n);
        let (res, mut b) = stream.write_all(out).await;
        res?;
        total += n as u64;
        b.resize(16 * 1024, 0);
        buf = b;
    }
}

/// Accept forever (or `count` connections), one task per connection.
async fn run_server(listener: UnixListener, count: Option<usize>, verbose: bool) -> io::Result<()> {
    let mut tasks = Vec::new();
    let mut served = 0;
    while count.is_none_or(|c| served < c) {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        served += 1;
        if verbose {
            eprintln!("connection {served} from {peer:?}");
        }
        tasks.push(xev::spawn(async move {
            match serve(stream).await {
                Ok(n) if verbose => eprintln!("connection {served} closed after {n} bytes"),
                Ok(_) => {}
                Err(e) => eprintln!("connection {served}: {e}"),
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// `PATH`, or `@name` for an abstract name on Linux.
fn parse_addr(s: &str) -> io::Result<UnixAddr> {
    #[cfg(target_os = "linux")]
    if let Some(name) = s.strip_prefix('@') {
        return UnixAddr::from_abstract_name(name);
    }
    UnixAddr::from_pathname(s)
}

/// Remove a socket file left by an earlier run (never any other kind of file).
fn remove_stale_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bind(addr: &UnixAddr) -> io::Result<UnixListener> {
    if let Some(p) = addr.as_pathname() {
        remove_stale_socket(p);
    }
    UnixListener::bind_addr(addr)
}

/// A task that panicked or was aborted, as an `io::Error`.
fn join_error(e: xev::rt::JoinError) -> io::Error {
    io::Error::other(e.to_string())
}

/// One client: send `data`, shut down writing, read the echo to the end, compare.
async fn check_echo(addr: UnixAddr, data: Rc<Vec<u8>>) -> io::Result<()> {
    let stream = Rc::new(UnixStream::connect_addr(&addr).await?);
    let writer = {
        let (stream, data) = (stream.clone(), data.clone());
        xev::spawn(async move {
            for chunk in data.chunks(8 * 1024) {
                stream.write_all(chunk.to_vec()).await.0?;
            }
            stream.shutdown(Shutdown::Write).await
        })
    };
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let (res, b) = stream.read(buf).await;
        let n = res?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&b[..n]);
        buf = b;
    }
    writer.await.map_err(join_error)??;
    if got != *data {
        return Err(io::Error::other(format!(
            "echo mismatch: sent {} bytes, got {}",
            data.len(),
            got.len()
        )));
    }
    Ok(())
}

/// Server plus concurrent clients on `addr`; every echo checked.
async fn self_test_on(addr: UnixAddr, clients: usize, bytes: usize) -> io::Result<()> {
    let listener = bind(&addr)?;
    let server = xev::spawn(run_server(listener, Some(clients), false));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let data: Vec<u8> = (0..bytes).map(|j| (j * 31 + i * 7) as u8).collect();
        tasks.push(xev::spawn(check_echo(addr, Rc::new(data))));
    }
    for t in tasks {
        t.await.map_err(join_error)??;
    }
    server.await.map_err(join_error)??;
    Ok(())
}

async fn self_test() -> io::Result<()> {
    let dir: PathBuf = std::env::temp_dir().join(format!("xev-unix-echo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("echo.sock");
    let res = self_test_on(UnixAddr::from_pathname(&path)?, 8, 256 * 1024).await;
    let _ = std::fs::remove_dir_all(&dir);
    res?;
    let backend = xev::rt::with_loop(|lp| lp.backend().name());
    println!(
        "unix_echo self-test ({backend}): 8 clients x 256 KiB echoed over {}",
        path.display()
    );
    #[cfg(target_os = "linux")]
    {
        let name = format!("xev-unix-echo-{}", std::process::id());
        self_test_on(UnixAddr::from_abstract_name(&name)?, 2, 64 * 1024).await?;
        println!("unix_echo self-test: 2 clients x 64 KiB echoed over abstract name @{name}");
    }
    Ok(())
}

/// Send each stdin line to the server, print what comes back.
async fn client(addr: UnixAddr) -> io::Result<()> {
    let stream = UnixStream::connect_addr(&addr).await?;
    let stdin = io::stdin();
    let mut out = io::stdout();
    // Reading stdin blocks this thread; fine for an interactive client with one
    // connection (a server would read it with spawn_blocking).
    for line in stdin.lock().lines() {
        let mut line = line?.into_bytes();
        line.push(b'\n');
        let len = line.len();
        stream.write_all(line).await.0?;
        let (res, back) = stream.read_exact(vec![0u8; len]).await;
        res?;
        out.write_all(&back)?;
        out.flush()?;
    }
    stream.shutdown(Shutdown::Write).await
}

/// `--backend NAME` taken out of `args`, if given.
fn take_backend(args: &mut Vec<String>) -> io::Result<Option<xev::Backend>> {
    let Some(i) = args.iter().position(|a| a == "--backend") else {
        return Ok(None);
    };
    args.remove(i);
    if i >= args.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--backend needs a name",
        ));
    }
    let name = args.remove(i);
    xev::Backend::candidates()
        .iter()
        .copied()
        .find(|b| b.name() == name)
        .map(Some)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown backend {name:?}"),
            )
        })
}

pub fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let rt = take_backend(&mut args).and_then(|b| {
        let mut builder = xev::rt::Builder::new();
        if let Some(b) = b {
            builder = builder.backend(b);
        }
        builder.build()
    });
    let rt = rt.unwrap_or_else(|e| {
        eprintln!("unix_echo: {e}");
        std::process::exit(2);
    });
    let result = rt.block_on(async {
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["--self-test"] => self_test().await,
            ["--client", addr] => client(parse_addr(addr)?).await,
            [] | [_] => {
                let addr = parse_addr(args.first().map_or("/tmp/xev-unix-echo.sock", |s| s))?;
                let listener = bind(&addr)?;
                println!("unix_echo listening on {addr:?} (Ctrl-C to stop)");
                run_server(listener, None, true).await
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "usage: unix_echo [--backend NAME] [PATH | @NAME] | --client PATH | --self-test",
            )),
        }
    });
    if let Err(e) = result {
        eprintln!("unix_echo: {e}");
        std::process::exit(1);
    }
}
