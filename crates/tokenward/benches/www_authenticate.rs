//! `WWW-Authenticate` parsing over growing inputs: parameter counts up to the 64-parameter
//! limit and past it (where parsing stops), quoted values growing within the 8 KiB limit, and
//! challenge counts up to the 16-challenge limit; plus a typical header.
//!
//! Criterion measures one input after the other, so drift on a shared machine moves the
//! ratios between them; a *paired* measurement printed after criterion's gives the figures
//! for BENCHMARKS.md: time per parameter or per byte, relative to the smallest input.
//!
//! Run: `cargo bench -p tokenward --bench www_authenticate`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokenward::classify::www_authenticate::parse;

/// `Bearer p0000="v0000", p0001="v0001", ...` with `n` parameters, all of the same length.
fn params(n: usize) -> String {
    let params: Vec<String> = (0..n).map(|i| format!("p{i:04}=\"v{i:04}\"")).collect();
    format!("Bearer {}", params.join(", "))
}

/// A Bearer error whose description is `chunks` times a 20-byte chunk with two escapes.
fn long_description(chunks: usize) -> String {
    format!(
        r#"Bearer error="invalid_token", error_description="{}""#,
        r#"token \"x\" expired "#.repeat(chunks)
    )
}

/// `n` challenges `Basic realm="r0", Basic realm="r1", ...`.
fn challenges(n: usize) -> String {
    let challenges: Vec<String> = (0..n).map(|i| format!("Basic realm=\"r{i}\"")).collect();
    challenges.join(", ")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("www_authenticate/params");
    for n in [8, 16, 32, 64] {
        let header = params(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &header, |b, h| {
            b.iter(|| parse(black_box(h.as_bytes())))
        });
    }
    g.finish();

    // Past the 64-parameter limit, where parsing stops. The code before the limits took
    // tens of milliseconds for 8,000 parameters: few samples.
    let mut g = c.benchmark_group("www_authenticate/params_past_limit");
    g.sample_size(10);
    for n in [64, 1_000, 8_000] {
        let header = params(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &header, |b, h| {
            b.iter(|| parse(black_box(h.as_bytes())))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("www_authenticate/quoted_len");
    for chunks in [8, 64, 256, 400] {
        let header = long_description(chunks);
        g.throughput(Throughput::Bytes(header.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(header.len()),
            &header,
            |b, h| b.iter(|| parse(black_box(h.as_bytes()))),
        );
    }
    g.finish();

    let mut g = c.benchmark_group("www_authenticate/challenges");
    for n in [1, 4, 16] {
        let header = challenges(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &header, |b, h| {
            b.iter(|| parse(black_box(h.as_bytes())))
        });
    }
    g.finish();

    let typical = br#"Bearer realm="api", error="invalid_token", error_description="The access token expired""#;
    c.bench_function("www_authenticate/typical", |b| {
        b.iter(|| parse(black_box(typical)))
    });

    // Each call parses about 4,096 parameters, or 256 KiB, whatever the input's size.
    let within: Vec<Variant> = [8, 16, 32, 64]
        .into_iter()
        .map(|n| Variant::new(format!("{n} parameters"), params(n), 4_096 / n, n))
        .collect();
    paired("parameters, within the limit", "parameter", 200, within);
    let quoted: Vec<Variant> = [8, 64, 256, 400]
        .into_iter()
        .map(|chunks| {
            let header = long_description(chunks);
            let (len, reps) = (header.len(), (256 * 1024) / header.len());
            Variant::new(format!("{len} bytes"), header, reps, len)
        })
        .collect();
    paired("a quoted value, within the limit", "byte", 200, quoted);
    let past: Vec<Variant> = [64, 1_000, 8_000]
        .into_iter()
        .map(|n| Variant::new(format!("{n} parameters"), params(n), 8, 1))
        .collect();
    paired("parameters, past the limit", "header", 50, past);
}

/// One input of a paired measurement: a call parses `header` `reps` times, each parse
/// counting `units` (parameters, bytes or headers).
struct Variant {
    name: String,
    header: String,
    reps: usize,
    units: usize,
}

impl Variant {
    fn new(name: String, header: String, reps: usize, units: usize) -> Self {
        Variant {
            name,
            header,
            reps,
            units,
        }
    }

    /// Seconds per unit of one call.
    fn time(&self) -> f64 {
        let start = std::time::Instant::now();
        for _ in 0..self.reps {
            black_box(parse(black_box(self.header.as_bytes())));
        }
        start.elapsed().as_secs_f64() / (self.reps * self.units) as f64
    }
}

/// Times `rounds` rounds, each calling every variant once, back to back in rotating order,
/// and prints for each the median time per `unit` and the median of the per-round ratios of
/// its time per unit to the first variant's, with their interquartile range.
fn paired(what: &str, unit: &str, rounds: usize, variants: Vec<Variant>) {
    let mut times = vec![Vec::with_capacity(rounds); variants.len()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            times[i].push(variants[i].time());
        }
    }
    let quartiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 4], v[v.len() / 2], v[v.len() * 3 / 4])
    };
    println!("paired, {rounds} rounds ({what}):");
    for (i, variant) in variants.iter().enumerate() {
        let ratios = (0..rounds).map(|r| times[i][r] / times[0][r]).collect();
        let (q1, q2, q3) = quartiles(ratios);
        let (_, per_unit, _) = quartiles(times[i].clone());
        println!(
            "  {:<16} median {:>10.2} ns per {unit}, vs {}: {q2:.3}x (IQR {q1:.3}-{q3:.3})",
            variant.name,
            per_unit * 1e9,
            variants[0].name,
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
