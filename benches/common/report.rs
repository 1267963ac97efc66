//! The driver and report pieces the benches share: interleaved rounds, ratios, the
//! per-round line and the target lines.

use std::time::Instant;

/// Measure every variant `rounds` times, interleaved (A B C, A B C, ...): the samples of
/// each variant, in the order of `variants`. A failed measurement is reported on stderr
/// as `{label(v)}: {error}` and sets `*failed`.
pub fn interleaved<V: Copy, S>(
    rounds: usize,
    variants: &[V],
    failed: &mut bool,
    mut measure: impl FnMut(V) -> Result<S, String>,
    label: impl Fn(V) -> String,
) -> Vec<Vec<S>> {
    let mut samples: Vec<Vec<S>> = variants.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, &v) in variants.iter().enumerate() {
            match measure(v) {
                Ok(s) => samples[i].push(s),
                Err(e) => {
                    *failed = true;
                    eprintln!("{}: {e}", label(v));
                }
            }
        }
    }
    samples
}

/// The variants of `all` to measure: those on io_uring (`on_io_uring`) only where it is
/// available (otherwise "io_uring is not available here: its variants are skipped" is
/// printed), and those that `XEV_BENCH_ONLY` keeps (see [`super::wanted`]).
pub fn select<V: Copy>(
    all: &[V],
    name: impl Fn(V) -> &'static str,
    on_io_uring: impl Fn(V) -> bool,
) -> Vec<V> {
    let uring = xev::Backend::IoUring.is_available();
    if !uring {
        println!("io_uring is not available here: its variants are skipped");
    }
    all.iter()
        .copied()
        .filter(|&v| uring || !on_io_uring(v))
        .filter(|&v| super::wanted("XEV_BENCH_ONLY", name(v)))
        .collect()
}

/// `x / reference` as `1.234x`, or `-` without a reference.
pub fn ratio(x: f64, reference: Option<f64>) -> String {
    reference.map_or("-".to_string(), |r| format!("{:.3}x", x / r))
}

/// Print `per-round {unit}: name: [r1, r2, ..]; name: [..]`, each rate with `decimals`
/// decimals.
pub fn per_round_line<'a>(
    unit: &str,
    decimals: usize,
    rows: impl IntoIterator<Item = (&'a str, Vec<f64>)>,
) {
    let rates: Vec<String> = rows
        .into_iter()
        .map(|(name, rates)| {
            let all: Vec<String> = rates.iter().map(|r| format!("{r:.decimals$}")).collect();
            format!("{name}: [{}]", all.join(", "))
        })
        .collect();
    println!("per-round {unit}: {}", rates.join("; "));
}

/// "MET" or "MISSED".
pub fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "MISSED"
    }
}

/// Print `target: {what}  MET|MISSED`.
pub fn target(what: impl std::fmt::Display, met: bool) {
    println!("target: {what}  {}", verdict(met));
}

/// The spread behind a median ratio, for the line under a target: `a`'s rounds against
/// `b`'s, paired by round (each pair ran back to back), as "rate 0.91x-1.07x, at or above
/// 1.00x in 2 of 5; {cpu_label} 0.95x-1.12x" (`rate` and `cpu` read a round's rate and
/// its CPU time per unit of work). `None` with fewer than 2 pairs.
pub fn round_by_round<S>(
    (a, b): (&[S], &[S]),
    rate: fn(&S) -> f64,
    cpu: fn(&S) -> f64,
    goal: f64,
    cpu_label: &str,
) -> Option<String> {
    let range = |f: fn(&S) -> f64| {
        let q: Vec<f64> = a.iter().zip(b).map(|(x, y)| f(x) / f(y)).collect();
        let lo = q.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (q, lo, hi)
    };
    let (rates, lo, hi) = range(rate);
    if rates.len() < 2 {
        return None;
    }
    let (_, clo, chi) = range(cpu);
    let met = rates.iter().filter(|&&q| q >= goal).count();
    Some(format!(
        "round by round (paired, back to back): rate {lo:.3}x-{hi:.3}x, at or above \
         {goal:.2}x in {met} of {}; {cpu_label} {clo:.3}x-{chi:.3}x",
        rates.len()
    ))
}

/// Print the target line of a rate that should be at least `min` times a reference's:
/// `target: {name} >= {goal}: {q:.3}x  MET|MISSED`, `q` being the measured ratio.
pub fn ratio_target(name: &str, goal: &str, q: f64, min: f64) {
    target(format_args!("{name} >= {goal}: {q:.3}x"), q >= min);
}

/// Print a blank line and `{label}: {seconds:.1} s` (the bench's wall time since
/// `started`), then exit with status 1 if anything `failed`.
pub fn finish(label: &str, started: Instant, failed: bool) {
    println!();
    println!("{label}: {:.1} s", started.elapsed().as_secs_f64());
    if failed {
        std::process::exit(1);
    }
}
