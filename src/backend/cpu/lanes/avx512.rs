//! [`Lanes`] as one AVX-512 register (sixteen lanes), for CPUs with AVX-512F.
use super::Lanes;
use std::arch::x86_64::*;

/// One AVX-512 register. Only functions compiled with `avx512f` enabled, and entered after
/// checking the CPU for it, use this type: that is the safety argument of every `unsafe`
/// below.
#[derive(Clone, Copy)]
pub struct Avx512(__m512);

impl Lanes for Avx512 {
    const N: usize = 16;

    #[inline(always)]
    fn splat(x: f32) -> Self {
        Avx512(unsafe { _mm512_set1_ps(x) })
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        let s = &s[..16];
        // SAFETY: `s` holds 16 floats; the load needs no alignment.
        Avx512(unsafe { _mm512_loadu_ps(s.as_ptr()) })
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        let s = &mut s[..16];
        // SAFETY: `s` holds 16 floats; the store needs no alignment.
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Avx512(unsafe { _mm512_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Avx512(unsafe { _mm512_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        Avx512(unsafe { _mm512_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        Avx512(unsafe { _mm512_div_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        Avx512(unsafe { _mm512_fmadd_ps(self.0, a.0, b.0) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        Avx512(unsafe { _mm512_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        Avx512(unsafe { _mm512_min_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn round(self) -> Self {
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        Avx512(unsafe { _mm512_roundscale_ps::<NEAREST>(self.0) })
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        Avx512(unsafe {
            let n = _mm512_add_epi32(_mm512_cvtps_epi32(self.0), _mm512_set1_epi32(127));
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(n))
        })
    }
    #[inline(always)]
    fn mul_pow2i(self, n: Self) -> Self {
        // One scaling instruction, zeroed where n = -127 (as 2^-127 is 0 in `pow2i`); a NaN
        // is kept (the comparison is true for unordered lanes).
        Avx512(unsafe {
            let keep = _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(n.0, _mm512_set1_ps(-127.0));
            _mm512_maskz_scalef_ps(keep, self.0, n.0)
        })
    }
    #[inline(always)]
    fn frexp(self) -> (Self, Self) {
        unsafe {
            let m = _mm512_getmant_ps::<_MM_MANT_NORM_1_2, _MM_MANT_SIGN_SRC>(self.0);
            (Avx512(m), Avx512(_mm512_getexp_ps(self.0)))
        }
    }
}
