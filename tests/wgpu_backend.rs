//! The wgpu backend's own behaviour, beyond kernel parity: adapter choice, clear errors
//! instead of panics, and the buffer pool. Skipped without an adapter unless
//! `TFMPE_REQUIRE_WGPU=1`.

#[path = "common/mod.rs"]
mod common;

use tfmpe::backend::{select, BackendKind, DType};
use tfmpe::{Device, Error};

#[test]
fn auto_never_picks_a_cpu_type_adapter() {
    let Some(dev) = common::wgpu() else { return };
    if common::cuda().is_some() {
        return; // auto prefers CUDA
    }
    let (auto, why) = Device::open(BackendKind::Auto).unwrap();
    if dev.backend().device_name().contains("Cpu") {
        assert_eq!(auto.name(), "cpu", "auto took the software adapter: {why}");
        assert!(why.contains("wgpu"), "the reason names wgpu: {why}");
    } else {
        assert_eq!(auto.name(), "wgpu", "auto skipped a GPU: {why}");
    }
}

#[test]
fn asking_for_wgpu_names_the_adapter() {
    let Some(_) = common::wgpu() else { return };
    let (backend, why) = select(BackendKind::Wgpu).unwrap();
    assert_eq!(backend.name(), "wgpu");
    assert!(why.contains(&backend.device_name()), "{why}");
}

#[test]
fn an_oversized_buffer_is_an_error_naming_its_size() {
    let Some(dev) = common::wgpu() else { return };
    let err = dev.backend().alloc(DType::F32, 1 << 40).unwrap_err();
    assert!(matches!(err, Error::Device(_)), "{err}");
    assert!(err.to_string().contains("4398046511104 bytes"), "{err}");
    // The device is still usable afterwards.
    let buf = dev.backend().upload_f32(&[1.0, 2.0]).unwrap();
    assert_eq!(dev.backend().download_f32(&buf).unwrap(), [1.0, 2.0]);
}

#[test]
fn a_buffer_of_another_backend_is_an_error() {
    let Some(dev) = common::wgpu() else { return };
    let cpu = Device::cpu();
    let host = cpu.backend().upload_f32(&[1.0; 4]).unwrap();
    let mut out = dev.backend().alloc(DType::F32, 4).unwrap();
    let err = dev.backend().add(&host, &host, &mut out).unwrap_err();
    assert!(matches!(err, Error::Buffer(_)), "{err}");
}

#[test]
fn dropped_buffers_are_reused() {
    let Some(dev) = common::wgpu() else { return };
    let b = dev.backend();
    let first = b.alloc(DType::F32, 1000).unwrap();
    drop(first);
    let before = b.buffers_allocated();
    let again = b.alloc(DType::F32, 1000).unwrap();
    assert_eq!(b.buffers_allocated(), before, "the pool served the second request");
    // A reused buffer still starts at zero.
    assert_eq!(b.download_f32(&again).unwrap(), vec![0.0; 1000]);
}

#[test]
fn a_large_dispatch_covers_every_element() {
    // More than 65 535 workgroups of 256: the dispatch is split over two dimensions.
    let Some(dev) = common::wgpu() else { return };
    let n = 65_536 * 256 + 77;
    let b = dev.backend();
    let mut buf = b.alloc(DType::F32, n).unwrap();
    b.fill(&mut buf, 3.0).unwrap();
    let got = b.download_f32(&buf).unwrap();
    assert!(got.iter().all(|&v| v == 3.0), "every element filled");
}
