//! The *paired* measurement both tower benches print after criterion's.
//!
//! Criterion measures one benchmark after the other, so drift on a shared machine (another
//! build, frequency changes) moves the ratios between them. This times `rounds` rounds, each
//! running one batch of every variant back to back in rotating order, and prints for each
//! variant the median time per request and the median of the per-round cost ratios to the
//! first variant, with their interquartile range.

/// Runs and prints the paired measurement. Each variant sends `requests` requests per call;
/// `what` describes a request in the heading.
pub(crate) fn paired(
    what: &str,
    rounds: usize,
    requests: usize,
    variants: &mut [(&str, &mut dyn FnMut())],
) {
    let mut times = vec![Vec::with_capacity(rounds); variants.len()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            let start = std::time::Instant::now();
            (variants[i].1)();
            times[i].push(start.elapsed().as_secs_f64());
        }
    }
    let quartiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 4], v[v.len() / 2], v[v.len() * 3 / 4])
    };
    println!("paired, {rounds} rounds of {requests} requests ({what}) per variant:");
    for (i, (name, _)) in variants.iter().enumerate() {
        let ratios = (0..rounds).map(|r| times[i][r] / times[0][r]).collect();
        let (q1, q2, q3) = quartiles(ratios);
        let (_, per_batch, _) = quartiles(times[i].clone());
        println!(
            "  {name:<32} median {:>8.1} ns per request, cost vs {}: {q2:.3}x (IQR {q1:.3}-{q3:.3})",
            per_batch * 1e9 / requests as f64,
            variants[0].0,
        );
    }
}
