//! The CUDA device: the context, the one stream every kernel goes on, the kernels loaded from
//! the embedded fatbins, the launch queue, the buffer pool, and the scratch of the
//! deterministic reductions.
//!
//! All work is stream-ordered on one stream and nothing here waits for the device except a
//! read-back and `synchronize`. Because there is one stream, cudarc's per-buffer event
//! tracking is turned off (it would record two events per buffer per launch) and kernels get
//! raw device pointers.
//!
//! Kernels are queued, not issued: the queue goes to the device at the next edge (a host
//! write, a read-back, a wait), where [`graph`](super::graph) runs a queue it has seen before
//! as one CUDA graph. Zeroing and device copies are kernels too, so a whole training step or
//! ODE solve is one queue. `TFMPE_CUDA_GRAPHS=0` runs every queue launch by launch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{sys, CudaContext, DriverError, LaunchConfig};

use super::graph::{CudaDriver, GraphStats, Graphs, Launch};
use super::limits::{self, KernelLimits};
use super::raw::{kernel_limits, Block, CudaRaw, Raw};
use crate::backend::DType;
use crate::error::{Error, Result};

#[cfg(tfmpe_cuda_kernels)]
include!(concat!(env!("OUT_DIR"), "/cuda_kernels.rs"));
#[cfg(not(tfmpe_cuda_kernels))]
const MODULES: &[(&str, &[u8])] = &[];

/// Every kernel of every file, loaded once when the device opens.
const ENTRIES: &[(&str, &[&str])] = &[
    (
        "attention",
        &[
            "attention_fwd_p4",
            "attention_fwd_p8",
            "attention_bwd_prep",
            "attention_bwd_p4",
            "attention_bwd_p8",
        ],
    ),
    ("elementwise", &["add", "scale", "axpy", "relu_fwd", "relu_bwd"]),
    ("embedding", &["embedding_fwd", "embedding_bwd", "fourier_fwd", "fourier_bwd"]),
    ("flow", &["fm_prepare", "fm_loss"]),
    ("loss", &["bce_with_logits", "reduce_sum"]),
    (
        "matmul",
        &[
            "gemm_f32_128x128",
            "gemm_f32_64x64",
            "gemm_tf32_64x64",
            "gemm_splitk_reduce",
            "bias_grad",
        ],
    ),
    ("memory", &["fill", "copy_words", "copy_cols", "gather_rows", "scatter_rows"]),
    ("norm", &["layer_norm_fwd", "layer_norm_bwd"]),
    ("ode", &["ode_stage", "dopri5_error", "dopri5_accept"]),
    ("optim", &["sum_squares", "adamw_step"]),
    ("random", &["normal_fill", "uniform_fill"]),
];

/// Whether this binary embeds compiled CUDA kernels.
pub const KERNELS_BUILT: bool = cfg!(tfmpe_cuda_kernels);

pub(super) fn driver(what: &str, e: DriverError) -> Error {
    Error::Device(format!("cuda: {what}: {e}"))
}

/// Recycled device allocations, keyed by byte size. A buffer returns here when its
/// [`CudaBuffer`] is dropped, so a training step that asks for the same sizes again allocates
/// nothing. Reuse is safe without waiting: every use of a buffer is ordered on the one stream.
#[derive(Default)]
pub(super) struct Pool {
    free: Mutex<HashMap<usize, Vec<Block>>>,
    created: AtomicU64,
}

/// A device buffer of `len` elements of `dtype` (at least 4 bytes, so it has a real pointer).
pub struct CudaBuffer {
    block: Block,
    len: usize,
    dtype: DType,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for CudaBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBuffer({:?}, {})", self.dtype, self.len)
    }
}

impl CudaBuffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device address, as pushed to a kernel.
    pub(super) fn ptr(&self) -> u64 {
        self.block.ptr
    }

    /// The buffer as a kernel argument (its device address).
    pub(super) fn arg(&self) -> Arg {
        Arg::P(self.block.ptr)
    }
}

impl Drop for CudaBuffer {
    fn drop(&mut self) {
        let block = std::mem::replace(&mut self.block, Block { _slice: None, ptr: 0 });
        if let Some(bytes) = buffer_bytes(self.len) {
            lock(&self.pool.free).entry(bytes).or_default().push(block);
        }
    }
}

