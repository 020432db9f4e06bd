//! The wgpu device: adapter choice, the pipeline cache, the buffer pool, and the one pending
//! command encoder that every kernel records into.
//!
//! Work is recorded, not submitted: kernels append compute passes to one encoder, and their
//! parameters go into a host-side copy of a uniform ring. Only the edges submit (a host write,
//! a read-back, `synchronize`), so a whole training step or ODE step is one submission with no
//! read-back inside it. Validation and device errors are caught by an error handler and come
//! back as `Err` at the next submission; nothing here panics on a device failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::backend::DType;
use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/shaders.rs"));

/// Bytes between two parameter blocks: WebGPU's minimum uniform-offset alignment.
const PARAM_STRIDE: u64 = 256;
/// Bytes of one parameter block (16 words).
pub(super) const PARAM_BYTES: u64 = 64;
/// Parameter blocks per submission; recording more submits the pending work first.
const PARAM_SLOTS: u64 = 2048;
/// Most elements in one buffer. Kernels index elements with u32, and a folded 2-D dispatch
/// pads fewer workgroups than it needs, so thread indices (under twice the element count) stay
/// below 2^32. Only adapters whose binding limit passes 8 GiB (Metal's is its buffer limit)
/// reach it.
const MAX_ELEMENTS: u64 = 1 << 31;

/// One compute kernel: an entry point of `shaders/<shader>.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Kernel {
    pub shader: &'static str,
    pub entry: &'static str,
}

/// Recycled device buffers, keyed by byte size. A buffer returns here when its
/// [`WgpuBuffer`] is dropped, so a training step that asks for the same sizes again allocates
/// nothing.
#[derive(Default)]
pub(super) struct Pool {
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    created: AtomicU64,
}

/// A device buffer of `len` elements of `dtype` (at least 4 bytes, since WebGPU has no empty
/// bindings).
pub struct WgpuBuffer {
    raw: Option<wgpu::Buffer>,
    len: usize,
    dtype: DType,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for WgpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgpuBuffer({:?}, {})", self.dtype, self.len)
    }
}

impl WgpuBuffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub(super) fn raw(&self) -> &wgpu::Buffer {
        self.raw.as_ref().expect("a live buffer")
    }

    /// Bytes of data (not of the allocation, which is at least 4).
    pub(super) fn bytes(&self) -> u64 {
        self.len as u64 * 4
    }
}

impl Drop for WgpuBuffer {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
            free.entry(raw.size()).or_default().push(raw);
        }
    }
}

/// Recorded work not yet submitted.
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    /// Host copy of the parameter ring, written to the device just before submission.
    params: Vec<u8>,
}

/// Errors reported by wgpu's callbacks, checked at every submission.
#[derive(Default)]
struct Faults {
    error: Option<String>,
    lost: Option<String>,
}

pub(super) struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<Kernel, wgpu::ComputePipeline>>,
    pending: Mutex<Pending>,
    param_ring: wgpu::Buffer,
    pool: Arc<Pool>,
    faults: Arc<Mutex<Faults>>,
    /// With `TFMPE_WGPU_PROFILE=1`: seconds and launches per kernel, each launch waited for
    /// (slow, for finding the slow kernel; printed to stderr when the device closes).
    profile: Option<Mutex<HashMap<Kernel, (u64, f64)>>>,
}

impl Drop for Gpu {
    fn drop(&mut self) {
        let Some(profile) = self.profile.take() else {
            return;
        };
        let mut rows: Vec<_> = profile.into_inner().unwrap_or_default().into_iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        eprintln!("wgpu profile (kernel, launches, total ms, ms per launch):");
        for (k, (n, secs)) in rows {
            let ms = secs * 1e3;
            eprintln!(
                "  {:<30} {n:>8} {ms:>10.1} {:>9.3}",
                format!("{}::{}", k.shader, k.entry),
                ms / n as f64
            );
        }
    }
}

