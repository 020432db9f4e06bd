//! The CUDA backend: every kernel of the contract in hand-written CUDA C (`kernels/*.cu`),
//! compiled by `build.rs` into fatbins embedded in the binary and launched through `cudarc`,
//! which loads the NVIDIA driver at run time (the binary needs no CUDA library to start).
//!
//! This module checks arguments (with the shared [`check`] functions), unwraps buffers and
//! hands each kernel to the file of its family (same stems as `kernels/` and
//! `src/backend/cpu/`), which only knows launch geometry. `context` owns the device, the
//! loaded kernels, the buffer pool and the reduction scratch.

mod attention;
mod context;
mod elementwise;
mod embedding;
mod flow;
mod graph;
mod loss;
mod matmul;
mod memory;
mod norm;
mod ode;
mod optim;
mod random;

pub use context::{CudaBuffer, KERNELS_BUILT};
pub use graph::GraphStats;

use super::{
    check, expect_len, AdamW, Attention, Backend, Buffer, CopyCols, DType, Gemm, LayerNorm,
};
use crate::error::{Error, Result};
use context::Gpu;

/// Why the backend is missing from a binary built without nvcc.
pub(crate) const NO_KERNELS: &str = "this binary was built without CUDA kernels: install nvcc \
    (python3 -m pip install nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-crt==13.0.88) and rebuild";

/// The CUDA backend on device 0.
pub struct CudaBackend {
    gpu: Gpu,
}

impl CudaBackend {
    /// Opens device 0. Every way this can fail (no driver, no device, no kernels in this
    /// binary, a driver too old for them) is a [`Error::BackendUnavailable`] or
    /// [`Error::Device`] naming what is missing; cudarc's panic on a missing libcuda is avoided
    /// by probing for the library first, and caught as a last resort.
    pub fn new() -> Result<Self> {
        let unavailable = |reason: &str| Error::BackendUnavailable {
            name: "cuda".into(),
            reason: reason.into(),
        };
        // Safety: only tries to load the library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(unavailable(
                "no NVIDIA driver (libcuda) found; install the NVIDIA driver, or use \
                 --backend wgpu or cpu",
            ));
        }
        match std::panic::catch_unwind(Gpu::open) {
            Ok(gpu) => Ok(CudaBackend { gpu: gpu? }),
            Err(_) => Err(unavailable(
                "the CUDA driver failed while starting (cudarc panicked)",
            )),
        }
    }
}

impl CudaBackend {
    /// What the CUDA graph cache has done so far: graphs built and launched, nodes updated,
    /// kernels launched one at a time.
    pub fn graph_stats(&self) -> GraphStats {
        self.gpu.graph_stats()
    }
}

super::gpu_backend::gpu_backend!(CudaBackend, Cuda, CudaBuffer, "cuda", "CUDA");
