//! matmul: batched GEMM with epilogue, bias gradient (`shaders/matmul.wgsl`).
//!
//! GEMM runs one workgroup per 64×64 tile of C. When C has too few tiles to keep a device busy
//! and K is long (weight gradients: K = tokens), K is cut into pieces whose size depends on
//! the shape alone; their products go to scratch and are added in piece order, so results are
//! bit-identical run to run.

use super::context::{groups, Kernel, WgpuBuffer};
use super::WgpuBackend;
use crate::backend::kernels::MatmulKernels;
use crate::backend::{DType, Epilogue, Gemm};
use crate::error::{Error, Result};

const fn k(entry: &'static str) -> Kernel {
    Kernel { shader: "matmul", entry }
}

/// Rows and columns of C per workgroup (`TILE` in the shader).
const TILE: usize = 64;
/// K per staged slice (`BK`); pieces of a split K are multiples of it.
const BK: usize = 16;
/// Workgroups a split aims for: enough for a large GPU.
const SPLIT_TARGET: usize = 256;
/// Shortest piece of K worth a workgroup of its own.
const MIN_PIECE: usize = 256;
/// Rows per workgroup of `col_sums` (`CHUNK`).
const CHUNK: usize = 256;
/// Columns per workgroup of `col_sums`.
const COL_BLOCK: usize = 64;

fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Shape(format!("{what} = {v} is too large for wgpu")))
}

/// (piece length, pieces) for K: one piece unless C has fewer than half the target workgroups.
fn split(tiles: usize, k: usize) -> (usize, usize) {
    if tiles >= SPLIT_TARGET / 2 || k < 2 * MIN_PIECE {
        return (k, 1);
    }
    let want = (SPLIT_TARGET / tiles).min(k / MIN_PIECE);
    let piece = k.div_ceil(want).next_multiple_of(BK);
    (piece, k.div_ceil(piece))
}

impl MatmulKernels for WgpuBackend {
    fn gemm(
        &self, p: &Gemm, [a, b]: [&WgpuBuffer; 2], bias: Option<&WgpuBuffer>, c: &mut WgpuBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        if p.batch == 0 || p.m == 0 || p.n == 0 {
            return Ok(());
        }
        let (tiles_m, tiles_n) = (p.m.div_ceil(TILE), p.n.div_ceil(TILE));
        let tiles = tiles_m * tiles_n * p.batch;
        let (piece, pieces) = split(tiles, p.k);
        let flags = p.trans_a as u32
            | (p.trans_b as u32) << 1
            | ((p.beta != 0.0) as u32) << 2
            | ((p.epilogue != Epilogue::None) as u32) << 3
            | ((p.epilogue == Epilogue::BiasRelu) as u32) << 4;
        let wgs = u32_of("gemm workgroups", tiles * pieces)?;
        let params = [
            u32_of("m", p.m)?,
            u32_of("n", p.n)?,
            u32_of("k", p.k)?,
            u32_of("batch", p.batch)?,
            tiles_m as u32,
            tiles_n as u32,
            wgs,
            flags,
            u32_of("stride_a", p.stride_a)?,
            u32_of("stride_b", p.stride_b)?,
            u32_of("stride_c", p.stride_c)?,
            p.alpha.to_bits(),
            p.beta.to_bits(),
            piece as u32,
            pieces as u32,
        ];
        let placeholder;
        let bias = match bias {
            Some(b) => b,
            None => {
                placeholder = g.placeholder()?;
                &placeholder
            }
        };
        if pieces == 1 {
            return g.dispatch(k("gemm"), &params, &[a, b, bias, c], wgs);
        }
        let outputs = p.batch * p.m * p.n;
        let scratch = g.alloc(DType::F32, outputs * pieces)?;
        g.dispatch(k("gemm_split"), &params, &[a, b, &scratch], wgs)?;
        g.dispatch(k("gemm_reduce"), &params, &[&scratch, bias, c], groups(outputs, 256)?)
    }

    /// Column sums by repeated `col_sums` passes, each cutting the rows to one per chunk of
    /// `CHUNK`, through scratch until one chunk is left; that pass writes (or adds into) `db`.
    fn bias_grad(
        &self, dy: &WgpuBuffer, (rows, cols): (usize, usize), db: &mut WgpuBuffer, accumulate: bool,
    ) -> Result<()> {
        let g = &self.gpu;
        if cols == 0 {
            return Ok(());
        }
        let col_blocks = cols.div_ceil(COL_BLOCK);
        let mut rows = rows;
        let mut held: Option<WgpuBuffer> = None;
        loop {
            // At least one chunk, so that zero rows still write zero sums.
            let chunks = rows.div_ceil(CHUNK).max(1);
            let last = chunks == 1;
            let out = if last { None } else { Some(g.alloc(DType::F32, chunks * cols)?) };
            let src = held.as_ref().unwrap_or(dy);
            let dst = out.as_ref().unwrap_or(db);
            let wgs = u32_of("bias_grad workgroups", col_blocks * chunks)?;
            let params = [
                u32_of("rows", rows)?,
                u32_of("cols", cols)?,
                col_blocks as u32,
                wgs,
                (last && accumulate) as u32,
            ];
            g.dispatch(k("col_sums"), &params, &[src, dst], wgs)?;
            if last {
                return Ok(());
            }
            held = out;
            rows = chunks;
        }
    }
}
