//! `WWW-Authenticate` parsing over growing inputs: parameter counts up to the 64-parameter
//! limit and past it (where parsing stops), quoted values growing within the 8 KiB limit, and
//! challenge counts up to the 16-challenge limit; plus a typical header.
//!
//! Run: `cargo bench -p tokenward --bench www_authenticate`. Figures go to BENCHMARKS.md as
//! ratios (time per parameter or per byte, relative to the smallest input).
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
