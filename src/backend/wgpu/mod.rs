//! The wgpu backend: every kernel of the contract in WGSL (`shaders/*.wgsl`), run on any
//! Vulkan, Metal or DX12 adapter.
//!
//! This module checks arguments (with the shared [`check`] functions), unwraps buffers and
//! hands each kernel to the file of its family (same stems as `shaders/` and
//! `src/backend/cpu/`), which only knows launch geometry. `context` owns the device, the
//! pipeline cache, the buffer pool and the pending command encoder.

mod attention;
mod context;
mod elementwise;
mod embedding;
mod flow;
mod loss;
mod matmul;
mod memory;
mod norm;
mod ode;
mod optim;
mod random;

pub use context::WgpuBuffer;

use super::{
    check, expect_len, AdamW, Attention, Backend, Buffer, CopyCols, DType, Gemm, LayerNorm,
};
use crate::error::{Error, Result};
use context::Gpu;

/// The wgpu backend on one adapter.
pub struct WgpuBackend {
    gpu: Gpu,
}

/// What the adapters of this machine are, best first, as `(name, is a CPU-type adapter)`.
pub fn adapters() -> Vec<(String, bool)> {
    context::adapters()
        .into_iter()
        .map(|i| {
            (
                format!("{} ({:?}, {:?})", i.name, i.device_type, i.backend),
                i.device_type == ::wgpu::DeviceType::Cpu,
            )
        })
        .collect()
}

impl WgpuBackend {
    /// Opens the best adapter. A CPU-type adapter (such as lavapipe) is taken only when
    /// `allow_cpu`, since the CPU backend beats it on the same cores.
    pub fn new(allow_cpu: bool) -> Result<Self> {
        Ok(WgpuBackend {
            gpu: Gpu::open(allow_cpu)?,
        })
    }
}

super::gpu_backend::gpu_backend!(WgpuBackend, Wgpu, WgpuBuffer, "wgpu", "wgpu");
