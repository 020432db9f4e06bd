//! The wgpu backend: every kernel of the contract in WGSL (`shaders/*.wgsl`), run on any
//! Vulkan, Metal or DX12 adapter.
//!
//! Each kernel family implements its kernel trait in its own file (same stems as `shaders/` and
//! `src/backend/cpu/`), which knows only launch geometry: the arguments arrive checked. `context` owns the device, the
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

use super::kernels::Storage;
use super::{Buffer, DType};
use crate::error::Result;
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
        Ok(WgpuBackend { gpu: Gpu::open(allow_cpu)? })
    }
}

impl Storage for WgpuBackend {
    type Buf = WgpuBuffer;

    fn name(&self) -> &'static str {
        "wgpu"
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

    fn wrap(buf: WgpuBuffer) -> Buffer {
        Buffer::Wgpu(buf)
    }

    fn unwrap(buf: &Buffer) -> Option<&WgpuBuffer> {
        match buf {
            Buffer::Wgpu(b) => Some(b),
            _ => None,
        }
    }

    fn unwrap_mut(buf: &mut Buffer) -> Option<&mut WgpuBuffer> {
        match buf {
            Buffer::Wgpu(b) => Some(b),
            _ => None,
        }
    }

    fn alloc(&self, dtype: DType, len: usize) -> Result<WgpuBuffer> {
        self.gpu.alloc(dtype, len)
    }

    fn upload(&self, dtype: DType, data: &[u8]) -> Result<WgpuBuffer> {
        self.gpu.upload(dtype, data)
    }

    fn write(&self, dst: &mut WgpuBuffer, data: &[u8]) -> Result<()> {
        self.gpu.write(dst, data)
    }

    fn read<T: bytemuck::Pod>(&self, src: &WgpuBuffer) -> Result<Vec<T>> {
        self.gpu.read(src)
    }

    fn copy(
        &self, src: &WgpuBuffer, src_offset: usize, dst: &mut WgpuBuffer, dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        let bytes = |elements: usize| elements as u64 * 4;
        let (from, to) = (bytes(src_offset), bytes(dst_offset));
        self.gpu.copy(src, from, dst, to, bytes(len))
    }
}
