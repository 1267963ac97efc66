//! `XEV_BACKEND` picks the backend of every loop created without a pinned one (issue 10
//! item 8): `Loop::new` with default options, `Runtime::new`, `block_on`. The variable is
//! process-wide, so each case runs in a child process (this test binary re-run with a
//! filter) with the variable set.

use std::process::Command;

const CHILD: &str = "XEV_BACKEND_ENV_TEST_CHILD";

/// In the child: report what each entry point picked, or the error it gave.
#[test]
fn child_reports_its_backends() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let lp = match xev::Loop::new(xev::Options::default()) {
        Ok(lp) => lp.backend().name().to_string(),
        Err(e) => format!("error {:?}: {e}", e.kind()),
    };
    let rt = match xev::rt::Runtime::new() {
        Ok(rt) => rt
            .block_on(async { xev::rt::with_loop(|lp| lp.backend()) })
            .name()
            .to_string(),
        Err(e) => format!("error {:?}: {e}", e.kind()),
    };
    let pinned = xev::rt::Builder::new()
        .backend(xev::Backend::Epoll)
        .build()
        .map(|rt| rt.block_on(async { xev::rt::with_loop(|lp| lp.backend()) }));
    println!("LOOP={lp}");
    println!("RUNTIME={rt}");
    println!("DEFAULT={}", xev::Backend::default().name());
    println!("PINNED={}", pinned.unwrap().name());
    if !lp.starts_with("error") {
        let from_block_on = xev::block_on(async { xev::rt::with_loop(|lp| lp.backend()) });
        println!("BLOCK_ON={}", from_block_on.name());
    }
}

/// Run the child with `XEV_BACKEND=value` (unset for `None`) and return its report lines.
fn child(value: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_reports_its_backends",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1");
    match value {
        Some(v) => cmd.env("XEV_BACKEND", v),
        None => cmd.env_remove("XEV_BACKEND"),
    };
    let out = cmd.output().expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn line<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        // The harness prints "test child_reports_its_backends ... " before the first line.
        .find_map(|l| l.split_once(&format!("{key}=")).map(|(_, v)| v))
        .unwrap_or_else(|| panic!("no {key}= line in {report}"))
}

#[test]
fn xev_backend_picks_each_available_backend() {
    for b in xev::Backend::available() {
        let report = child(Some(b.name()));
        for key in ["LOOP", "RUNTIME", "DEFAULT", "BLOCK_ON"] {
            assert_eq!(line(&report, key), b.name(), "{key} with XEV_BACKEND={b}");
        }
        assert_eq!(line(&report, "PINNED"), "epoll", "a pinned backend wins");
    }
}

#[test]
fn unset_or_empty_xev_backend_is_the_best_available() {
    let best = xev::Backend::available().next().unwrap().name();
    for value in [None, Some("")] {
        let report = child(value);
        for key in ["LOOP", "RUNTIME", "DEFAULT", "BLOCK_ON"] {
            assert_eq!(line(&report, key), best, "{key} with XEV_BACKEND={value:?}");
        }
    }
}

#[test]
fn unknown_xev_backend_is_a_clear_error() {
    let report = child(Some("uring"));
    for key in ["LOOP", "RUNTIME"] {
        let got = line(&report, key);
        assert!(
            got.starts_with("error InvalidInput")
                && got.contains("XEV_BACKEND")
                && got.contains("\"uring\" is not a backend name"),
            "{key}: {got}"
        );
    }
    // Backend::default() ignores the bad value; pinned backends are unaffected.
    assert_eq!(
        line(&report, "DEFAULT"),
        xev::Backend::available().next().unwrap().name()
    );
    assert_eq!(line(&report, "PINNED"), "epoll");
}

#[test]
fn unavailable_xev_backend_is_a_clear_error() {
    // kqueue and IOCP never exist on Linux.
    let report = child(Some("kqueue"));
    for key in ["LOOP", "RUNTIME"] {
        let got = line(&report, key);
        assert!(
            got.starts_with("error Unsupported")
                && got.contains("XEV_BACKEND=kqueue")
                && got.contains("not available here"),
            "{key}: {got}"
        );
    }
}
