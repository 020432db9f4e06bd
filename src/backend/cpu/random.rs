//! random: counter-based Philox4x32-10, see `Backend::normal_fill` for the exact stream.
//!
//! Every element depends only on `(seed, offset, index)`, so the buffer is cut into chunks that
//! rayon fills independently: the chunking never changes a value.
use super::{CpuBackend, CpuBuffer};
use crate::backend::kernels::RandomKernels;
use crate::error::Result;
use rayon::prelude::*;

const MUL0: u32 = 0xD251_1F53;
const MUL1: u32 = 0xCD9E_8D57;
const WEYL0: u32 = 0x9E37_79B9;
const WEYL1: u32 = 0xBB67_AE85;

/// Elements per parallel task; a multiple of 4 so every task starts on a Philox block.
const CHUNK: usize = 1 << 14;

/// One Philox4x32-10 block: 4 output words for `counter` under `key`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(WEYL0), k[1].wrapping_add(WEYL1)];
        }
        let p0 = u64::from(MUL0) * u64::from(c[0]);
        let p1 = u64::from(MUL1) * u64::from(c[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The block that feeds elements `4·block .. 4·block + 4` of the stream for `(seed, offset)`.
fn block(seed: u64, offset: u64, block: usize) -> [u32; 4] {
    // The counter is a 128-bit integer, so `offset + block` carries instead of wrapping.
    let ctr = u128::from(offset) + block as u128;
    let words = [ctr as u32, (ctr >> 32) as u32, (ctr >> 64) as u32, 0];
    philox4x32_10(words, [seed as u32, (seed >> 32) as u32])
}

/// A word's top 24 bits as a uniform in (0, 1), in f32 arithmetic as every backend does it.
#[inline]
fn to_unit(w: u32) -> f32 {
    ((w >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0)
}

/// Box–Muller on one pair of uniforms.
#[inline]
fn box_muller(ua: f32, ub: f32) -> [f32; 2] {
    let r = (-2.0 * ua.ln()).sqrt();
    let (s, c) = (std::f32::consts::TAU * ub).sin_cos();
    [r * c, r * s]
}

/// Fills `dst` block by block with `f(block words)`, a partial block at the end included.
fn fill_blocks(dst: &mut [f32], seed: u64, offset: u64, f: impl Fn([u32; 4]) -> [f32; 4] + Sync) {
    let run = |first_block: usize, out: &mut [f32]| {
        for (j, quad) in out.chunks_mut(4).enumerate() {
            let vals = f(block(seed, offset, first_block + j));
            quad.copy_from_slice(&vals[..quad.len()]);
        }
    };
    if dst.len() <= CHUNK {
        run(0, dst);
    } else {
        dst.par_chunks_mut(CHUNK).enumerate().for_each(|(i, out)| run(i * CHUNK / 4, out));
    }
}

pub fn normal_fill(dst: &mut [f32], seed: u64, offset: u64) {
    fill_blocks(dst, seed, offset, |w| {
        let [n0, n1] = box_muller(to_unit(w[0]), to_unit(w[1]));
        let [n2, n3] = box_muller(to_unit(w[2]), to_unit(w[3]));
        [n0, n1, n2, n3]
    });
}

pub fn uniform_fill(dst: &mut [f32], seed: u64, offset: u64, lo: f32, hi: f32) {
    let width = hi - lo;
    fill_blocks(dst, seed, offset, |w| w.map(|w| lo + width * to_unit(w)));
}

impl RandomKernels for CpuBackend {
    fn normal_fill(&self, dst: &mut CpuBuffer, seed: u64, offset: u64) -> Result<()> {
        normal_fill(dst.f32_mut(), seed, offset);
        Ok(())
    }

    fn uniform_fill(
        &self, dst: &mut CpuBuffer, seed: u64, offset: u64, (lo, hi): (f32, f32),
    ) -> Result<()> {
        uniform_fill(dst.f32_mut(), seed, offset, lo, hi);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::philox4x32_10;

    #[test]
    fn random123_known_answers() {
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
            assert_eq!(philox4x32_10(ctr, key), want);
        }
    }
}
