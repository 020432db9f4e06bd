//! matmul_bf16: the GEMM of `matmul` with both operands rounded to bfloat16 and the products
//! summed in f32 (`Precision::Bf16`), for sampling with a fixed-step solver.
//!
//! Why bf16: the forward GEMMs of sampling have a short inner dimension (the width, 64), so
//! they are bound by the multiply-adds, and AVX-512 BF16's `vdpbf16ps` does two of them per
//! f32 lane per instruction, twice the f32 rate. The product of two bf16 numbers is exact in
//! f32, so the only new error is the operands' rounding (relative 2⁻⁹).
//!
//! Layout: op(B) is packed once per batch into panels of 32 columns, each inner pair `(k, k+1)`
//! of a column side by side (the pair `vdpbf16ps` multiplies in one lane); op(A) is packed per
//! block of rows into bf16 rows of even length. An odd `K` is padded with a zero. A tile of
//! up to [`TILE_ROWS`] rows × 32 columns keeps its sums in registers over the whole `K`.
//!
//! Every lane adds its pair's products to its sum in one fixed order (see [`pair_dot`]), and
//! the portable build does the same, so the two builds agree bit for bit (tested where the CPU
//! has AVX-512 BF16).
use std::cell::RefCell;

use super::lanes::widest;
use super::matmul::{for_row_blocks, Layout};
use crate::backend::Gemm;

/// Columns per packed panel of B: two 16-lane vectors.
const PANEL: usize = 32;
/// Rows per register tile: 2 × 8 sums of 16 lanes, 2 vectors of B and a broadcast of A use 19
/// of the 32 vector registers, and 16 independent sums hide `vdpbf16ps`'s latency.
const TILE_ROWS: usize = 8;

thread_local! {
    /// The packed bf16 rows of A for the block a thread is working on.
    static PACKED_A: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// f32 → bf16, rounded to nearest, ties to even; NaN stays a (quiet) NaN. Branch-free integer
/// arithmetic, so that the packing loops vectorise.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    let rounded = (u + 0x7fff + ((u >> 16) & 1)) >> 16;
    let nan = u & 0x7fff_ffff > 0x7f80_0000;
    (if nan { (u >> 16) | 0x40 } else { rounded }) as u16
}

#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `acc + a₀b₀ + a₁b₁` in the order `vdpbf16ps` adds them: the odd element's product first.
/// Each product is exact in f32; each addition rounds.
#[inline(always)]
fn pair_dot(acc: f32, a: [u16; 2], b: [u16; 2]) -> f32 {
    let acc = acc + from_bf16(a[1]) * from_bf16(b[1]);
    acc + from_bf16(a[0]) * from_bf16(b[0])
}

/// op(B) (`k × n`, from `b` with the strides of `l`) as panels: element `(panel, pair, j, e)`
/// is `op(B)[2·pair + e, panel·32 + j]`, zero past `k` and `n`.
fn pack_b(l: &Layout, k: usize, n: usize, b: &[f32]) -> Vec<u16> {
    let pairs = k.div_ceil(2);
    let panels = n.div_ceil(PANEL);
    let mut out = vec![0u16; panels * pairs * PANEL * 2];
    for (panel, dst) in out.chunks_exact_mut(pairs * PANEL * 2).enumerate() {
        for (pair, dst) in dst.chunks_exact_mut(PANEL * 2).enumerate() {
            for kk in (2 * pair..k).take(2) {
                let e = kk - 2 * pair;
                for j in 0..PANEL.min(n - panel * PANEL) {
                    let col = panel * PANEL + j;
                    dst[2 * j + e] = to_bf16(b[kk * l.b_rs + col * l.b_cs]);
                }
            }
        }
    }
    out
}

/// `rows` rows of op(A) from `a` (strides of `l`), each `2·pairs` bf16 long, zero-padded.
fn pack_a(l: &Layout, rows: usize, k: usize, pairs: usize, a: &[f32], out: &mut Vec<u16>) {
    out.clear();
    out.resize(rows * 2 * pairs, 0);
    for (r, dst) in out.chunks_exact_mut(2 * pairs).enumerate() {
        if l.a_cs == 1 {
            let src = &a[r * l.a_rs..r * l.a_rs + k];
            widest(|| dst.iter_mut().zip(src).for_each(|(d, &x)| *d = to_bf16(x)));
        } else {
            for (kk, d) in dst[..k].iter_mut().enumerate() {
                *d = to_bf16(a[r * l.a_rs + kk * l.a_cs]);
            }
        }
    }
}

