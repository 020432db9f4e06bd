//! The driver calls of the CUDA context: allocation, host copies, waits, and running a queue of
//! launches, behind [`Raw`] so that the context's logic around them is tested without a GPU;
//! and each kernel's launch limits, read from the driver when the kernel is loaded.

use std::sync::{Arc, Mutex};

use cudarc::driver::{result, sys, CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError};

use super::context::{driver, lock};
use super::graph::{CudaDriver, GraphStats, Graphs, Launch};
use super::limits::{self, KernelLimits};
use crate::error::Result;

/// One device allocation: its address, and the cudarc slice that frees it when dropped (none
/// from a driver that only records).
pub(super) struct Block {
    pub _slice: Option<CudaSlice<u8>>,
    pub ptr: u64,
}

/// The driver calls the context makes, behind a trait so that what the context does around
/// them (binding the context first, sending the queue before a copy, checking every launch
/// against its kernel's limits) is tested on any machine with a driver that only records.
/// [`CudaRaw`] is the real one.
pub(super) trait Raw: Send + Sync {
    /// Makes the context current on the calling thread; every other call needs it.
    fn bind(&self) -> Result<()>;
    fn alloc(&self, bytes: usize) -> std::result::Result<Block, DriverError>;
    /// A pageable host-to-device copy after the work already sent.
    fn htod(&self, dst: u64, data: &[u8]) -> Result<()>;
    /// A device-to-host copy after the work already sent; complete after `synchronize`.
    fn dtoh(&self, src: u64, out: &mut [u8]) -> Result<()>;
    fn synchronize(&self) -> Result<()>;
    /// Runs a queue in order, as a graph where one fits.
    fn run(&self, queue: Vec<Launch>) -> Result<()>;
    /// Whether graphs are on, and what the graph cache has done.
    fn graphs(&self) -> (bool, GraphStats);
    /// Free and total device memory, in bytes.
    fn mem_info(&self) -> Option<(usize, usize)>;
}

/// The real driver. Its fields drop in declaration order, after [`Gpu`]'s `Drop` has waited for
/// the stream: the graph executables first, then the modules their nodes launch, then the
/// stream.
pub(super) struct CudaRaw {
    pub graphs: Mutex<Graphs<CudaDriver>>,
    /// Kept so that their modules stay loaded.
    pub _functions: Vec<CudaFunction>,
    pub stream: Arc<CudaStream>,
}

impl Raw for CudaRaw {
    fn bind(&self) -> Result<()> {
        self.stream.context().bind_to_thread().map_err(|e| driver("binding the context", e))
    }

    fn alloc(&self, bytes: usize) -> std::result::Result<Block, DriverError> {
        // Safety: the memory is zeroed or overwritten before it is read (alloc / upload).
        let slice = unsafe { self.stream.alloc::<u8>(bytes) }?;
        let (ptr, _) = slice.device_ptr(&self.stream);
        Ok(Block { _slice: Some(slice), ptr })
    }

    fn htod(&self, dst: u64, data: &[u8]) -> Result<()> {
        unsafe { result::memcpy_htod_async(dst, data, self.stream.cu_stream()) }
            .map_err(|e| driver("copying to the device", e))
    }

    fn dtoh(&self, src: u64, out: &mut [u8]) -> Result<()> {
        unsafe { result::memcpy_dtoh_async(out, src, self.stream.cu_stream()) }
            .map_err(|e| driver("copying from the device", e))
    }

    fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| driver("waiting for the device", e))
    }

    fn run(&self, queue: Vec<Launch>) -> Result<()> {
        lock(&self.graphs).run(queue)
    }

    fn graphs(&self) -> (bool, GraphStats) {
        let g = lock(&self.graphs);
        (g.enabled(), g.stats())
    }

    fn mem_info(&self) -> Option<(usize, usize)> {
        self.stream.context().mem_get_info().ok()
    }
}

/// A loaded kernel's limits as the driver reports them (threads per block after its register
/// use, static shared memory as ptxas laid it out), opting in to more dynamic shared memory
/// where [`limits::opt_in`] asks for it.
pub(super) fn kernel_limits(name: &str, func: &CudaFunction) -> Result<KernelLimits> {
    use sys::CUfunction_attribute as A;
    let attr = |a, what: &str| {
        func.get_attribute(a).map_err(|e| driver(&format!("{what} of kernel {name}"), e))
    };
    let threads = attr(A::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, "threads per block")?;
    let shared = attr(A::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, "static shared memory")?;
    let opt_in = limits::opt_in(name);
    if let Some(bytes) = opt_in {
        func.set_attribute(A::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes as i32)
            .map_err(|e| {
                driver(
                    &format!("letting kernel {name} have {bytes} bytes of dynamic shared memory"),
                    e,
                )
            })?;
    }
    Ok(KernelLimits::new(threads as u32, shared as u32, opt_in))
}
