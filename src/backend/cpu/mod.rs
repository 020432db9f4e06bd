//! The CPU backend: the reference for the other backends and the default without a GPU.
//!
//! Each kernel family lives in its own file as plain functions over slices (same stems as
//! `kernels/*.cu` and `shaders/*.wgsl`), followed by that family's kernel trait, which only
//! takes the slices out of the buffers. Parallelism comes from rayon; GEMM from the `gemm`
//! crate.

mod attention;
mod elementwise;
mod embedding;
mod flow;
mod lanes;
mod loss;
mod matmul;
mod matmul_bf16;
mod memory;
mod norm;
mod ode;
mod optim;
pub(crate) mod random;

use super::kernels::Storage;
use super::{Buffer, DType};
use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};

/// Host memory behind a CPU [`Buffer`]: 32-bit words, read as f32 or u32 by the dtype the
/// checked layer has verified.
#[derive(Clone, Debug)]
pub struct CpuBuffer {
    dtype: DType,
    words: Vec<u32>,
}

impl CpuBuffer {
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn f32(&self) -> &[f32] {
        bytemuck::cast_slice(&self.words)
    }

    fn f32_mut(&mut self) -> &mut [f32] {
        bytemuck::cast_slice_mut(&mut self.words)
    }

    fn u32(&self) -> &[u32] {
        &self.words
    }
}

/// The CPU backend. Scratch space lives in thread-local pools inside the kernels; the only
/// state is a count of allocations.
#[derive(Debug, Default)]
pub struct CpuBackend {
    allocations: AtomicU64,
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend::default()
    }

    fn counted(&self, dtype: DType, words: Vec<u32>) -> CpuBuffer {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        CpuBuffer { dtype, words }
    }
}

impl Storage for CpuBackend {
    type Buf = CpuBuffer;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device_name(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn buffers_allocated(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }

    fn wrap(buf: CpuBuffer) -> Buffer {
        Buffer::Cpu(buf)
    }

    fn unwrap(buf: &Buffer) -> Option<&CpuBuffer> {
        match buf {
            Buffer::Cpu(b) => Some(b),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    fn unwrap_mut(buf: &mut Buffer) -> Option<&mut CpuBuffer> {
        match buf {
            Buffer::Cpu(b) => Some(b),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    fn host_u32(buf: &CpuBuffer) -> Option<&[u32]> {
        Some(buf.u32())
    }

    fn alloc(&self, dtype: DType, len: usize) -> Result<CpuBuffer> {
        Ok(self.counted(dtype, vec![0; len]))
    }

    fn upload(&self, dtype: DType, data: &[u8]) -> Result<CpuBuffer> {
        Ok(self.counted(dtype, bytemuck::pod_collect_to_vec(data)))
    }

    fn write(&self, dst: &mut CpuBuffer, data: &[u8]) -> Result<()> {
        bytemuck::cast_slice_mut(&mut dst.words).copy_from_slice(data);
        Ok(())
    }

    fn read<T: bytemuck::Pod>(&self, src: &CpuBuffer) -> Result<Vec<T>> {
        Ok(bytemuck::cast_slice(&src.words).to_vec())
    }

    fn copy(
        &self, src: &CpuBuffer, src_offset: usize, dst: &mut CpuBuffer, dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        memory::copy(
            &src.words[src_offset..src_offset + len],
            &mut dst.words[dst_offset..dst_offset + len],
        );
        Ok(())
    }
}
