//! User and system CPU time of a thread or process from its `/proc/.../stat` file (in
//! clock ticks, 10 ms each by default: a split over seconds of load, not a timer).
//! The file is opened once and re-read with `pread` into a stack buffer, so a reading
//! allocates nothing (the bench counts allocations).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

/// An open `/proc/PID/stat` or `/proc/self/task/TID/stat`.
pub struct StatFile(File);

impl StatFile {
    /// Open the stat file at `path`.
    pub fn open(path: &str) -> std::io::Result<StatFile> {
        File::open(path).map(StatFile)
    }

    /// (user, system) CPU time so far, or None if the file cannot be read or parsed.
    pub fn user_sys(&self) -> Option<(Duration, Duration)> {
        let mut buf = [0u8; 1024];
        let n = self.0.read_at(&mut buf, 0).ok()?;
        let s = std::str::from_utf8(&buf[..n]).ok()?;
        // After the parenthesised command name: state is field 3; utime 14, stime 15.
        let rest = s.get(s.rfind(')')? + 2..)?;
        let mut f = rest.split_whitespace().skip(11);
        let user: u64 = f.next()?.parse().ok()?;
        let sys: u64 = f.next()?.parse().ok()?;
        // SAFETY: sysconf has no memory preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let t = |ticks: u64| Duration::from_secs_f64(ticks as f64 / hz);
        Some((t(user), t(sys)))
    }
}
