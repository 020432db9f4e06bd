//! lanes: a vector of f32 lanes, the operations the CPU kernels need on it, and the
//! exponential and logarithm built from those operations.
//!
//! A kernel is written once over [`Lanes`] and compiled for each implementation: [`Portable`]
//! (plain arrays, any CPU), `Avx2` (AVX2 with FMA) and `Avx512` (AVX-512F), the last two chosen
//! at run time. Every lane runs the same sequence of operations in each implementation, so the
//! two fused ones agree bit for bit wherever a kernel's order does not depend on the width;
//! the portable one differs in the last bits (unfused multiply-adds).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(target_arch = "x86_64")]
pub use avx2::Avx2;
#[cfg(target_arch = "x86_64")]
pub use avx512::Avx512;

/// Whether the CPU has the x86 feature named `feature` (one of those the builds use).
#[cfg(target_arch = "x86_64")]
pub fn cpu_has(feature: &str) -> bool {
    match feature {
        "avx2" => is_x86_feature_detected!("avx2"),
        "fma" => is_x86_feature_detected!("fma"),
        "avx512f" => is_x86_feature_detected!("avx512f"),
        "avx512bf16" => is_x86_feature_detected!("avx512bf16"),
        _ => false,
    }
}

/// Runs `f` compiled for the widest vector unit the CPU has (AVX-512F, AVX2 with FMA, else the
/// baseline target), for kernels written as plain loops that the compiler vectorises: `f` and
/// what it calls must be `#[inline(always)]` to be compiled into each build. Rust never fuses a
/// multiply and an add by itself, so the builds agree bit for bit.
#[inline(always)]
pub fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if cpu_has("avx512f") {
            // SAFETY: the CPU has the feature the function was compiled for.
            return unsafe { avx512(f) };
        }
        if cpu_has("avx2") && cpu_has("fma") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// A vector of [`Lanes::N`] f32.
pub trait Lanes: Copy {
    /// The number of lanes.
    const N: usize;

    fn splat(x: f32) -> Self;
    /// The first `N` elements of `s`.
    fn load(s: &[f32]) -> Self;
    /// Into the first `N` elements of `s`.
    fn store(self, s: &mut [f32]);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// `self · a + b`: fused (one rounding) where the CPU has FMA.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// `self > o ? self : o` per lane (x86's rule: NaN in `self` gives `o`).
    fn max(self, o: Self) -> Self;
    /// `self < o ? self : o` per lane.
    fn min(self, o: Self) -> Self;
    /// Rounds to the nearest integer, ties to even (for |x| < 2^22).
    fn round(self) -> Self;
    /// `2^n` for lanes holding integers `-127 <= n <= 128` (`n = -127` gives +0, 128 gives
    /// +inf).
    fn pow2i(self) -> Self;
    /// `self · 2^n` for lanes `n` holding integers `-127 <= n <= 127` (`n = -127` gives 0),
    /// rounded once.
    #[inline(always)]
    fn mul_pow2i(self, n: Self) -> Self {
        self.mul(n.pow2i())
    }
    /// `(m, e)` with `self = m · 2^e`, `1 <= m < 2`, `e` an integer, for positive normal lanes.
    fn frexp(self) -> (Self, Self);
}

/// Eight lanes that also add across lanes: the builds the attention backward runs on, whose
/// blocks of keys are laid out for eight.
pub trait Horizontal: Lanes {
    /// The lanes of each of four vectors added in the tree
    /// `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`.
    fn totals4(v: [Self; 4]) -> [f32; 4];
}

/// `2^x` per lane within 2 ulp, as a handful of vector operations (libm's `exp2f` is a call per
/// element). Results below the normal range (x < -126) are approximate and become exactly 0
/// from x = -126.5 on, -inf included; above 128 the result is +inf, and NaN stays NaN.
#[inline(always)]
pub fn exp2<L: Lanes>(x: L) -> L {
    // The constant goes first: a NaN in `x` then passes through.
    let x = L::splat(128.0).min(L::splat(-127.0).max(x));
    let n = x.round();
    exp2_poly(x.sub(n)).mul(n.pow2i())
}

/// `2^x` per lane for `x <= 0` (-inf included; NaN stays NaN), as [`exp2`] gives it, in fewer
/// operations: a softmax's exponentials, whose arguments are at most 0.
#[inline(always)]
pub fn exp2_nonpositive<L: Lanes>(x: L) -> L {
    let x = L::splat(-127.0).max(x);
    let n = x.round();
    exp2_poly(x.sub(n)).mul_pow2i(n)
}

