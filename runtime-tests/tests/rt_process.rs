//! `xev::process`: exit codes, death by signal, spawn errors, repeated and cancelled
//! waits, try_wait, pipes, and many children awaited at once.

use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xev::process::{self, Child};
use xev::time::{sleep, timeout};

fn sh(script: &str) -> io::Result<Child> {
    process::spawn(Command::new("sh").args(["-c", script]))
}

#[xev::test(backend = "all")]
async fn exit_code_42() -> io::Result<()> {
    let mut child = sh("exit 42")?;
    assert!(child.id() > 0);
    let st = child.wait().await?;
    assert_eq!(st.code(), Some(42));
    assert_eq!(st.signal(), None);
    assert!(!st.success());
    // Waiting again returns the same status at once (the child is reaped and gone).
    let again = timeout(Duration::from_millis(500), child.wait())
        .await
        .expect("a second wait must not block")?;
    assert_eq!(again, st);
    assert_eq!(child.try_wait()?, Some(st));

    let st = process::status(Command::new("sh").args(["-c", "exit 42"])).await?;
    assert_eq!(st.code(), Some(42));
    assert!(process::status(&mut Command::new("true")).await?.success());
    Ok(())
}

/// The state letter of process `pid` (`Z`: a zombie), or `None` if there is none.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Wait up to 5 s for `pid` to have exited (a zombie, or reaped already by another
/// test's spawn: the orphan list is process-wide).
async fn exited(pid: u32) {
    let start = Instant::now();
    while matches!(proc_state(pid), Some(s) if s != 'Z') {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{pid} still running"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

/// A dropped `Child` is not left a zombie (std's `Child` would be): one that has exited
/// is reaped in the drop; one still running is reaped by the next spawn after it exits;
/// and so is the child of a `status()` future dropped by a timeout, whose pid the child
/// writes to a file.
#[xev::test(backend = "all")]
async fn dropped_children_are_reaped_not_left_zombies() -> io::Result<()> {
    // Exited before the drop: reaped by it.
    let child = sh("exit 0")?;
    let pid = child.id();
    exited(pid).await;
    drop(child);
    assert_ne!(proc_state(pid), Some('Z'), "{pid}: dropped after its exit");

    // Running at the drop, and the child of a `status()` timed out: reaped by the next
    // spawn once they have exited.
    let running = sh("sleep 0.1")?;
    let running_pid = running.id();
    drop(running);
    let file =
        std::env::temp_dir().join(format!("xev-orphan-{}-{}", std::process::id(), running_pid));
    let script = format!("echo $$ > {}; exec sleep 0.1", file.display());
    let timed_out = timeout(
        Duration::from_millis(50),
        process::status(Command::new("sh").args(["-c", &script])),
    )
    .await;
    assert!(
        timed_out.is_err(),
        "the status future was dropped by its timeout"
    );
    // The child writes its pid soon (maybe after the timeout, on a slow machine).
    let start = Instant::now();
    let status_pid: u32 = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Ok(pid) = text.trim().parse() {
            break pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no pid in {file:?}"
        );
        sleep(Duration::from_millis(10)).await;
    };
    let _ = std::fs::remove_file(&file);
    for pid in [running_pid, status_pid] {
        exited(pid).await;
    }
    assert!(process::status(&mut Command::new("true")).await?.success());
    for pid in [running_pid, status_pid] {
        assert_ne!(
            proc_state(pid),
            Some('Z'),
            "{pid}: left a zombie after a spawn"
        );
    }
    Ok(())
}

#[xev::test(backend = "all")]
async fn killed_child_reports_signal_9() -> io::Result<()> {
    let mut child = process::spawn(Command::new("sleep").arg("30"))?;
    let start = Instant::now();
    child.kill()?;
    let st = child.wait().await?;
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    assert_eq!(st.code(), None);
    assert!(start.elapsed() < Duration::from_secs(10));
    // Killing a reaped child is Ok, as with std.
    child.kill()?;
    assert_eq!(child.wait().await?, st);

    let mut child = process::spawn(Command::new("sleep").arg("30"))?;
    child.signal(libc::SIGTERM)?;
    assert_eq!(child.wait().await?.signal(), Some(libc::SIGTERM));
    Ok(())
}

/// `Child::wait`'s std status keeps the core flag: `core_dumped()` as std's own wait of
/// the same child says, with core files allowed and forbidden.
#[xev::test(backend = "all")]
async fn a_child_that_dumps_core_keeps_the_core_flag() -> io::Result<()> {
    for dump in [true, false] {
        let tag = format!("rt-{:?}-{dump}", xev::rt::with_loop(|lp| lp.backend()));
        let child = runtime_tests::CoreChild::new(&tag, dump);
        let truth = child.std_dumped();
        let st = process::spawn(&mut child.command())?.wait().await?;
        assert_eq!(st.signal(), Some(libc::SIGSEGV));
        assert_eq!(st.core_dumped(), truth, "dump allowed: {dump}");
        assert_eq!(st, child.command().status()?, "the same word as std's");
    }
    Ok(())
}

#[xev::test(backend = "all")]
async fn spawning_a_missing_program_fails() {
    let e = process::spawn(&mut Command::new("/nonexistent/xev-no-such-program")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    let e = process::status(&mut Command::new("xev-no-such-program-on-path"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

#[xev::test(backend = "all")]
async fn twenty_children_awaited_concurrently() -> io::Result<()> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        // Exit in a shuffled order, each after 50..250 ms.
        let delay_ms = 50 + (i * 7 % 20) * 10;
        let mut child = sh(&format!("sleep 0.{delay_ms:03}; exit {i}"))?;
        tasks.push(xev::spawn(async move {
            let st = child.wait().await?;
            Ok::<_, io::Error>((i, st, Instant::now()))
        }));
    }
    // Meanwhile the loop keeps running other tasks.
    let ticks = xev::spawn(async {
        let mut n = 0;
        while n < 5 {
            sleep(Duration::from_millis(10)).await;
            n += 1;
        }
        n
    });
    for t in tasks {
        let (i, st, _) = t.await??;
        assert_eq!(st.code(), Some(i as i32));
    }
    assert_eq!(ticks.await.unwrap(), 5);
    // Concurrent, not one after the other (20 × 50..250 ms would take seconds).
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    Ok(())
}

#[xev::test(backend = "all")]
async fn try_wait_and_a_cancelled_wait() -> io::Result<()> {
    let mut child = sh("sleep 0.2; exit 7")?;
    assert_eq!(child.try_wait()?, None);
    // A wait that times out is cancelled; the child is not reaped and can be waited
    // for again.
    assert!(timeout(Duration::from_millis(20), child.wait())
        .await
        .is_err());
    assert_eq!(child.try_wait()?, None);
    assert_eq!(child.wait().await?.code(), Some(7));
    assert_eq!(child.try_wait()?.and_then(|s| s.code()), Some(7));

    // A child that has already exited (a zombie) when the wait starts.
    let mut quick = sh("exit 3")?;
    std::thread::sleep(Duration::from_millis(50));
    quick.kill()?; // a zombie: nothing to kill, not an error
    assert_eq!(quick.wait().await?.code(), Some(3));
    Ok(())
}

#[xev::test(backend = "all")]
async fn pipes_are_async() -> io::Result<()> {
    let mut child = process::spawn(
        Command::new("sh")
            .args(["-c", "read line; echo \"got $line\"; echo oops >&2"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    child
        .stdin
        .as_ref()
        .unwrap()
        .write_all(&b"ping\n"[..])
        .await
        .0?;
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (mut o, mut e) = (Vec::new(), Vec::new());
    out.read_to_end(&mut o).await?;
    err.read_to_end(&mut e).await?;
    assert!(child.wait().await?.success());
    assert_eq!(o, b"got ping\n");
    assert_eq!(e, b"oops\n");

    // `wait` closes stdin first, so a child reading to the end of its input exits.
    let mut cat = process::spawn(
        Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null()),
    )?;
    let st = timeout(Duration::from_secs(5), cat.wait())
        .await
        .expect("wait closes stdin")?;
    assert!(st.success());
    assert!(cat.stdin.is_none());
    Ok(())
}

/// A pidfd is only accepted for an unreaped child of this process: a pid naming this
/// process or its parent (running, but not our children) is `ECHILD`. Before the check,
/// the watcher (and `process::spawn`, which opens its pidfd the same way) took any pid.
#[test]
fn a_pid_that_is_not_our_child_is_refused() {
    use xev::watcher::process::Process;
    // SAFETY: getppid(2) has no preconditions.
    let parent = unsafe { libc::getppid() } as u32;
    for pid in [std::process::id(), parent] {
        let e = Process::new(pid).expect_err("not a child of ours");
        assert_eq!(e.raw_os_error(), Some(libc::ECHILD), "pid {pid}: {e}");
    }
}

/// Make an orphaned `sleep` (not our child) take the pid `target`, by setting the pid
/// namespace's last pid (needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE). Returns false
/// if that is not possible here; other processes forking meanwhile are retried.
fn orphan_with_pid(target: u32) -> bool {
    for _ in 0..200 {
        // `sh` starts first (any pid), then forks the `sleep` once the last pid is set.
        let mut sh = Command::new("sh")
            .args([
                "-c",
                "read go; sleep 30 </dev/null >/dev/null 2>&1 & echo $!",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        let set = std::fs::write("/proc/sys/kernel/ns_last_pid", (target - 1).to_string());
        let mut stdin = sh.stdin.take().unwrap();
        let _ = stdin.write_all(b"go\n");
        drop(stdin);
        let out = sh.wait_with_output().expect("sh");
        let bg: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        if bg == target {
            return true;
        }
        // SAFETY: kill(2) of the orphan we just started (still sleeping).
        unsafe { libc::kill(bg as libc::pid_t, libc::SIGKILL) };
        if set.is_err() {
            return false;
        }
    }
    false
}

/// The reaping race of issue #13: a child exits and is reaped by someone else (here
/// `std`'s `wait`; in a program, a `waitpid(-1)` or `SIGCHLD = SIG_IGN`) before the
/// pidfd is opened, and its pid is reused by an unrelated process. Opening the pidfd by
/// pid would then name that process (and `Child::kill` would kill it); the check that
/// the pidfd's process is our unreaped child refuses it.
#[test]
fn a_reaped_childs_pid_reused_by_an_unrelated_process_is_refused() {
    use xev::watcher::process::Process;
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap(); // reaped before the pidfd is opened
    if pid < 3 || !orphan_with_pid(pid) {
        eprintln!("SKIPPED: cannot make another process reuse pid {pid} (ns_last_pid)");
        return;
    }
    let r = Process::from_child(&child);
    // Clean up the orphan whatever the outcome (it is not our child: init reaps it).
    // SAFETY: kill(2); `pid` is the orphaned sleep started above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let e = r.expect_err("the pid now names a process that is not our child");
    assert_eq!(e.raw_os_error(), Some(libc::ECHILD), "{e}");
}
