//! W1 (DESIGN.md §12): one full training step of the benchmark configuration (batch 100,
//! 101 tokens, width 64, 16 heads, 2 layers, n_ff 2): forward, backward and AdamW.
//! Also the network evaluation of one W2 sampling step: a forward pass in inference mode at
//! batch 1000. Run with `cargo bench --bench train_step`; steps/s = 1 / time per iteration.

mod w1;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tfmpe::Device;

fn train_step(c: &mut Criterion) {
    let device = Device::cpu();
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));

    let mut w1 = w1::W1::new(&device, 100, 1).expect("W1 model");
    group.bench_function("w1_batch100_fwd_bwd_adamw", |b| {
        b.iter(|| w1.train_step().expect("train step"))
    });

    let mut w2 = w1::W1::new(&device, 1000, 2).expect("W2 model");
    group.bench_function("w2_batch1000_forward", |b| {
        b.iter(|| w2.infer().expect("inference pass"))
    });
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