/// `2^r` for `|r| <= 1/2`.
#[inline(always)]
fn exp2_poly<L: Lanes>(r: L) -> L {
    // Cephes' exp2f polynomial, 2^r ≈ 1 + Σ C[i] r^(i+1) on |r| ≤ 1/2.
    const C: [f32; 6] = [
        6.931_472e-1,
        2.402_264_8e-1,
        5.550_332_5e-2,
        9.618_437e-3,
        1.339_887_4e-3,
        1.535_336_2e-4,
    ];
    // Estrin's scheme: short chains side by side, since the latency of this chain is what
    // limits the softmax loops.
    let r2 = r.mul(r);
    let lo = r.mul_add(L::splat(C[0]), L::splat(1.0));
    let mid = r.mul_add(L::splat(C[2]), L::splat(C[1]));
    let hi = r2.mul_add(L::splat(C[5]), r.mul_add(L::splat(C[4]), L::splat(C[3])));
    r2.mul(r2).mul_add(hi, r2.mul_add(mid, lo))
}

/// `ln x` per lane for positive normal `x`, within 4 ulp of `max(|ln x|, 1)`: a softmax's
/// log-sum-exp (whose sum is at least 1) without a libm call per element.
#[inline(always)]
pub fn ln<L: Lanes>(x: L) -> L {
    // x = m · 2^e and ln m = 2 atanh(z) = 2 Σ z^(2i+1) / (2i+1) with z = (m - 1)/(m + 1) in
    // [0, 1/3): eight terms leave a relative error below 2e-9.
    let (m, e) = x.frexp();
    let z = m.sub(L::splat(1.0)).div(m.add(L::splat(1.0)));
    let z2 = z.mul(z);
    let mut series = L::splat(1.0 / 15.0);
    for k in (0..7).rev() {
        series = series.mul_add(z2, L::splat(1.0 / (2 * k + 1) as f32));
    }
    let two_z = z.add(z);
    e.mul_add(L::splat(std::f32::consts::LN_2), two_z.mul(series))
}

/// Eight plain floats: the compiler vectorises what it can for the baseline target.
#[derive(Clone, Copy)]
pub struct Portable([f32; 8]);

impl Portable {
    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        Portable(std::array::from_fn(|l| f(self.0[l], o.0[l])))
    }
}

impl Lanes for Portable {
    const N: usize = 8;

    #[inline(always)]
    fn splat(x: f32) -> Self {
        Portable([x; 8])
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        Portable(s[..8].try_into().unwrap())
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        s[..8].copy_from_slice(&self.0);
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.zip(o, |a, b| a + b)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.zip(o, |a, b| a - b)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self.zip(o, |a, b| a * b)
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self.zip(o, |a, b| a / b)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        self.mul(a).add(b)
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        self.zip(o, |a, b| if a > b { a } else { b })
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        self.zip(o, |a, b| if a < b { a } else { b })
    }
    #[inline(always)]
    fn round(self) -> Self {
        // Adding 1.5 · 2^23 leaves no fraction bits, so the sum is rounded (to even).
        const SHIFT: f32 = 12_582_912.0;
        Portable(self.0.map(|x| (x + SHIFT) - SHIFT))
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        Portable(self.0.map(|n| f32::from_bits(((n as i32 + 127) << 23) as u32)))
    }
    #[inline(always)]
    fn frexp(self) -> (Self, Self) {
        let m = self.0.map(|x| f32::from_bits(x.to_bits() & 0x007f_ffff | 0x3f80_0000));
        let e = self.0.map(|x| ((x.to_bits() >> 23) as i32 - 127) as f32);
        (Portable(m), Portable(e))
    }
}

