//! The CUDA backend: every kernel of the contract in hand-written CUDA C (`kernels/*.cu`),
//! compiled by `build.rs` into fatbins embedded in the binary and launched through `cudarc`,
//! which loads the NVIDIA driver at run time (the binary needs no CUDA library to start).
//!
//! Each kernel family implements its kernel trait in its own file (same stems as `kernels/` and
//! `src/backend/cpu/`), which knows only launch geometry: the arguments arrive checked. `context` owns the device, the
//! loaded kernels, the buffer pool and the reduction scratch; `raw` makes its driver calls and
//! `limits` checks every launch it queues. The `recorded` tests run all of it on a driver that
//! only records, so they need no GPU.

mod attention;
mod context;
mod elementwise;
mod embedding;
mod flow;
mod graph;
mod limits;
mod loss;
mod matmul;
mod memory;
mod norm;
mod ode;
mod optim;
mod random;
mod raw;
#[cfg(test)]
mod recorded;

pub use context::{CudaBuffer, KERNELS_BUILT};
pub use graph::GraphStats;

use super::kernels::Storage;
use super::{Buffer, DType};
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
        let unavailable =
            |reason: &str| Error::BackendUnavailable { name: "cuda".into(), reason: reason.into() };
        // Safety: only tries to load the library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(unavailable(
                "no NVIDIA driver (libcuda) found; install the NVIDIA driver, or use \
                 the wgpu or CPU backend",
            ));
        }
        match std::panic::catch_unwind(Gpu::open) {
            Ok(gpu) => Ok(CudaBackend { gpu: gpu? }),
            Err(_) => Err(unavailable("the CUDA driver failed while starting (cudarc panicked)")),
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

impl Storage for CudaBackend {
    type Buf = CudaBuffer;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device_name(&self) -> String {
        self.gpu.describe()
    }

    fn synchronize(&self) -> Result<()> {
        self.gpu.wait()
    }

    fn buffers_allocated(&self) -> u64 {
        self.gpu.buffers_created()
    }

    fn wrap(buf: CudaBuffer) -> Buffer {
        Buffer::Cuda(buf)
    }

    fn unwrap(buf: &Buffer) -> Option<&CudaBuffer> {
        match buf {
            Buffer::Cuda(b) => Some(b),
            _ => None,
        }
    }

    fn unwrap_mut(buf: &mut Buffer) -> Option<&mut CudaBuffer> {
        match buf {
            Buffer::Cuda(b) => Some(b),
            _ => None,
        }
    }

    fn alloc(&self, dtype: DType, len: usize) -> Result<CudaBuffer> {
        self.gpu.alloc(dtype, len)
    }

    fn upload(&self, dtype: DType, data: &[u8]) -> Result<CudaBuffer> {
        self.gpu.upload(dtype, data)
    }

    fn write(&self, dst: &mut CudaBuffer, data: &[u8]) -> Result<()> {
        self.gpu.write(dst, data)
    }

    fn read<T: bytemuck::Pod>(&self, src: &CudaBuffer) -> Result<Vec<T>> {
        self.gpu.read(src)
    }

    fn copy(
        &self, src: &CudaBuffer, src_offset: usize, dst: &mut CudaBuffer, dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        let bytes = |elements: usize| elements as u64 * 4;
        let (from, to) = (bytes(src_offset), bytes(dst_offset));
        self.gpu.copy(src, from, dst, to, bytes(len))
    }
}
