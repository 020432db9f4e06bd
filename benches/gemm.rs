//! GEMM through the kernel contract at the W1 shapes (batch 100 × 101 tokens = 10100 rows, model
//! width 64, QKV width 192) and one 1024³ square for the machine's peak rate. Throughput is in
//! floating-point operations (2·m·n·k), so criterion's "elem/s" reads as FLOP/s.
//!
//! The same cases run on the wgpu backend (group `gemm-wgpu`, each iteration waiting for the
//! device) when an adapter opens; on a CPU-type adapter such as lavapipe expect seconds per
//! iteration.
//!
//! `cargo bench --bench gemm`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tfmpe::backend::{BackendKind, Epilogue, Gemm};
use tfmpe::Device;

const TOKENS: usize = 100 * 101;

fn gemm(c: &mut Criterion) {
    run(c, "gemm", &Device::cpu());
    match Device::open(BackendKind::Wgpu) {
        Ok((dev, _)) => run(c, "gemm-wgpu", &dev),
        Err(e) => eprintln!("gemm-wgpu skipped: {e}"),
    }
}

fn run(c: &mut Criterion, group_name: &str, dev: &Device) {
    let be = dev.backend();
    let linear = |m, n, k, epilogue| Gemm { epilogue, ..Gemm::new(m, n, k) };
    let cases = [
        ("qkv 10100x64 · 64x192 + bias", linear(TOKENS, 192, 64, Epilogue::Bias)),
        ("mlp 10100x64 · 64x64 + bias, relu", linear(TOKENS, 64, 64, Epilogue::BiasRelu)),
        // dX = dY · Wᵀ with W stored in × out (64 × 192).
        (
            "dX 10100x192 · (64x192)ᵀ",
            Gemm { trans_b: true, ..linear(TOKENS, 64, 192, Epilogue::None) },
        ),
        // dW = Xᵀ · dY, accumulated into the gradient (beta = 1).
        (
            "dW (10100x64)ᵀ · 10100x192",
            Gemm { trans_a: true, beta: 1.0, ..linear(64, 192, TOKENS, Epilogue::None) },
        ),
        ("square 1024³", linear(1024, 1024, 1024, Epilogue::None)),
    ];
    let mut group = c.benchmark_group(group_name);
    for (name, p) in cases {
        let fill = |len: usize, v: f32| be.upload_f32(&vec![v; len]).unwrap();
        let a = fill(p.m * p.k, 0.5);
        let b = fill(p.k * p.n, 0.25);
        let bias = (p.epilogue != Epilogue::None).then(|| fill(p.n, -1.0));
        let mut out = fill(p.m * p.n, 0.0);
        group.throughput(Throughput::Elements(2 * (p.m * p.n * p.k) as u64));
        group.bench_function(name, |bench| {
            bench.iter(|| {
                be.gemm(&p, &a, &b, bias.as_ref(), &mut out).unwrap();
                be.synchronize().unwrap();
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = gemm
}
criterion_main!(benches);
