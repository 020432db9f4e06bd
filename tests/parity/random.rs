//! Parity of the `random` kernels.
//!
//! The test carries its own Philox4x32-10, checked against the Random123 known-answer vectors,
//! and derives the expected stream from it in f64; the backends must match that stream.

use crate::common::{self, backend, down, zeros};
use tfmpe::Device;

per_device!(
    uniform_matches_reference_stream,
    normal_matches_reference_stream,
    offset_shifts_the_stream_by_whole_blocks,
    counter_carries_past_64_bits,
    streams_are_deterministic_and_seeded,
    normal_moments,
    uniform_stays_inside_and_fills_the_interval
);

fn philox(mut c: [u32; 4], mut k: [u32; 2]) -> [u32; 4] {
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(0x9E37_79B9);
            k[1] = k[1].wrapping_add(0xBB67_AE85);
        }
        let p0 = 0xD251_1F53u64 * c[0] as u64;
        let p1 = 0xCD9E_8D57u64 * c[2] as u64;
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// Element `i`'s Philox word, as `Backend::normal_fill` defines the stream.
fn word(seed: u64, offset: u64, i: usize) -> u32 {
    let ctr = offset as u128 + (i / 4) as u128;
    let c = [ctr as u32, (ctr >> 32) as u32, (ctr >> 64) as u32, 0];
    philox(c, [seed as u32, (seed >> 32) as u32])[i % 4]
}

fn unit(w: u32) -> f64 {
    ((w >> 8) as f64 + 0.5) / 16_777_216.0
}

fn ref_uniform(seed: u64, offset: u64, n: usize) -> Vec<f64> {
    (0..n).map(|i| unit(word(seed, offset, i))).collect()
}

fn ref_normal(seed: u64, offset: u64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let first = i - i % 2;
            let r = (-2.0 * unit(word(seed, offset, first)).ln()).sqrt();
            let theta = std::f64::consts::TAU * unit(word(seed, offset, first + 1));
            r * if i % 2 == 0 { theta.cos() } else { theta.sin() }
        })
        .collect()
}

fn normals(dev: &tfmpe::Device, n: usize, seed: u64, offset: u64) -> Vec<f32> {
    let mut buf = zeros(dev, n);
    backend(dev).normal_fill(&mut buf, seed, offset).unwrap();
    down(dev, &buf)
}

fn uniforms(dev: &tfmpe::Device, n: usize, seed: u64, offset: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut buf = zeros(dev, n);
    backend(dev).uniform_fill(&mut buf, seed, offset, lo, hi).unwrap();
    down(dev, &buf)
}

/// Odd sizes end in a partial block; 100_003 crosses the CPU backend's parallel chunks.
const SIZES: [usize; 6] = [1, 7, 33, 101, 4096, 100_003];
/// A seed with both halves non-zero, so a swapped key half shows.
const SEED: u64 = 0x0123_4567_89AB_CDEF;

