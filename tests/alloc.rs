//! A training step of the W1 workload (`tfmpe::workloads`) allocates no device buffer after its
//! first run: the tape recycles its buffers through its pool, and the optimiser's state is
//! allocated once. The same holds for a network evaluation of W2's sampling loop.

#[path = "common/mod.rs"]
mod common;

use std::sync::Mutex;

use tfmpe::tasks::task_by_name;
use tfmpe::workloads::{self, Sampling, TrainStep};
use tfmpe::Device;

/// The allocation counter is the device's, and the wgpu and CUDA devices are shared by the
/// tests of this binary: one test at a time, or one counts the other's buffers.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// W1's batch of 100 sets on the CPU and CUDA; a few sets on wgpu, whose CI adapter
/// (lavapipe) is slow.
fn batch(device: &Device, full: usize) -> usize {
    if device.name() != "wgpu" {
        full
    } else {
        4
    }
}

#[test]
fn w1_train_step_reuses_its_buffers() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for device in common::devices() {
        w1_step_on(&device);
    }
}

fn w1_step_on(device: &Device) {
    let task = task_by_name(workloads::TASK).unwrap();
    let batch = batch(device, workloads::BATCH);
    let mut w1 = TrainStep::new(device, &*task, workloads::SITES, batch).unwrap();
    let mut steps = w1.steps().unwrap();
    let allocated = || device.backend().buffers_allocated();
    let mut losses = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..3 {
        // Draw 0 every time: the same sets, noise and times.
        let loss = steps.step(0).unwrap();
        losses.push(steps.loss(loss).unwrap());
        counts.push(allocated());
    }
    assert!(losses.iter().all(|l| l.is_finite()), "losses {losses:?}");
    assert!(losses[2] < losses[0], "AdamW lowers the loss on a fixed batch: {losses:?}");
    // The first step fills the pool; the next ones take everything from it.
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "{}: buffers allocated after each step: {counts:?}",
        device.name()
    );
}

#[test]
fn inference_pass_reuses_its_buffers() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for device in common::devices() {
        let task = task_by_name(workloads::TASK).unwrap();
        let mut w2 = Sampling::new(&device, &*task, workloads::SITES, workloads::BATCH).unwrap();
        let mut velocity = w2.velocity(&device, batch(&device, 10)).unwrap();
        let mut counts = Vec::new();
        for _ in 0..3 {
            velocity.eval().unwrap();
            counts.push(device.backend().buffers_allocated());
        }
        assert!(
            counts.iter().all(|&c| c == counts[0]),
            "{}: buffers allocated after each pass: {counts:?}",
            device.name()
        );
    }
}
