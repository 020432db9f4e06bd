//! The CUDA backend's own behaviour, beyond kernel parity: selection, clear errors instead of
//! panics. Skipped without a GPU unless `TFMPE_REQUIRE_CUDA=1`.

#[path = "common/mod.rs"]
mod common;

use tfmpe::backend::{select, BackendKind, DType, LayerNorm};
use tfmpe::{Device, Error};

#[test]
fn auto_prefers_cuda() {
    let Some(_) = common::cuda() else { return };
    let (auto, why) = Device::open(BackendKind::Auto).unwrap();
    assert_eq!(auto.name(), "cuda", "{why}");
    let (backend, why) = select(BackendKind::Cuda).unwrap();
    assert!(why.contains(&backend.device_name()), "{why}");
}

#[test]
fn an_oversized_buffer_is_an_error_naming_its_size() {
    let Some(dev) = common::cuda() else { return };
    let err = dev.backend().alloc(DType::F32, 1 << 40).unwrap_err();
    assert!(matches!(err, Error::Device(_)), "{err}");
    assert!(err.to_string().contains("4398046511104 bytes"), "{err}");
    // The device is still usable afterwards.
    let buf = dev.backend().upload_f32(&[1.0, 2.0]).unwrap();
    assert_eq!(dev.backend().download_f32(&buf).unwrap(), [1.0, 2.0]);
}

#[test]
fn buffers_of_another_backend_are_refused() {
    let Some(dev) = common::cuda() else { return };
    let cpu = Device::cpu().backend().upload_f32(&[1.0]).unwrap();
    let mut out = dev.backend().alloc(DType::F32, 1).unwrap();
    let err = dev.backend().scale(&cpu, 2.0, &mut out).unwrap_err();
    assert!(matches!(err, Error::Buffer(_)), "{err}");
}

#[test]
fn layer_norm_bwd_runs_at_the_widths_that_fill_48_kib_of_shared_memory() {
    // At these widths the kernel's dynamic shared memory is exactly 48 KiB; its static bytes
    // come on top, so it launches only because it opts in to more (src/backend/cuda/limits.rs).
    let Some(dev) = common::cuda() else { return };
    let cpu = Device::cpu();
    for cols in [768, 1536, 3072, 6144] {
        let p = LayerNorm { rows: 5, cols, eps: 1e-5 };
        let n = p.rows * cols;
        let h: Vec<f32> = (0..n).map(|i| (i * 7919 % 101) as f32 / 50.0 - 1.0).collect();
        let dy: Vec<f32> = (0..n).map(|i| (i * 104_729 % 103) as f32 / 51.0 - 1.0).collect();
        let (gamma, mean, rstd) = (vec![1.25; cols], vec![0.1; p.rows], vec![0.9; p.rows]);
        let grads = |dev: &Device| {
            let be = dev.backend();
            let up = |v: &[f32]| be.upload_f32(v).unwrap();
            let zeros = |n| be.alloc(DType::F32, n).unwrap();
            let (mut dh, mut dg, mut db) = (zeros(n), zeros(cols), zeros(cols));
            let (h, dy, g, m, r) = (up(&h), up(&dy), up(&gamma), up(&mean), up(&rstd));
            be.layer_norm_bwd(&p, &h, &dy, &g, &m, &r, &mut dh, &mut dg, &mut db, false).unwrap();
            [dh, dg, db].map(|b| be.download_f32(&b).unwrap())
        };
        for (got, want) in grads(&dev).iter().zip(&grads(&cpu)) {
            for (a, b) in got.iter().zip(want) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{cols} columns: {a} != {b}");
            }
        }
    }
}