#[test]
fn philox_known_answers() {
    // Random123's kat_vectors for philox4x32_10.
    let cases = [
        ([0; 4], [0; 2], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
        ([u32::MAX; 4], [u32::MAX; 2], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];
    for (ctr, key, want) in cases {
        assert_eq!(philox(ctr, key), want, "counter {ctr:08x?} key {key:08x?}");
    }
}

fn uniform_matches_reference_stream(dev: &Device) {
    for (seed, offset) in [(0, 0), (SEED, 12345)] {
        for n in SIZES {
            let got = uniforms(dev, n, seed, offset, 0.0, 1.0);
            // With lo = 0, hi = 1 only the f32 rounding of `(w >> 8) + 0.5` remains: at most
            // half an f32 ulp below 1, 2^-25, so a wrong word would be caught.
            let what = format!("{} uniform n={n} seed={seed:x} offset={offset}", dev.name());
            common::assert_close(&what, &got, &ref_uniform(seed, offset, n), 3.0e-8, 0.0);
        }
    }
}

fn normal_matches_reference_stream(dev: &Device) {
    for (seed, offset) in [(0, 0), (SEED, 777)] {
        for n in SIZES {
            let got = normals(dev, n, seed, offset);
            // f32 Box–Muller: the angle 2π·u carries ~4e-7 absolute error, the radius is at
            // most sqrt(50 ln 2) ≈ 5.9, so the error stays below ~3e-6.
            let what = format!("{} normal n={n} seed={seed:x} offset={offset}", dev.name());
            common::assert_close(&what, &got, &ref_normal(seed, offset, n), 1.0e-5, 1.0e-6);
        }
    }
}

fn offset_shifts_the_stream_by_whole_blocks(dev: &Device) {
    let base = normals(dev, 400, SEED, 0);
    for offset in [1u64, 3, 50] {
        let shifted = normals(dev, 200, SEED, offset);
        let start = 4 * offset as usize;
        assert_eq!(shifted, base[start..start + 200], "offset {offset}");
    }
    let base = uniforms(dev, 400, SEED, 0, -1.0, 1.0);
    assert_eq!(uniforms(dev, 200, SEED, 7, -1.0, 1.0), base[28..228]);
}

fn counter_carries_past_64_bits(dev: &Device) {
    // The counter is a 128-bit integer: blocks past offset 2^64 - 1 carry into word 2.
    let offset = u64::MAX - 1;
    let got = uniforms(dev, 16, SEED, offset, 0.0, 1.0);
    common::assert_close("carry", &got, &ref_uniform(SEED, offset, 16), 3.0e-8, 0.0);
}

fn streams_are_deterministic_and_seeded(dev: &Device) {
    let a = normals(dev, 50_000, SEED, 9);
    assert_eq!(a, normals(dev, 50_000, SEED, 9), "same (seed, offset)");
    let b = normals(dev, 50_000, SEED + 1, 9);
    assert!(a.iter().zip(&b).filter(|(x, y)| x == y).count() < 10, "seeds differ");
}

fn normal_moments(dev: &Device) {
    let n = 100_000;
    let x = normals(dev, n, 42, 0);
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // Five standard errors: sd(mean) = 1/sqrt(n) ≈ 0.0032, sd(var) = sqrt(2/n) ≈ 0.0045.
    assert!(mean.abs() < 0.016, "mean {mean}");
    assert!((var - 1.0).abs() < 0.023, "variance {var}");
    assert!(x.iter().all(|v| v.is_finite()));
}

fn uniform_stays_inside_and_fills_the_interval(dev: &Device) {
    let (lo, hi) = (-2.0f32, 3.0f32);
    let n = 100_000;
    let x = uniforms(dev, n, 7, 0, lo, hi);
    assert!(x.iter().all(|&v| lo < v && v < hi), "a value outside ({lo}, {hi})");
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    // sd of the mean: 5 / sqrt(12 n) ≈ 0.0046; five of them.
    assert!((mean - 0.5).abs() < 0.023, "mean {mean}");
    let (min, max) = x.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(min < lo + 1e-3 && max > hi - 1e-3, "range [{min}, {max}]");
    // lo + (hi - lo)·u in f32: a couple of ulps of 3.
    let want: Vec<f64> = ref_uniform(7, 0, n).iter().map(|u| -2.0 + 5.0 * u).collect();
    common::assert_close("uniform(-2, 3)", &x, &want, 1.0e-6, 0.0);
}

/// Tests that compare two backends with each other.
mod across_devices {
    use super::*;

    /// The wgpu backend against the CPU backend on the same `(seed, offset)`: uniforms bit for bit
    /// (the words are integer arithmetic on both; `u` takes one round-to-even, which the shader
    /// reproduces on integers; then one f32 multiply and one add, which the shader keeps from
    /// fusing into an fma), normals to a few ulps.
    ///
    /// Both sides feed identical uniforms and an identical f32 angle into Box–Muller and differ
    /// only in their log, sqrt and sin/cos: the host's libm (within an ulp) against the shader's
    /// own logf and sin/cos kernels (musl's, evaluated in f32: an ulp or two, plus the three-part
    /// reduction's ~1e-14 absolute, at most ~3 ulps of the smallest reduced angle 2π·u can
    /// give) and the adapter's sqrt (WebGPU allows about 3 ulps). r = sqrt(-2 ln u) halves the
    /// log's relative error, so r differs by up to ~5 ulps, sin or cos by ~4, and their product
    /// rounds once more: ~10 ulps, and 16 · f32::EPSILON (relative) leaves room (lavapipe's worst
    /// over 10^6 normals was 2.75 · f32::EPSILON, 71% bit for bit). Far tighter than
    /// the f64 test above (1e-5), which also absorbs the f32 rounding of the angle both share.
    #[test]
    fn wgpu_matches_the_cpu_backend() {
        let Some(gpu) = common::wgpu() else { return };
        let cpu = Device::cpu();
        for (seed, offset) in [(0, 0), (SEED, 12345), (u64::MAX, u64::MAX - 3)] {
            for n in [1, 7, 33, 4096, 100_003] {
                for (lo, hi) in [(0.0, 1.0), (-2.0, 3.0), (1e-3, 7.5)] {
                    let want = uniforms(&cpu, n, seed, offset, lo, hi);
                    let got = uniforms(&gpu, n, seed, offset, lo, hi);
                    let same = |(g, w): (&f32, &f32)| g.to_bits() == w.to_bits();
                    if let Some(i) = got.iter().zip(&want).position(|p| !same(p)) {
                        panic!(
                            "uniform({lo}, {hi}) n={n} seed={seed:x} offset={offset}: element {i} \
                             is {} on wgpu, {} on the CPU",
                            got[i], want[i]
                        );
                    }
                }
                let want = normals(&cpu, n, seed, offset);
                let got = normals(&gpu, n, seed, offset);
                let what = format!("normal n={n} seed={seed:x} offset={offset}");
                let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
                let rtol = 16.0 * f32::EPSILON as f64;
                common::assert_close(&what, &got, &want, 0.0, rtol);
            }
        }
    }
}
