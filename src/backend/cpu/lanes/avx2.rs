//! [`Lanes`] as one AVX register, for CPUs with AVX2 and FMA.
use super::{Horizontal, Lanes};
use std::arch::x86_64::*;

/// One AVX register. Only functions compiled with `avx2` and `fma` enabled, and entered after
/// checking the CPU for them, use this type: that is the safety argument of every `unsafe`
/// below.
#[derive(Clone, Copy)]
pub struct Avx2(__m256);

impl Lanes for Avx2 {
    const N: usize = 8;

    #[inline(always)]
    fn splat(x: f32) -> Self {
        Avx2(unsafe { _mm256_set1_ps(x) })
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        let s = &s[..8];
        // SAFETY: `s` holds 8 floats; the load needs no alignment.
        Avx2(unsafe { _mm256_loadu_ps(s.as_ptr()) })
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        let s = &mut s[..8];
        // SAFETY: `s` holds 8 floats; the store needs no alignment.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_div_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        Avx2(unsafe { _mm256_fmadd_ps(self.0, a.0, b.0) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        Avx2(unsafe { _mm256_min_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn round(self) -> Self {
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        Avx2(unsafe { _mm256_round_ps::<NEAREST>(self.0) })
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        Avx2(unsafe {
            let n = _mm256_add_epi32(_mm256_cvtps_epi32(self.0), _mm256_set1_epi32(127));
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(n))
        })
    }
    #[inline(always)]
    fn frexp(self) -> (Self, Self) {
        unsafe {
            let bits = _mm256_castps_si256(self.0);
            let m = _mm256_or_si256(
                _mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff)),
                _mm256_set1_epi32(0x3f80_0000),
            );
            let e = _mm256_sub_epi32(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(127));
            (Avx2(_mm256_castsi256_ps(m)), Avx2(_mm256_cvtepi32_ps(e)))
        }
    }
}

impl Horizontal for Avx2 {
    #[inline(always)]
    fn totals4([a, b, c, d]: [Self; 4]) -> [f32; 4] {
        // Pairwise sums of the four vectors, in their halves; then the two halves: the tree
        // ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)), as the portable build's.
        unsafe {
            let pairs = _mm256_hadd_ps(_mm256_hadd_ps(a.0, b.0), _mm256_hadd_ps(c.0, d.0));
            let t = _mm_add_ps(_mm256_castps256_ps128(pairs), _mm256_extractf128_ps::<1>(pairs));
            let mut out = [0.0; 4];
            _mm_storeu_ps(out.as_mut_ptr(), t);
            out
        }
    }
}