/// Where a tile's sums go: `c` row-major with `ldc` columns, `cols` ≤ 32 of them valid,
/// `c = alpha · sums + beta · c` (C is not read when beta is 0).
struct Out<'a> {
    c: &'a mut [f32],
    ldc: usize,
    cols: usize,
    alpha: f32,
    beta: f32,
}

impl Out<'_> {
    #[inline(always)]
    fn put(&mut self, r: usize, j: usize, sum: f32) {
        let c = &mut self.c[r * self.ldc + j];
        let scaled = self.alpha * sum;
        *c = if self.beta == 0.0 { scaled } else { self.beta.mul_add(*c, scaled) };
    }
}

/// One tile, portable: `rows` packed rows of A against one panel of B. A row's 32 sums advance
/// together, pair by pair, so the compiler vectorises across the columns (`widest`); each sum
/// still takes its pairs in order, as `vdpbf16ps` does.
fn tile_portable(a: &[u16], pairs: usize, rows: usize, panel: &[u16], out: &mut Out) {
    for r in 0..rows {
        let arow = &a[r * 2 * pairs..(r + 1) * 2 * pairs];
        let mut sums = [0.0f32; PANEL];
        widest(|| {
            for (ap, bp) in arow.chunks_exact(2).zip(panel.chunks_exact(2 * PANEL)) {
                for (sum, b) in sums.iter_mut().zip(bp.chunks_exact(2)) {
                    *sum = pair_dot(*sum, [ap[0], ap[1]], [b[0], b[1]]);
                }
            }
        });
        for (j, &sum) in sums.iter().enumerate().take(out.cols) {
            out.put(r, j, sum);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Out, PANEL};

    /// One tile of `R` rows with `vdpbf16ps`: `a` holds `R` packed rows, `panel` one panel.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX-512 BF16; `a` must hold `R · 2 · pairs` and `panel`
    /// `pairs · 64` elements.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn tile<const R: usize>(a: &[u16], pairs: usize, panel: &[u16], out: &mut Out) {
        debug_assert!(a.len() >= R * 2 * pairs && panel.len() >= pairs * 2 * PANEL);
        let mut sums = [[_mm512_setzero_ps(); 2]; R];
        let (ap, bp) = (a.as_ptr(), panel.as_ptr());
        for p in 0..pairs {
            // SAFETY: the lengths asserted above cover pair p of every row and the panel.
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(p * 64).cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(p * 64 + 32).cast()));
            for (r, s) in sums.iter_mut().enumerate() {
                let pair = ap.add(r * 2 * pairs + 2 * p).cast::<i32>().read_unaligned();
                let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                s[0] = _mm512_dpbf16_ps(s[0], a, b0);
                s[1] = _mm512_dpbf16_ps(s[1], a, b1);
            }
        }
        let (alpha, beta) = (_mm512_set1_ps(out.alpha), _mm512_set1_ps(out.beta));
        for (r, s) in sums.iter().enumerate() {
            for (h, &v) in s.iter().enumerate() {
                let valid = out.cols.saturating_sub(16 * h).min(16);
                if valid == 0 {
                    break;
                }
                let mask: __mmask16 = ((1u32 << valid) - 1) as __mmask16;
                // SAFETY: the tile's row r holds `cols` columns of C inside `out.c`; masked-off
                // lanes are neither read nor written.
                let c = out.c.as_mut_ptr().add(r * out.ldc + 16 * h);
                let scaled = _mm512_mul_ps(alpha, v);
                let value = if out.beta == 0.0 {
                    scaled
                } else {
                    _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask, c), scaled)
                };
                _mm512_mask_storeu_ps(c, mask, value);
            }
        }
    }
}