/// The bytes behind a buffer of `len` elements: at least 4, so that it has a real pointer.
fn buffer_bytes(len: usize) -> Option<usize> {
    len.checked_mul(4).map(|b| b.max(4))
}

/// A kernel argument, pushed in the order the kernel declares them (kernels/README.md).
#[derive(Clone, Copy, Debug)]
pub(super) enum Arg {
    /// A device pointer (0 for an optional one left out).
    P(u64),
    U(u32),
    F(f32),
    L(u64),
    /// `OdeCoeffs`, a struct of eight floats.
    C([f32; 8]),
}

impl Arg {
    /// The argument's bits, for comparing launches exactly.
    pub(super) fn bits(&self) -> [u32; 8] {
        let mut w = [0; 8];
        match *self {
            Arg::P(v) | Arg::L(v) => (w[0], w[1]) = (v as u32, (v >> 32) as u32),
            Arg::U(v) => w[0] = v,
            Arg::F(v) => w[0] = v.to_bits(),
            Arg::C(c) => w = c.map(f32::to_bits),
        }
        w
    }

    /// A pointer to the value, as a kernel parameter; valid while `self` is.
    pub(super) fn as_param(&self) -> *mut std::ffi::c_void {
        match self {
            Arg::P(v) | Arg::L(v) => v as *const u64 as *mut _,
            Arg::U(v) => v as *const u32 as *mut _,
            Arg::F(v) => v as *const f32 as *mut _,
            Arg::C(c) => c.as_ptr() as *mut _,
        }
    }
}

/// The pointer of an optional buffer, null when absent.
pub(super) fn opt(b: Option<&CudaBuffer>) -> Arg {
    Arg::P(b.map_or(0, CudaBuffer::ptr))
}

/// An element count as the kernels' u32; they index with u32 and need counts below 2³¹.
pub(super) fn n32(n: usize) -> Result<u32> {
    if n >= 1 << 31 {
        return Err(Error::Invalid(format!(
            "cuda: {n} elements exceed the kernels' limit of 2^31 - 1"
        )));
    }
    Ok(n as u32)
}

/// A 1-D launch over `n` items: block 256, grid `max(1, ceil(n / 256))`.
pub(super) fn grid_1d(n: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(256).max(1), 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Queues longer than this go to the device without waiting for an edge, which bounds the
/// queue's memory (and the size of a graph) in a long ODE solve.
const MAX_QUEUE: usize = 1 << 15;

/// The reduction scratch: a grow-only workspace and the ticket, which the kernels leave at
/// zero. Both are made on first use, the ticket zeroed by a queued kernel.
#[derive(Default)]
struct Scratch {
    workspace: Option<CudaBuffer>,
    ticket: Option<CudaBuffer>,
}

pub(super) struct Gpu {
    raw: Box<dyn Raw>,
    name: String,
    sms: u32,
    /// Each kernel's index in the driver's table (a [`Launch`] names a kernel by index), and
    /// the limits its launches are checked against, by index.
    kernels: HashMap<&'static str, usize>,
    limits: Vec<KernelLimits>,
    queue: Mutex<Vec<Launch>>,
    /// Held while a queue is taken and run, so two threads flushing at once cannot run a later
    /// queue before an earlier one.
    order: Mutex<()>,
    pool: Arc<Pool>,
    scratch: Mutex<Scratch>,
    matmul: Matmul,
}

/// How `gemm` multiplies: exact f32 FMA (the default, bit-comparable with the CPU up to
/// summation order) or TF32 tensor cores (about 10 mantissa bits per product, f32 sums).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Matmul {
    F32,
    Tf32,
}

impl Matmul {
    /// Reads `TFMPE_MATMUL` (`f32`, the default, or `tf32`); any other value is an error that
    /// names the variable and the values it takes.
    fn from_env(value: Option<&str>) -> Result<Matmul> {
        let value = value.unwrap_or("").trim();
        match value.to_ascii_lowercase().as_str() {
            "" | "f32" => Ok(Matmul::F32),
            "tf32" => Ok(Matmul::Tf32),
            _ => Err(Error::Invalid(format!(
                "TFMPE_MATMUL={value:?}: expected `f32` (exact, the default) or `tf32` \
                 (tensor cores, ~1e-3 relative error)"
            ))),
        }
    }
}

