//! A training step at the W1 shapes allocates no device buffer after its first run: the tape
//! recycles its buffers through its pool, and the optimiser's state is allocated once.

#[path = "common/mod.rs"]
mod common;
#[path = "../benches/w1/mod.rs"]
mod w1;

use std::sync::Mutex;

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
    let mut step = w1::W1::new(device, batch(device, 100), 7).unwrap();
    let allocated = || device.backend().buffers_allocated();
    let mut losses = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..3 {
        let loss = step.train_step().unwrap();
        losses.push(step.tape.to_vec(loss).unwrap()[0]);
        counts.push(allocated());
    }
    assert!(losses.iter().all(|l| l.is_finite()), "losses {losses:?}");
    assert!(
        losses[2] < losses[0],
        "AdamW lowers the loss on a fixed batch: {losses:?}"
    );
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
        let mut step = w1::W1::new(&device, batch(&device, 10), 8).unwrap();
        let mut counts = Vec::new();
        for _ in 0..3 {
            step.infer().unwrap();
            counts.push(device.backend().buffers_allocated());
        }
        assert!(
            counts.iter().all(|&c| c == counts[0]),
            "{}: buffers allocated after each pass: {counts:?}",
            device.name()
        );
    }
}