/// Whether this CPU runs the `vdpbf16ps` tiles.
fn has_bf16_units() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::lanes::cpu_has("avx512f") && super::lanes::cpu_has("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rows `rows` of packed A against every panel: tiles of eight rows, then one row at a time.
#[allow(clippy::too_many_arguments)]
fn block(
    a: &[u16], pairs: usize, rows: usize, packed_b: &[u16], n: usize, p: &Gemm, c: &mut [f32],
    fused: bool,
) {
    for (pi, panel) in packed_b.chunks_exact(pairs * 2 * PANEL).enumerate() {
        let j0 = pi * PANEL;
        let cols = PANEL.min(n - j0);
        let mut r0 = 0;
        while r0 < rows {
            let tr = if rows - r0 >= TILE_ROWS { TILE_ROWS } else { 1 };
            let arows = &a[r0 * 2 * pairs..(r0 + tr) * 2 * pairs];
            let mut out =
                Out { c: &mut c[r0 * n + j0..], ldc: n, cols, alpha: p.alpha, beta: p.beta };
            tile(arows, pairs, tr, panel, &mut out, fused);
            r0 += tr;
        }
    }
}

/// One tile of `rows` (eight or one) rows against one panel.
fn tile(a: &[u16], pairs: usize, rows: usize, panel: &[u16], out: &mut Out, fused: bool) {
    #[cfg(target_arch = "x86_64")]
    if fused {
        // SAFETY: `fused` is set only when the CPU has the features; `a` holds `rows` packed
        // rows and `panel` a whole panel.
        unsafe {
            if rows == TILE_ROWS {
                avx512::tile::<TILE_ROWS>(a, pairs, panel, out)
            } else {
                avx512::tile::<1>(a, pairs, panel, out)
            }
        }
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = fused;
    tile_portable(a, pairs, rows, panel, out)
}

/// See [`Gemm`]; `p.precision` is `Bf16`. The caller has checked the shapes.
pub fn gemm(p: &Gemm, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
    gemm_with(p, a, b, bias, c, true);
}

/// [`gemm`] with the tiles chosen by the caller: the portable ones, or (`fused`) the AVX-512
/// BF16 ones where the CPU has them.
pub(crate) fn gemm_with(
    p: &Gemm, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32], fused: bool,
) {
    let (n, k) = (p.n, p.k);
    if k == 0 {
        // Nothing is multiplied, so the precision does not matter.
        return super::matmul::gemm_f32(p, a, b, bias, c);
    }
    let fused = fused && has_bf16_units();
    let l = Layout::of(p);
    let pairs = k.div_ceil(2);
    // op(B) of each batch, packed once; a stride of 0 shares one.
    let batches = if p.stride_b == 0 { 1 } else { p.batch };
    let packed: Vec<Vec<u16>> =
        (0..batches).map(|bi| pack_b(&l, k, n, &b[bi * p.stride_b..])).collect();
    for_row_blocks(p, bias, c, |bi, row0, _lone, cblk| {
        let rows = cblk.len() / n;
        let a0 = bi * p.stride_a + row0 * l.a_rs;
        let mut packed_a = PACKED_A.take();
        pack_a(&l, rows, k, pairs, &a[a0..], &mut packed_a);
        let pb = &packed[if p.stride_b == 0 { 0 } else { bi }];
        block(&packed_a, pairs, rows, pb, n, p, cblk, fused);
        PACKED_A.set(packed_a);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Epilogue, Precision};

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even neighbour (1).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to the even one.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0 + 1e-6), 0x3f81);
        assert_eq!(to_bf16(-2.5), 0xc020);
        assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        // The largest finite f32 rounds up to infinity, as IEEE rounding does.
        assert_eq!(to_bf16(f32::MAX), 0x7f80);
    }

    /// The `vdpbf16ps` tiles and the portable ones give the same bits (where the CPU has
    /// AVX-512 BF16; elsewhere only the portable tiles exist).
    #[test]
    fn fused_and_portable_tiles_agree_bit_for_bit() {
        if !has_bf16_units() {
            eprintln!("no AVX-512 BF16 on this CPU: nothing to compare");
            return;
        }
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        };
        for (m, n, k, beta) in [(9, 33, 7, 0.0), (300, 192, 64, 1.0), (17, 65, 129, 0.5)] {
            let p = Gemm {
                alpha: 0.75,
                beta,
                epilogue: Epilogue::Bias,
                precision: Precision::Bf16,
                ..Gemm::new(m, n, k)
            };
            let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
            let bias: Vec<f32> = (0..n).map(|_| next()).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| next()).collect();
            let (mut fused, mut portable) = (c0.clone(), c0);
            gemm_with(&p, &a, &b, Some(&bias), &mut fused, true);
            gemm_with(&p, &a, &b, Some(&bias), &mut portable, false);
            let differ = fused.iter().zip(&portable).filter(|(x, y)| x.to_bits() != y.to_bits());
            assert_eq!(differ.count(), 0, "{m}×{n}×{k}");
        }
    }
}
