//! The CUDA backend's own behaviour, beyond kernel parity: selection, clear errors instead of
//! panics. Skipped without a GPU unless `TFMPE_REQUIRE_CUDA=1`.

#[path = "common/mod.rs"]
mod common;

use tfmpe::backend::{select, BackendKind, DType};
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