/// How adapters are ranked: real GPUs first, a CPU-type adapter (lavapipe) last.
fn rank(kind: wgpu::DeviceType) -> u8 {
    match kind {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// The adapters on this machine, best first (without opening a device).
pub(super) fn adapters() -> Vec<wgpu::AdapterInfo> {
    let mut found: Vec<wgpu::AdapterInfo> = enumerate().iter().map(|a| a.get_info()).collect();
    found.sort_by_key(|i| rank(i.device_type));
    found
}

fn enumerate() -> Vec<wgpu::Adapter> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

impl Gpu {
    /// Opens the best adapter; a CPU-type adapter only when `allow_cpu`.
    pub(super) fn open(allow_cpu: bool) -> Result<Gpu> {
        let mut list = enumerate();
        list.sort_by_key(|a| rank(a.get_info().device_type));
        let adapter = list
            .into_iter()
            .find(|a| allow_cpu || a.get_info().device_type != wgpu::DeviceType::Cpu)
            .ok_or_else(|| Error::BackendUnavailable {
                name: "wgpu".into(),
                reason: if allow_cpu {
                    "no Vulkan, Metal or DX12 adapter was found; install a GPU driver \
                     (or Mesa's lavapipe: apt-get install mesa-vulkan-drivers libvulkan1)"
                        .into()
                } else {
                    "no GPU adapter was found (CPU-type adapters such as lavapipe are used \
                     only when the wgpu backend is asked for by name)"
                        .into()
                },
            })?;
        let info = adapter.get_info();
        // Ask for everything the adapter offers: larger storage bindings let big batches run
        // in one dispatch. Kernels themselves stay inside WebGPU's default limits.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tfmpe"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Device(format!("wgpu: cannot open {}: {e}", info.name)))?;

        let faults = Arc::new(Mutex::new(Faults::default()));
        let f = faults.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            f.error.get_or_insert_with(|| e.to_string());
        }));
        let f = faults.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            f.lost.get_or_insert_with(|| format!("{reason:?}: {msg}"));
        });
        let param_ring = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: PARAM_STRIDE * PARAM_SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            pending: Mutex::new(Pending { encoder: None, params: Vec::new() }),
            param_ring,
            pool: Arc::default(),
            faults,
            profile: std::env::var("TFMPE_WGPU_PROFILE")
                .is_ok_and(|v| v == "1")
                .then(Mutex::default),
        })
    }

    pub(super) fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.device_type, self.info.backend)
    }

    pub(super) fn buffers_created(&self) -> u64 {
        self.pool.created.load(Ordering::Relaxed)
    }

    /// Returns the first error wgpu reported, if any (and forgets it).
    fn check_faults(&self) -> Result<()> {
        let mut f = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lost) = &f.lost {
            return Err(Error::Device(format!("wgpu: the device was lost ({lost})")));
        }
        match f.error.take() {
            Some(e) => Err(Error::Device(format!("wgpu: {e}"))),
            None => Ok(()),
        }
    }

    // ---- buffers ------------------------------------------------------------------------

    /// A buffer of `len` elements with unspecified contents (from the pool when one fits).
    fn take(&self, dtype: DType, len: usize) -> Result<WgpuBuffer> {
        let size = (len as u64 * 4).max(4);
        let max = max_buffer_bytes(&self.limits);
        if size > max {
            return Err(Error::Device(format!(
                "wgpu: a buffer of {len} elements ({size} bytes) is larger than the limit of \
                 {max} bytes (this adapter's binding limit, or 2^31 elements for the kernels' \
                 32-bit indices); use smaller batches or chunks"
            )));
        }
        let pooled = {
            let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
            free.get_mut(&size).and_then(Vec::pop)
        };
        let raw = match pooled {
            Some(raw) => raw,
            None => {
                let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
                let raw = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                if let Some(e) = pollster::block_on(scope.pop()) {
                    return Err(Error::Device(format!(
                        "wgpu: out of device memory allocating {size} bytes: {e}"
                    )));
                }
                self.pool.created.fetch_add(1, Ordering::Relaxed);
                raw
            }
        };
        Ok(WgpuBuffer { raw: Some(raw), len, dtype, pool: self.pool.clone() })
    }

    /// A zero-filled buffer.
    pub(super) fn alloc(&self, dtype: DType, len: usize) -> Result<WgpuBuffer> {
        let buf = self.take(dtype, len)?;
        self.record(|enc| enc.clear_buffer(buf.raw(), 0, None))?;
        Ok(buf)
    }

    /// A new buffer holding `data`.
    pub(super) fn upload(&self, dtype: DType, data: &[u8]) -> Result<WgpuBuffer> {
        let buf = self.take(dtype, data.len() / 4)?;
        self.write(&buf, data)?;
        Ok(buf)
    }

    /// Overwrites `buf` from the host. Pending work is submitted first: wgpu runs queued
    /// writes before the next submission's commands, which would otherwise overtake kernels
    /// recorded earlier that still read the old contents.
    pub(super) fn write(&self, buf: &WgpuBuffer, data: &[u8]) -> Result<()> {
        self.flush()?;
        if !data.is_empty() {
            self.queue.write_buffer(buf.raw(), 0, data);
        }
        Ok(())
    }

    /// Reads `buf` back to the host (submits and waits).
    pub(super) fn read<T: bytemuck::Pod>(&self, buf: &WgpuBuffer) -> Result<Vec<T>> {
        let bytes = buf.bytes();
        if bytes == 0 {
            self.flush()?;
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.record(|enc| enc.copy_buffer_to_buffer(buf.raw(), 0, &staging, 0, bytes))?;
        self.flush()?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::Device("wgpu: the read-back was never answered".into()))?
            .map_err(|e| Error::Device(format!("wgpu: read-back failed: {e}")))?;
        let data = bytemuck::pod_collect_to_vec(
            &staging
                .get_mapped_range(..)
                .map_err(|e| Error::Device(format!("wgpu: read-back failed: {e}")))?,
        );
        staging.unmap();
        Ok(data)
    }

    /// Records a copy between two buffers (byte offsets and length multiples of 4).
    pub(super) fn copy(
        &self, src: &WgpuBuffer, src_offset: u64, dst: &WgpuBuffer, dst_offset: u64, bytes: u64,
    ) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.record(|enc| {
            enc.copy_buffer_to_buffer(src.raw(), src_offset, dst.raw(), dst_offset, bytes)
        })
    }

    // ---- recording and submission -------------------------------------------------------

    fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) -> Result<()> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let enc = p.encoder.get_or_insert_with(|| {
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        f(enc);
        Ok(())
    }

    /// Submits the pending work (no wait).
    pub(super) fn flush(&self) -> Result<()> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.submit(&mut p)
    }

    fn submit(&self, p: &mut Pending) -> Result<()> {
        if let Some(enc) = p.encoder.take() {
            if !p.params.is_empty() {
                self.queue.write_buffer(&self.param_ring, 0, &p.params);
                p.params.clear();
            }
            self.queue.submit([enc.finish()]);
        }
        self.check_faults()
    }

    /// Submits and waits for everything queued.
    pub(super) fn wait(&self) -> Result<()> {
        self.flush()?;
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("wgpu: waiting for the device failed: {e}")))?;
        self.check_faults()
    }

    /// Records one kernel launch of `groups` workgroups (split over two dimensions past
    /// 65 535), with `params` (at most 16 words) at binding 0 and `buffers` at 1, 2, …
    pub(super) fn dispatch(
        &self, kernel: Kernel, params: &[u32], buffers: &[&WgpuBuffer], groups: u32,
    ) -> Result<()> {
        if groups == 0 {
            return Ok(());
        }
        if params.len() as u64 * 4 > PARAM_BYTES {
            return Err(Error::Device(format!("wgpu: {kernel:?} has too many parameters")));
        }
        let (x, y) = fold(groups, self.limits.max_compute_workgroups_per_dimension)?;
        let pipeline = self.pipeline(kernel)?;
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.params.len() as u64 >= PARAM_STRIDE * PARAM_SLOTS {
            self.submit(&mut p)?;
        }
        let offset = p.params.len() as u64;
        p.params.extend(params.iter().flat_map(|w| w.to_le_bytes()));
        p.params.resize((offset + PARAM_STRIDE) as usize, 0);

        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.param_ring,
                offset,
                size: wgpu::BufferSize::new(PARAM_BYTES),
            }),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.raw().as_entire_binding(),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let enc = p.encoder.get_or_insert_with(|| {
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.entry),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
        drop(pass);
        if let Some(profile) = &self.profile {
            self.submit(&mut p)?;
            drop(p);
            let start = std::time::Instant::now();
            self.wait()?;
            let mut prof = profile.lock().unwrap_or_else(|e| e.into_inner());
            let entry = prof.entry(kernel).or_default();
            *entry = (entry.0 + 1, entry.1 + start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// The pipeline of `kernel`, compiled on first use. Shader and pipeline errors are
    /// caught in an error scope and returned.
    fn pipeline(&self, kernel: Kernel) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).get(&kernel) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            match modules.get(kernel.shader) {
                Some(m) => m.clone(),
                None => {
                    let source = SHADERS
                        .iter()
                        .find(|(stem, _)| *stem == kernel.shader)
                        .map(|(_, src)| *src)
                        .ok_or_else(|| {
                            Error::Device(format!("wgpu: no shader `{}.wgsl`", kernel.shader))
                        })?;
                    let m = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.shader),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    });
                    modules.insert(kernel.shader, m.clone());
                    m
                }
            }
        };
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: None,
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Device(format!(
                "wgpu: kernel {}::{} failed to build: {e}",
                kernel.shader, kernel.entry
            )));
        }
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner()).insert(kernel, pipeline.clone());
        Ok(pipeline)
    }

    /// A one-element buffer to bind where an optional input is absent.
    pub(super) fn placeholder(&self) -> Result<WgpuBuffer> {
        self.take(DType::F32, 1)
    }

    /// A temporary f32 buffer of `len` elements with unspecified contents, for partial results
    /// passed between the kernels of one operation. Drop it as soon as they are recorded: it
    /// goes back to the pool, and whoever takes it next is ordered after them (a later kernel
    /// or copy is recorded after them in the same encoder, and a host write submits them
    /// first).
    pub(super) fn scratch(&self, len: usize) -> Result<WgpuBuffer> {
        self.take(DType::F32, len)
    }
}

