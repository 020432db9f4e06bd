//! W1 of `tfmpe::workloads`: one full training step (forward, flow-matching loss, backward and
//! AdamW) of the posterior network at the benchmark configuration (batch 100, 101 tokens,
//! width 64, 16 heads, 2 layers, n_ff 2): the graph `tfmpe bench train-step` times. Also W2's
//! inner loop: one network evaluation of a sampling step at 1000 samples. Run with
//! `cargo bench --bench train_step`; steps/s = 1 / time per iteration.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tfmpe::tasks::task_by_name;
use tfmpe::workloads::{self, Sampling, TrainStep};
use tfmpe::Device;

fn train_step(c: &mut Criterion) {
    let device = Device::cpu();
    let task = task_by_name(workloads::TASK).expect("benchmark task");
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));

    let mut w1 =
        TrainStep::new(&device, &*task, workloads::SITES, workloads::BATCH).expect("W1 workload");
    let mut steps = w1.steps().expect("W1 optimiser");
    let mut draw = 0;
    group.bench_function("w1_batch100_fwd_bwd_adamw", |b| {
        b.iter(|| {
            steps.step(draw).expect("train step");
            draw += 1;
        })
    });

    let mut w2 =
        Sampling::new(&device, &*task, workloads::SITES, workloads::BATCH).expect("W2 workload");
    let mut velocity = w2.velocity(&device, 1000).expect("W2 inner loop");
    group.bench_function("w2_batch1000_forward", |b| {
        b.iter(|| velocity.eval().expect("network evaluation"))
    });
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