/// Whether `TFMPE_CUDA_GRAPHS` leaves graphs on (anything but `0`, `off` or `false`).
fn graphs_wanted() -> bool {
    std::env::var("TFMPE_CUDA_GRAPHS").map_or(true, |v| !matches!(v.trim(), "0" | "off" | "false"))
}

impl Gpu {
    /// Opens device 0 and loads every kernel. The caller has checked that libcuda is present
    /// (cudarc panics without it).
    pub(super) fn open() -> Result<Gpu> {
        let unavailable =
            |reason: String| Error::BackendUnavailable { name: "cuda".into(), reason };
        let ctx = CudaContext::new(0)
            .map_err(|e| unavailable(format!("no CUDA device (the driver says: {e})")))?;
        if !KERNELS_BUILT {
            return Err(unavailable(super::NO_KERNELS.into()));
        }
        let matmul = Matmul::from_env(std::env::var("TFMPE_MATMUL").ok().as_deref())?;
        // Safety: only buffers created after this call skip event tracking, and all of them
        // live on the one stream below.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| driver("creating a stream", e))?;
        let name = ctx.name().map_err(|e| driver("device name", e))?;
        let (major, minor) =
            ctx.compute_capability().map_err(|e| driver("compute capability", e))?;
        let sms = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| driver("multiprocessor count", e))? as u32;
        let (mut functions, mut table, mut limits) = (Vec::new(), Vec::new(), Vec::new());
        for (stem, names) in ENTRIES {
            let (_, image) = MODULES
                .iter()
                .find(|(s, _)| s == stem)
                .ok_or_else(|| Error::Device(format!("cuda: kernels/{stem}.cu is not embedded")))?;
            let module =
                ctx.load_module(cudarc::nvrtc::Ptx::from_binary(image.to_vec())).map_err(|e| {
                    driver(&format!("loading kernels/{stem}.cu on {name} (sm_{major}{minor})"), e)
                })?;
            for &f in *names {
                let func = module
                    .load_function(f)
                    .map_err(|e| driver(&format!("kernel {f} in kernels/{stem}.cu"), e))?;
                limits.push(kernel_limits(f, &func)?);
                table.push((f, func.cu_function()));
                functions.push(func);
            }
        }
        let graphs = Graphs::new(
            CudaDriver { stream: stream.cu_stream(), functions: table },
            graphs_wanted(),
        );
        let raw = CudaRaw { graphs: Mutex::new(graphs), _functions: functions, stream };
        let name = format!("{name} (sm_{major}{minor}, {sms} SMs)");
        Gpu::new(Box::new(raw), name, sms, limits, matmul)
    }

    /// A device on `raw` whose kernels, in the order of [`kernel_names`], have `limits`.
    pub(super) fn new(
        raw: Box<dyn Raw>, name: String, sms: u32, limits: Vec<KernelLimits>, matmul: Matmul,
    ) -> Result<Gpu> {
        let kernels: HashMap<_, _> = kernel_names().enumerate().map(|(i, f)| (f, i)).collect();
        if limits.len() != kernels.len() {
            return Err(Error::Device(format!(
                "cuda: limits for {} kernels given, {} loaded",
                limits.len(),
                kernels.len()
            )));
        }
        Ok(Gpu {
            raw,
            name,
            sms,
            kernels,
            limits,
            queue: Mutex::new(Vec::new()),
            order: Mutex::new(()),
            pool: Arc::new(Pool::default()),
            scratch: Mutex::new(Scratch::default()),
            matmul,
        })
    }

    pub(super) fn describe(&self) -> String {
        let (graphs, _) = self.raw.graphs();
        format!(
            "{}, cuda graphs {}, matmul {}",
            self.name,
            if graphs { "on" } else { "off" },
            match self.matmul {
                Matmul::F32 => "f32",
                Matmul::Tf32 => "tf32",
            }
        )
    }

    pub(super) fn matmul(&self) -> Matmul {
        self.matmul
    }

    pub(super) fn sms(&self) -> u32 {
        self.sms
    }

    pub(super) fn buffers_created(&self) -> u64 {
        self.pool.created.load(Ordering::Relaxed)
    }

    /// What the graph cache has done so far.
    pub(super) fn graph_stats(&self) -> GraphStats {
        self.raw.graphs().1
    }

    /// Sends the queued kernels to the device (as a graph where one fits); waits for nothing.
    pub(super) fn flush(&self) -> Result<()> {
        let _order = lock(&self.order);
        let queue = std::mem::take(&mut *lock(&self.queue));
        if queue.is_empty() {
            return Ok(());
        }
        self.raw.bind()?;
        self.raw.run(queue)
    }

    pub(super) fn wait(&self) -> Result<()> {
        self.flush()?;
        self.raw.bind()?;
        self.raw.synchronize()
    }

    /// A zero-filled buffer (zeroed by a queued kernel, so it costs no edge).
    pub(super) fn alloc(&self, dtype: DType, len: usize) -> Result<CudaBuffer> {
        let b = self.take(dtype, len)?;
        let n = n32(b.len)?;
        self.launch_1d("fill", n, &[Arg::P(b.ptr()), Arg::U(n), Arg::F(0.0)])?;
        Ok(b)
    }

    pub(super) fn upload(&self, dtype: DType, data: &[u8]) -> Result<CudaBuffer> {
        let b = self.take(dtype, data.len() / 4)?;
        self.write(&b, data)?;
        Ok(b)
    }

    /// Copies host bytes into `dst` after the queued work (a pageable copy: the driver stages
    /// it before returning, so the host slice may go away at once). The context is bound here,
    /// not left to `flush`, which binds only when it has kernels to send.
    pub(super) fn write(&self, dst: &CudaBuffer, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.flush()?;
        self.raw.bind()?;
        self.raw.htod(dst.ptr(), data)
    }

    /// Reads a buffer back, after the work queued before it.
    pub(super) fn read<T: bytemuck::Pod>(&self, src: &CudaBuffer) -> Result<Vec<T>> {
        let mut out = vec![T::zeroed(); src.len];
        self.flush()?;
        if !out.is_empty() {
            self.raw.bind()?;
            self.raw.dtoh(src.ptr(), bytemuck::cast_slice_mut(&mut out[..]))?;
        }
        self.wait()?;
        Ok(out)
    }

    /// Device-to-device copy of `bytes` (a multiple of 4) between byte offsets of two buffers,
    /// queued as a kernel so it can sit inside a graph.
    pub(super) fn copy(
        &self, src: &CudaBuffer, src_offset: u64, dst: &CudaBuffer, dst_offset: u64, bytes: u64,
    ) -> Result<()> {
        let n = n32(bytes as usize / 4)?;
        let (s, d) = (src.ptr() + src_offset, dst.ptr() + dst_offset);
        self.launch_1d("copy_words", n, &[Arg::P(s), Arg::P(d), Arg::U(n)])
    }

    /// Queues one kernel, after checking its geometry against the kernel's limits: a launch
    /// the driver would refuse is an error naming the kernel here, where it is queued, rather
    /// than a failed launch later (which, inside a graph, turns graphs off for the process).
    pub(super) fn launch(&self, name: &str, cfg: LaunchConfig, args: &[Arg]) -> Result<()> {
        let kernel = *self
            .kernels
            .get(name)
            .ok_or_else(|| Error::Device(format!("cuda: kernel {name} is not loaded")))?;
        limits::check(name, &cfg, &self.limits[kernel])?;
        let full = {
            let mut q = lock(&self.queue);
            q.push(Launch {
                kernel,
                grid: cfg.grid_dim,
                block: cfg.block_dim,
                shared: cfg.shared_mem_bytes,
                args: args.to_vec(),
            });
            q.len() >= MAX_QUEUE
        };
        if full {
            self.flush()?;
        }
        Ok(())
    }

    /// A 1-D grid-stride launch over `n` items; nothing to do when `n = 0`.
    pub(super) fn launch_1d(&self, name: &str, n: u32, args: &[Arg]) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.launch(name, grid_1d(n), args)
    }

    /// A reduction to one scalar over `n` elements (block 256, `clamp(ceil(n / 8192), 1, 64)`
    /// blocks, one f64 partial each), launched even when n = 0 so the result is written.
    /// `args` gets `(partials, ticket)`.
    pub(super) fn reduce(
        &self, name: &str, n: u32, args: impl FnOnce(Arg, Arg) -> Vec<Arg>,
    ) -> Result<()> {
        let blocks = n.div_ceil(8192).clamp(1, 64);
        self.with_scratch(blocks as usize * 8, |partials, ticket| {
            let cfg = LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            self.launch(name, cfg, &args(partials, ticket))
        })
    }

    /// Runs `f` with the reduction scratch: a workspace of at least `bytes` bytes and the
    /// ticket. The lock is held while `f` queues its kernels, so no other thread can hand the
    /// workspace out in between.
    pub(super) fn with_scratch(
        &self, bytes: usize, f: impl FnOnce(Arg, Arg) -> Result<()>,
    ) -> Result<()> {
        let mut s = lock(&self.scratch);
        if s.ticket.is_none() {
            s.ticket = Some(self.alloc(DType::U32, 1)?);
        }
        if s.workspace.as_ref().is_none_or(|w| w.len * 4 < bytes) {
            // Grow geometrically so a few shapes settle on one workspace; the old one goes
            // back to the pool, stream-ordered after the kernels that used it.
            let words = bytes.div_ceil(4).next_power_of_two();
            s.workspace = Some(self.take(DType::U32, words)?);
        }
        let ws = s.workspace.as_ref().map_or(0, CudaBuffer::ptr);
        let ticket = s.ticket.as_ref().map_or(0, CudaBuffer::ptr);
        f(Arg::P(ws), Arg::P(ticket))
    }

    /// Takes a buffer from the pool, or allocates one. Out of memory, it empties the pool and
    /// tries once more before giving up with the size asked for.
    fn take(&self, dtype: DType, len: usize) -> Result<CudaBuffer> {
        let bytes = buffer_bytes(len)
            .ok_or_else(|| Error::Invalid(format!("cuda: a buffer of {len} elements overflows")))?;
        self.raw.bind()?;
        let reused = lock(&self.pool.free).get_mut(&bytes).and_then(Vec::pop);
        let raw = match reused {
            Some(raw) => raw,
            None => {
                let fresh = match self.raw.alloc(bytes) {
                    Err(DriverError(sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY)) => {
                        // Queued kernels may still use pooled buffers: send them first, so the
                        // frees are ordered after them.
                        self.flush()?;
                        drop(std::mem::take(&mut *lock(&self.pool.free)));
                        self.raw.alloc(bytes)
                    }
                    other => other,
                };
                let raw = fresh.map_err(|e| self.alloc_error(bytes, e))?;
                self.pool.created.fetch_add(1, Ordering::Relaxed);
                raw
            }
        };
        Ok(CudaBuffer { block: raw, len, dtype, pool: self.pool.clone() })
    }

    fn alloc_error(&self, bytes: usize, e: DriverError) -> Error {
        match e {
            DriverError(sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY) => {
                let free = self.raw.mem_info().map_or(String::new(), |(free, total)| {
                    format!(" ({} of {} MiB free)", free >> 20, total >> 20)
                });
                Error::Device(format!(
                    "cuda: out of GPU memory allocating {bytes} bytes{free}; use a smaller \
                     batch or the CPU backend"
                ))
            }
            e => driver(&format!("allocating {bytes} bytes"), e),
        }
    }
}

impl Drop for Gpu {
    /// Queued kernels may write buffers that outlive the device handle: send them, and wait
    /// for the stream, so that no graph is destroyed and no module unloaded while the device
    /// may still run them (they go next, in that order, as `raw` drops).
    fn drop(&mut self) {
        if let Err(e) = self.wait() {
            eprintln!("tfmpe: {e}");
        }
    }
}

/// Locks a mutex, taking it over from a thread that panicked while holding it.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every kernel's name, in the order of the driver's table.
pub(super) fn kernel_names() -> impl Iterator<Item = &'static str> {
    ENTRIES.iter().flat_map(|(_, names)| names.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::Matmul;

    #[test]
    fn matmul_mode_defaults_to_exact_f32_and_rejects_unknown_values() {
        assert_eq!(Matmul::from_env(None).unwrap(), Matmul::F32);
        assert_eq!(Matmul::from_env(Some("f32")).unwrap(), Matmul::F32);
        assert_eq!(Matmul::from_env(Some(" TF32 ")).unwrap(), Matmul::Tf32);
        let err = Matmul::from_env(Some("bf16")).unwrap_err().to_string();
        assert!(err.contains("TFMPE_MATMUL") && err.contains("tf32"), "{err}");
    }
}
