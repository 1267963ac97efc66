//! Tests that must change process-wide state (a lowered `RLIMIT_NOFILE`) run their server
//! in a child process: the same test binary, re-run with `--exact` on the same test and
//! an environment variable that tells it to be the child. The child reports to the
//! parent on its stdout, one `XEV <what> <value>` line per report.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A child process running one test of this binary, killed if the parent panics.
pub struct TestChild {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl TestChild {
    /// Re-run this test binary's test `test` alone, with `env` set to `value` (the child
    /// reads it to know what it is).
    pub fn spawn(test: &str, env: &str, value: &str) -> TestChild {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(env, value)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        TestChild { child, out }
    }

    /// The value of the child's next report, which must be `what` (other output, such
    /// as libtest's, is skipped).
    ///
    /// # Panics
    /// If the child reports something else first, or exits before reporting.
    pub fn report(&mut self, what: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.out.read_line(&mut line).expect("child stdout");
            assert!(n > 0, "the child exited before reporting {what}");
            // (libtest may have started the line with the test's name.)
            if let Some(at) = line.find("XEV ") {
                let rest = line[at + 4..].trim_end();
                assert!(rest.starts_with(what), "expected {what}, got {rest:?}");
                return rest[what.len()..].trim().to_string();
            }
        }
    }

    /// Wait for the child to exit; whether it succeeded.
    pub fn succeeded(&mut self) -> bool {
        self.child.wait().expect("wait for the child").success()
    }
}

impl Drop for TestChild {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Lower this process's soft `RLIMIT_NOFILE` so that exactly `slots` descriptor numbers
/// are free (for a child: the limit is process-wide).
pub fn leave_free_descriptors(slots: usize) {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    // Without the listing's own descriptor, closed by now.
    let open: Vec<usize> = listed
        .into_iter()
        // SAFETY: F_GETFD only queries the descriptor table.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .map(|fd| fd as usize)
        .collect();
    let mut limit = slots;
    while limit - open.iter().filter(|&&fd| fd < limit).count() < slots {
        limit += 1;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a live rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = limit as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}