/// Bytes one buffer may hold with `limits`: the adapter's binding and buffer limits, and
/// [`MAX_ELEMENTS`].
fn max_buffer_bytes(limits: &wgpu::Limits) -> u64 {
    limits.max_storage_buffer_binding_size.min(limits.max_buffer_size).min(MAX_ELEMENTS * 4)
}

/// `groups` workgroups as an (x, y) dispatch with at most `max` per dimension (kernels number
/// them `x + y · width`, see common.wgsl). Past `max`², an error before anything is recorded,
/// rather than a validation error at the next submission.
fn fold(groups: u32, max: u32) -> Result<(u32, u32)> {
    let max = max.max(1);
    if groups <= max {
        return Ok((groups, 1));
    }
    let y = groups.div_ceil(max);
    if y > max {
        return Err(Error::Shape(format!(
            "{groups} workgroups are more than one wgpu dispatch holds ({max} per dimension)"
        )));
    }
    Ok((max, y))
}

/// Workgroups for `n` threads in groups of `size`, as a dispatch count.
pub(super) fn groups(n: usize, size: usize) -> Result<u32> {
    u32::try_from(n.div_ceil(size))
        .map_err(|_| Error::Shape(format!("{n} elements are too many for one wgpu dispatch")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_stay_within_32_bit_element_indices() {
        let huge = wgpu::Limits {
            max_storage_buffer_binding_size: 1 << 40,
            max_buffer_size: 1 << 40,
            ..wgpu::Limits::default()
        };
        assert_eq!(max_buffer_bytes(&huge), 1 << 33);
        // WebGPU's defaults: the 128 MiB binding limit decides.
        assert_eq!(max_buffer_bytes(&wgpu::Limits::default()), 128 << 20);
    }

    #[test]
    fn dispatches_fold_into_two_dimensions_or_fail_cleanly() {
        assert_eq!(fold(65_535, 65_535).unwrap(), (65_535, 1));
        assert_eq!(fold(65_536, 65_535).unwrap(), (65_535, 2));
        assert_eq!(fold(65_535 * 65_535, 65_535).unwrap(), (65_535, 65_535));
        assert!(matches!(fold(65_535 * 65_535 + 1, 65_535), Err(Error::Shape(_))));
        assert_eq!(fold(u32::MAX, 1 << 31).unwrap(), (1 << 31, 2));
    }
}