impl Horizontal for Portable {
    #[inline(always)]
    fn totals4(v: [Self; 4]) -> [f32; 4] {
        v.map(|v| {
            let [a, b, c, d, e, f, g, h] = v.0;
            ((a + b) + (c + d)) + ((e + f) + (g + h))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{exp2, exp2_nonpositive, ln, Lanes, Portable};

    /// `f` on `x` in vectors of `L` (`x.len()` a multiple of `L::N`).
    #[inline(always)]
    fn map<L: Lanes>(x: &[f32], f: impl Fn(L) -> L) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        for (o, x) in out.chunks_exact_mut(L::N).zip(x.chunks_exact(L::N)) {
            f(L::load(x)).store(o);
        }
        out
    }

    /// `$f` on `$x` by every lane implementation this CPU runs.
    macro_rules! on_every_build {
        ($f:ident, $x:expr) => {{
            let x: &[f32] = $x;
            let mut out = vec![map::<Portable>(x, $f)];
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2(x: &[f32]) -> Vec<f32> {
                    map::<super::Avx2>(x, $f)
                }
                #[target_feature(enable = "avx512f")]
                fn avx512(x: &[f32]) -> Vec<f32> {
                    map::<super::Avx512>(x, $f)
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features, checked above.
                    out.push(unsafe { avx2(x) });
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature, checked above.
                    out.push(unsafe { avx512(x) });
                }
            }
            out
        }};
    }

    /// An f32 unit in the last place at `x`'s binade.
    fn ulp(x: f64) -> f64 {
        let bits = (x.abs() as f32).to_bits();
        f32::from_bits(bits + 1) as f64 - f32::from_bits(bits) as f64
    }

    /// Units in the last place between `got` and the exact `want`, at `want`'s binade.
    fn ulps(got: f32, want: f64) -> f64 {
        (got as f64 - want).abs() / ulp(want)
    }

    #[test]
    fn exp2_is_within_two_ulp() {
        let x: Vec<f32> = (0..2_000_000).map(|i| -126.0 + 253.0 * i as f32 / 2e6).collect();
        for got in on_every_build!(exp2, &x) {
            let worst = got.iter().zip(&x).map(|(&g, &x)| ulps(g, (x as f64).exp2()));
            let worst = worst.fold(0.0, f64::max);
            assert!(worst <= 2.0, "worst error {worst} ulp");
        }
    }

    /// The softmax's exponential equals the general one, bit for bit, on every argument it takes.
    #[test]
    fn exp2_nonpositive_is_exp2() {
        let mut x: Vec<f32> = (0..400_000).map(|i| -130.0 + 130.0 * i as f32 / 4e5).collect();
        let edges = [0.0, -0.0, f32::NEG_INFINITY, -1e9, -126.5, -126.49, -127.0, f32::NAN];
        x.extend(edges);
        x.resize(x.len().next_multiple_of(16), 0.0);
        let (general, softmax) = (on_every_build!(exp2, &x), on_every_build!(exp2_nonpositive, &x));
        for (general, softmax) in general.iter().zip(&softmax) {
            for ((g, s), x) in general.iter().zip(softmax).zip(&x) {
                let same = g.to_bits() == s.to_bits() || g.is_nan() && s.is_nan();
                assert!(same, "2^{x}: {g} against {s}");
            }
        }
    }

    #[test]
    fn exp2_edges() {
        let mut x = [0.0; 16];
        x[..8].copy_from_slice(&[0.0, f32::NEG_INFINITY, -127.0, -1e9, 127.0, 1e9, f32::NAN, 1.0]);
        for got in on_every_build!(exp2, &x) {
            assert_eq!(got[..4], [1.0, 0.0, 0.0, 0.0]);
            assert_eq!((got[4], got[5], got[7]), (2f32.powi(127), f32::INFINITY, 2.0));
            assert!(got[6].is_nan());
        }
    }

    /// Over the whole positive normal range, and densely where a softmax's sums lie.
    #[test]
    fn ln_is_within_four_ulp_of_its_argument_scale() {
        let wide = (0..400_000).map(|i| f32::MIN_POSITIVE * 1.000_23f32.powi(i * 2));
        let wide = wide.take_while(|x| x.is_finite());
        let dense = (0..1_000_000).map(|i| 1.0 + i as f32 * 1e-3);
        let mut x: Vec<f32> = wide.chain(dense).collect();
        x.truncate(x.len() / 16 * 16);
        let builds = on_every_build!(ln, &x);
        assert!(!builds.is_empty());
        for got in builds {
            for (&g, &x) in got.iter().zip(&x) {
                let want = (x as f64).ln();
                // Near x = 1 the result is near 0: bound the error by an ulp of 1 there.
                let err = (g as f64 - want).abs() / ulp(want.abs().max(1.0));
                assert!(err <= 4.0, "ln({x}) = {g}, want {want}: {err} ulp");
            }
        }
        let exact = on_every_build!(ln, &[1.0; 16]);
        assert!(exact.iter().all(|v| v.iter().all(|&v| v == 0.0)));
    }
}
