//! Helpers shared by the test binaries: the backends to test, random inputs, tolerances, and
//! (in [`bin`]) the command line.
#![allow(dead_code)]

pub mod bin;

/// The variable sizes of a small test model: one scalar global, one scalar local and two
/// observations per site, each carrying `inputs` functional-input values.
pub struct Sizes {
    pub inputs: usize,
}

impl tfmpe::model::tokens::VariableSizes for Sizes {
    fn global_sizes(&self) -> Vec<usize> {
        vec![1]
    }
    fn local_sizes(&self) -> Vec<usize> {
        vec![1]
    }
    fn observation_sizes(&self) -> Vec<usize> {
        vec![2]
    }
    fn input_dim(&self) -> usize {
        self.inputs
    }
}

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tfmpe::backend::{Backend, Buffer};
use tfmpe::Device;

/// Every backend present on this machine: the CPU always, wgpu on any adapter (lavapipe
/// included) when one exists, and CUDA when a GPU opens. With `TFMPE_REQUIRE_WGPU=1` (set by
/// scripts/check.sh, so in CI) or `TFMPE_REQUIRE_CUDA=1` (set by scripts/gpu-check.sh) a
/// missing backend fails the test instead of being skipped.
pub fn devices() -> Vec<Device> {
    let mut devs = vec![Device::cpu()];
    devs.extend(wgpu());
    devs.extend(cuda());
    devs
}

/// The CUDA device, opened once per test binary and shared.
pub fn cuda() -> Option<Device> {
    static CUDA: std::sync::OnceLock<Option<Device>> = std::sync::OnceLock::new();
    CUDA.get_or_init(|| match Device::open(tfmpe::backend::BackendKind::Cuda) {
        Ok((dev, _)) => Some(dev),
        Err(e) if std::env::var("TFMPE_REQUIRE_CUDA").is_ok_and(|v| v == "1") => {
            panic!("TFMPE_REQUIRE_CUDA=1 but CUDA could not open: {e}")
        }
        Err(_) => None,
    })
    .clone()
}

/// The wgpu device, opened once per test binary and shared (lavapipe is slow to start).
pub fn wgpu() -> Option<Device> {
    static WGPU: std::sync::OnceLock<Option<Device>> = std::sync::OnceLock::new();
    WGPU.get_or_init(|| match Device::open(tfmpe::backend::BackendKind::Wgpu) {
        Ok((dev, _)) => Some(dev),
        Err(e) if std::env::var("TFMPE_REQUIRE_WGPU").is_ok_and(|v| v == "1") => {
            panic!("TFMPE_REQUIRE_WGPU=1 but wgpu could not open: {e}")
        }
        Err(_) => None,
    })
    .clone()
}

/// A deterministic generator for one test case: the seed names the case, so a failure can be
/// replayed, while every case draws its own inputs.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(0x7f4a_7c15 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// `n` draws from U(lo, hi).
pub fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// `n` standard normals (Box–Muller on the test side, independent of the crate).
pub fn normal(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

/// A key-padding mask `[batch, tokens]` with at least one valid key per batch element,
/// and some batch elements fully valid.
pub fn padding_mask(rng: &mut StdRng, batch: usize, tokens: usize) -> Vec<f32> {
    let mut m = vec![1.0f32; batch * tokens];
    for b in 0..batch {
        if b % 2 == 1 && tokens > 1 {
            let pad = rng.random_range(1..tokens);
            for t in tokens - pad..tokens {
                m[b * tokens + t] = 0.0;
            }
        }
    }
    m
}

pub fn up(dev: &Device, data: &[f32]) -> Buffer {
    dev.backend().upload_f32(data).unwrap()
}

pub fn up_u32(dev: &Device, data: &[u32]) -> Buffer {
    dev.backend().upload_u32(data).unwrap()
}

pub fn down(dev: &Device, buf: &Buffer) -> Vec<f32> {
    dev.backend().download_f32(buf).unwrap()
}

pub fn zeros(dev: &Device, n: usize) -> Buffer {
    dev.backend().alloc(tfmpe::backend::DType::F32, n).unwrap()
}

pub fn backend(dev: &Device) -> &dyn Backend {
    dev.backend()
}

/// Asserts `|got - want| <= atol + rtol·|want|` elementwise, reporting the worst element.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let tol = atol + rtol * w.abs();
        assert!(
            err <= tol || (g.is_nan() && w.is_nan()),
            "{what}: element {i} is {g}, expected {w} (error {err:.3e} > tolerance {tol:.3e})"
        );
        if err > worst.1 {
            worst = (i, err);
        }
    }
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
