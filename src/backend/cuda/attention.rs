//! attention: flash-style multi-head attention forward and backward (`kernels/attention.cu`).

use cudarc::driver::LaunchConfig;

use super::context::{n32, opt, Arg, CudaBuffer};
use super::CudaBackend;
use crate::backend::kernels::AttentionKernels;
use crate::backend::Attention;
use crate::error::{Error, Result};

/// Threads per block.
const T: u32 = 128;

/// Launch geometry shared by the forward and backward kernels (kernels/README.md).
struct Geometry {
    /// Entry points for 4 or 8 elements per thread.
    fwd: &'static str,
    bwd: &'static str,
    /// Threads per query row.
    g: u32,
    /// Key/query tile, keeping shared memory within 48 KiB.
    kt: u32,
    pitch: u32,
    /// Blocks per (batch, head).
    tiles: u32,
}

fn geometry(p: &Attention) -> Result<Geometry> {
    if p.head_dim > 256 {
        return Err(Error::Invalid(format!(
            "cuda attention: head_dim {} exceeds the kernel's 256",
            p.head_dim
        )));
    }
    let hd = p.head_dim as u32;
    let (fwd, bwd, per) = if hd <= 4 {
        ("attention_fwd_p4", "attention_bwd_p4", 4)
    } else {
        ("attention_fwd_p8", "attention_bwd_p8", 8)
    };
    let g = hd.div_ceil(per).next_power_of_two();
    let pitch = g * per;
    Ok(Geometry {
        fwd,
        bwd,
        g,
        kt: (12288 / (2 * pitch + 2)).min(64),
        pitch,
        tiles: n32(p.tokens)?.div_ceil(T / g),
    })
}

fn blocks(p: &Attention, geo: &Geometry, copies: u64) -> Result<u32> {
    let n = copies * (p.batch * p.heads) as u64 * geo.tiles as u64;
    u32::try_from(n)
        .ok()
        .filter(|&n| n < 1 << 31)
        .ok_or_else(|| Error::Invalid(format!("cuda attention: {n} blocks exceed the grid")))
}

impl AttentionKernels for CudaBackend {
    fn attention_fwd(
        &self, p: &Attention, qkv: &CudaBuffer, mask: Option<&CudaBuffer>,
        [out, lse]: [&mut CudaBuffer; 2],
    ) -> Result<()> {
        let g = &self.gpu;
        if p.batch * p.tokens == 0 {
            return Ok(());
        }
        n32(qkv.len())?;
        let geo = geometry(p)?;
        let args = [
            qkv.arg(),
            opt(mask),
            out.arg(),
            lse.arg(),
            Arg::U(n32(p.tokens)?),
            Arg::U(n32(p.heads)?),
            Arg::U(n32(p.head_dim)?),
            Arg::F(p.scale),
            Arg::U(geo.g),
            Arg::U(geo.kt),
        ];
        let cfg = LaunchConfig {
            grid_dim: (blocks(p, &geo, 1)?, 1, 1),
            block_dim: (T, 1, 1),
            shared_mem_bytes: (2 * geo.kt * geo.pitch + geo.kt) * 4,
        };
        g.launch(geo.fwd, cfg, &args)
    }

    fn attention_bwd(
        &self, p: &Attention, qkv: &CudaBuffer, mask: Option<&CudaBuffer>,
        [out, lse, dout]: [&CudaBuffer; 3], dqkv: &mut CudaBuffer,
    ) -> Result<()> {
        let g = &self.gpu;
        if p.batch * p.tokens == 0 {
            return Ok(());
        }
        n32(qkv.len())?;
        let geo = geometry(p)?;
        let (b, n, h, hd) = (n32(p.batch)?, n32(p.tokens)?, n32(p.heads)?, n32(p.head_dim)?);
        let rows = n32(p.batch * p.heads * p.tokens)?;
        // `delta` (the row sums of out · dout, [B, H, N]) lives in the workspace between the two.
        g.with_scratch(rows as usize * 4, |delta, _| {
            let prep = [out.arg(), dout.arg(), delta, Arg::U(b), Arg::U(n), Arg::U(h), Arg::U(hd)];
            g.launch_1d("attention_bwd_prep", rows, &prep)?;
            let args = [
                qkv.arg(),
                opt(mask),
                lse.arg(),
                delta,
                dout.arg(),
                dqkv.arg(),
                Arg::U(n),
                Arg::U(h),
                Arg::U(hd),
                Arg::F(p.scale),
                Arg::U(geo.g),
                Arg::U(geo.kt),
            ];
            // The first half of the grid writes the Q columns, the second K and V.
            let cfg = LaunchConfig {
                grid_dim: (blocks(p, &geo, 2)?, 1, 1),
                block_dim: (T, 1, 1),
                shared_mem_bytes: (2 * geo.kt * geo.pitch + 2 * geo.kt) * 4,
            };
            g.launch(geo.bwd, cfg, &args)
        })
    }
}
