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

/// Every kernel that runs one workgroup per row, tile or sample, launched with more than
/// 65 535 of them: the dispatch folds into two dimensions, and each kernel must number its
/// workgroups across both (and skip the few past the end) to match the CPU backend.
#[test]
fn per_group_kernels_cover_a_folded_dispatch() {
    use tfmpe::backend::{Attention, Gemm, LayerNorm};
    let Some(gpu) = common::wgpu() else { return };
    const G: usize = 70_000;
    let run = |dev: &Device| -> Vec<(&str, Vec<f32>)> {
        let b = common::backend(dev);
        let (up, down, zeros) = (common::up, common::down, common::zeros);
        let mut r = common::rng(77);
        let mut out = Vec::new();

        let gemm = Gemm { batch: G, ..Gemm::new(1, 2, 3) };
        let (a, bm) = (common::normal(&mut r, 3 * G), common::normal(&mut r, 6 * G));
        let mut c = zeros(dev, 2 * G);
        b.gemm(&gemm, &up(dev, &a), &up(dev, &bm), None, &mut c).unwrap();
        out.push(("gemm", down(dev, &c)));

        let dy = common::normal(&mut r, 2 * 64 * G);
        let mut db = zeros(dev, 64 * G);
        b.bias_grad(&up(dev, &dy), 2, 64 * G, &mut db, false).unwrap();
        out.push(("bias_grad", down(dev, &db)));

        let att = Attention { batch: G, tokens: 2, heads: 1, head_dim: 2, scale: 0.7 };
        let qkv = up(dev, &common::normal(&mut r, 12 * G));
        let (mut o, mut lse) = (zeros(dev, 4 * G), zeros(dev, 2 * G));
        b.attention_fwd(&att, &qkv, None, &mut o, &mut lse).unwrap();
        let mut dqkv = zeros(dev, 12 * G);
        let dout = up(dev, &common::normal(&mut r, 4 * G));
        b.attention_bwd(&att, &qkv, None, &o, &lse, &dout, &mut dqkv).unwrap();
        out.extend([("attention out", down(dev, &o)), ("attention dqkv", down(dev, &dqkv))]);

        let ln = LayerNorm { rows: 129, cols: 66_000, eps: 1e-5 };
        let n = ln.rows * ln.cols;
        let (h, dy) = (up(dev, &common::normal(&mut r, n)), up(dev, &common::normal(&mut r, n)));
        let gamma = up(dev, &common::uniform(&mut r, ln.cols, 0.5, 1.5));
        let (mean, rstd) = (zeros(dev, ln.rows), up(dev, &vec![1.0; ln.rows]));
        let (mut dh, mut dg, mut dbeta) = (zeros(dev, n), zeros(dev, ln.cols), zeros(dev, ln.cols));
        b.layer_norm_bwd(&ln, &h, &dy, &gamma, &mean, &rstd, &mut dh, &mut dg, &mut dbeta, false)
            .unwrap();
        out.extend([("dgamma", down(dev, &dg)), ("dbeta", down(dev, &dbeta))]);

        let ids: Vec<u32> = (0..1000).map(|i| (i * 7919 % G) as u32).collect();
        let dout = up(dev, &common::normal(&mut r, 1000));
        let mut dtable = zeros(dev, G);
        b.embedding_bwd(&dout, &common::up_u32(dev, &ids), 1, &mut dtable, false).unwrap();
        out.push(("embedding_bwd", down(dev, &dtable)));

        let (x, freqs) = (common::uniform(&mut r, 3, -1.0, 1.0), common::normal(&mut r, G));
        let dout = up(dev, &common::normal(&mut r, 3 * 2 * G));
        let mut dfreqs = zeros(dev, G);
        let (x, freqs) = (up(dev, &x), up(dev, &freqs));
        b.fourier_bwd(&x, &freqs, &dout, 3, 1, G, &mut dfreqs, false).unwrap();
        out.push(("fourier_bwd", down(dev, &dfreqs)));

        let (x, x_new) = (common::normal(&mut r, G), common::normal(&mut r, G));
        let kb = up(dev, &common::normal(&mut r, 2 * G));
        let (h, mut err) = (up(dev, &vec![0.1; G]), zeros(dev, G));
        let (x, x_new) = (up(dev, &x), up(dev, &x_new));
        b.dopri5_error(&x, &x_new, &kb, &[0.5, -0.25], &h, 1, 1e-3, 1e-6, &mut err).unwrap();
        out.push(("dopri5_error", down(dev, &err)));
        out
    };
    for ((what, got), (_, want)) in run(&gpu).into_iter().zip(run(&Device::cpu())) {
        common::assert_close(what, &got, &common::to_f64(&want), 1e-5, 1e-4);
    }
}
