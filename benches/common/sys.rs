//! The machine: the environment lines of a bench's header, and CPU pinning.

use std::io;

/// The command that reproduces this run: `[XEV_BENCH_QUICK=1 ]cargo bench --bench {bench}`.
pub fn command(bench: &str, quick: bool) -> String {
    if quick {
        format!("XEV_BENCH_QUICK=1 cargo bench --bench {bench}")
    } else {
        format!("cargo bench --bench {bench}")
    }
}

/// Print the `command:` and `argv:` header lines.
pub fn print_command(bench: &str, quick: bool) {
    let argv: Vec<String> = std::env::args().collect();
    println!("command: {}", command(bench, quick));
    println!("argv:    {}", argv.join(" "));
}

/// The value after the `:` of the first line of `file` that starts with `key` (e.g.
/// `/proc/cpuinfo`, `model name`), trimmed; "unknown" if there is none.
pub fn proc_field(file: &str, key: &str) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `nproc: N   cpu: MODEL   kernel: RELEASE   loadavg: 1m 5m 15m`: the machine line of
/// a header (without a newline, so a bench can append to it).
pub fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = proc_field("/proc/cpuinfo", "model name");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    format!("nproc: {nproc}   cpu: {cpu}   kernel: {kernel}   loadavg: {load}")
}

/// Restrict the calling thread to `cpus` (`sched_setaffinity`).
pub fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; sched_setaffinity(0, ..)
    // applies to the calling thread and only reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pin the calling thread to one CPU (`sched_setaffinity`).
pub fn pin_thread(cpu: usize) -> io::Result<()> {
    set_affinity(&[cpu])
}

/// The thread placement, `XEV_BENCH_PIN=none|same|split`, or `default` when unset.
pub fn pin_mode(default: &str) -> String {
    std::env::var("XEV_BENCH_PIN").unwrap_or_else(|_| default.into())
}

/// The CPUs of a pair of threads under a placement `mode`: `same`: both on CPU 0;
/// `split`: the first on CPU 0, the second on CPU 1; anything else: None (the scheduler
/// decides).
pub fn pin_plan(mode: &str) -> Option<(usize, usize)> {
    match mode {
        "same" => Some((0, 0)),
        "split" => Some((0, 1)),
        _ => None,
    }
}

/// Pin the calling thread to `cpu`, if any; a failure is only reported on stderr, as
/// `{bench}: cannot pin to CPU {cpu}: {error}`.
pub fn pin_to(bench: &str, cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    if let Err(e) = pin_thread(cpu) {
        eprintln!("{bench}: cannot pin to CPU {cpu}: {e}");
    }
}
