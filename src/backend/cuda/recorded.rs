//! The CUDA backend on a driver that records instead of running: every launch the backend
//! makes at the benchmark shapes (W1, W2) and at odd sizes is checked against the launch
//! limits, every driver call against the context being current on the calling thread, and the
//! close of the device against the work still running. Nothing runs, so reads return zeros; the
//! host code around the kernels does not mind.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use cudarc::driver::DriverError;

use super::context::{kernel_names, Gpu, Matmul};
use super::graph::{GraphStats, Launch};
use super::limits::{check, opt_in, KernelLimits};
use super::raw::{Block, Raw};
use super::CudaBackend;
use crate::backend::{Attention, Backend, DType, Device, Epilogue, Gemm, LayerNorm};
use crate::error::Result;
use crate::model::ode::Solver;
use crate::tasks::task_by_name;
use crate::workloads::{Sampling, TrainStep, BATCH, SAMPLE_CHUNK, SITES, TASK};

/// Stand-in for the static shared memory ptxas gives a kernel, which only the driver reports:
/// at least the flag of `grid_last_block`, rounded up, in every kernel (an over-estimate for
/// kernels without one, which keeps the check strict).
const STATIC_SHARED: u32 = 16;

/// A driver that runs nothing. It logs every call but `bind`, knows which threads have the
/// context current (the opening thread, as `CudaContext::new` leaves it, and any that bound it
/// since) and notes every call made from another thread, and which kernels were launched.
struct Recorder {
    log: Mutex<Vec<&'static str>>,
    bound: Mutex<HashSet<ThreadId>>,
    unbound: Mutex<Vec<&'static str>>,
    launched: Mutex<HashSet<usize>>,
    next: AtomicU64,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            log: Mutex::default(),
            bound: Mutex::new(HashSet::from([thread::current().id()])),
            unbound: Mutex::default(),
            launched: Mutex::default(),
            next: AtomicU64::new(1 << 32),
        })
    }

    fn call(&self, what: &'static str) {
        self.log.lock().unwrap().push(what);
        if !self.bound.lock().unwrap().contains(&thread::current().id()) {
            self.unbound.lock().unwrap().push(what);
        }
    }
}

impl Raw for Arc<Recorder> {
    fn bind(&self) -> Result<()> {
        self.bound.lock().unwrap().insert(thread::current().id());
        Ok(())
    }

    fn alloc(&self, bytes: usize) -> std::result::Result<Block, DriverError> {
        self.call("alloc");
        let ptr = self.next.fetch_add(bytes.next_multiple_of(256) as u64, Ordering::Relaxed);
        Ok(Block { _slice: None, ptr })
    }

    fn htod(&self, _: u64, _: &[u8]) -> Result<()> {
        self.call("htod");
        Ok(())
    }

    fn dtoh(&self, _: u64, out: &mut [u8]) -> Result<()> {
        self.call("dtoh");
        out.fill(0);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        self.call("synchronize");
        Ok(())
    }

    fn run(&self, queue: Vec<Launch>) -> Result<()> {
        self.call("run");
        self.launched.lock().unwrap().extend(queue.iter().map(|l| l.kernel));
        Ok(())
    }

    fn graphs(&self) -> (bool, GraphStats) {
        (false, GraphStats::default())
    }

    fn mem_info(&self) -> Option<(usize, usize)> {
        None
    }
}

/// The CUDA backend on a recorder, with an H100's 132 SMs.
fn recording(matmul: Matmul) -> (CudaBackend, Arc<Recorder>) {
    let rec = Recorder::new();
    let limits = kernel_names().map(|f| KernelLimits::new(1024, STATIC_SHARED, opt_in(f)));
    let gpu = Gpu::new(Box::new(rec.clone()), "recorder".into(), 132, limits.collect(), matmul);
    (CudaBackend { gpu: gpu.unwrap() }, rec)
}

#[test]
fn the_check_knows_the_driver_limits() {
    let l = KernelLimits::new(256, 1, None);
    let cfg = |grid, block, shared| cudarc::driver::LaunchConfig {
        grid_dim: grid,
        block_dim: block,
        shared_mem_bytes: shared,
    };
    assert!(check("k", &cfg((1 << 20, 65_535, 65_535), (256, 1, 1), 49_151), &l).is_ok());
    for (bad, why) in [
        (cfg((1, 1, 1), (512, 1, 1), 0), "512 threads"),
        (cfg((1, 65_536, 1), (32, 1, 1), 0), "grid"),
        (cfg((1, 1, 0), (32, 1, 1), 0), "empty"),
        (cfg((1, 1, 1), (32, 1, 1), 49_152), "1 static bytes"),
    ] {
        let err = check("k", &bad, &l).unwrap_err().to_string();
        assert!(err.contains("kernel k") && err.contains(why), "{err}");
    }
    let opted = KernelLimits::new(1024, 4, Some(49_152));
    assert!(check("k", &cfg((1, 1, 1), (32, 1, 1), 49_152), &opted).is_ok());
}

#[test]
fn layer_norm_bwd_launches_at_every_width_up_to_6144() {
    // 768, 1536, 3072 and 6144 columns fill exactly 48 KiB of dynamic shared memory, which
    // leaves no room for the kernel's static bytes unless it opts in.
    let (cuda, _) = recording(Matmul::F32);
    for cols in [1, 31, 767, 768, 1536, 3071, 3072, 6144] {
        for rows in [1, 65, 100_000] {
            let p = LayerNorm { rows, cols, eps: 1e-5 };
            let buf = |n| cuda.alloc(DType::F32, n).unwrap();
            let [h, dy] = [buf(rows * cols), buf(rows * cols)];
            let [gamma, mean, rstd] = [buf(cols), buf(rows), buf(rows)];
            let [mut dh, mut dg, mut db] = [buf(rows * cols), buf(cols), buf(cols)];
            let r = cuda.layer_norm_bwd(
                &p, &h, &dy, &gamma, &mean, &rstd, &mut dh, &mut dg, &mut db, false,
            );
            r.unwrap_or_else(|e| panic!("{rows} x {cols}: {e}"));
        }
    }
    let p = LayerNorm { rows: 1, cols: 6145, eps: 1e-5 };
    let b = |n| cuda.alloc(DType::F32, n).unwrap();
    let err = cuda
        .layer_norm_bwd(
            &p,
            &b(6145),
            &b(6145),
            &b(6145),
            &b(1),
            &b(1),
            &mut b(6145),
            &mut b(6145),
            &mut b(6145),
            false,
        )
        .unwrap_err();
    assert!(err.to_string().contains("6144"), "{err}");
}

#[test]
fn every_driver_call_binds_the_context_first() {
    // A buffer back in the pool, then a write from a thread that never used the device: the
    // buffer is reused (no allocation) and nothing is queued (no launch), so no call on the way
    // binds the context unless the copy itself does.
    let (cuda, rec) = recording(Matmul::F32);
    drop(cuda.upload_f32(&[1.0; 8]).unwrap());
    thread::scope(|s| {
        s.spawn(|| {
            let mut b = cuda.upload_f32(&[2.0; 8]).unwrap();
            cuda.write_f32(&mut b, &[3.0; 8]).unwrap();
            cuda.download_f32(&b).unwrap();
            cuda.synchronize().unwrap();
        });
    });
    assert_eq!(*rec.unbound.lock().unwrap(), Vec::<&str>::new(), "driver calls without a context");
}

/// W1 (two training steps) and W2 (sampling with each solver) at `sites` and `batch`.
fn workloads(cuda: CudaBackend, sites: usize, batch: usize, samples: usize) -> Result<()> {
    let dev = Device::from_backend(Arc::new(cuda));
    let task = task_by_name(TASK)?;
    let mut w1 = TrainStep::new(&dev, &*task, sites, batch)?;
    let mut steps = w1.steps()?;
    for draw in 0..2 {
        let loss = steps.step(draw)?;
        steps.loss(loss)?;
    }
    let mut w2 = Sampling::new(&dev, &*task, sites, batch)?;
    let dopri5 = Solver::Dopri5 { rtol: 1e-3, atol: 1e-4, max_iters: 3 };
    for solver in [Solver::Euler { steps: 2 }, Solver::Rk4 { steps: 1 }, dopri5] {
        w2.sample(&dev, samples, solver, crate::backend::Precision::F32)?;
    }
    Ok(())
}

/// Every kernel the workloads leave out, and the sizes where a launch dimension grows with the
/// shape: the largest element counts, long sequences, wide heads, many frequencies, tall and
/// batched products.
fn odd_sizes(cuda: &CudaBackend) -> Result<()> {
    let buf = |dtype, n| cuda.alloc(dtype, n);
    let f32s = |n| buf(DType::F32, n);
    for n in [1, 257, 8193, (1 << 31) - 1] {
        let (x, mut y, mut s) = (f32s(n)?, f32s(n)?, f32s(1)?);
        cuda.add(&x, &x, &mut y)?;
        cuda.scale(&x, 2.0, &mut y)?;
        cuda.axpy(2.0, &x, &mut y)?;
        cuda.relu_fwd(&x, &mut y)?;
        cuda.relu_bwd(&x, &x, &mut y, true)?;
        cuda.sum_squares(&x, &mut s, false)?;
        cuda.reduce_sum(&x, 1.0, &mut s)?;
        cuda.bce_with_logits(&x, &x, &mut s, &mut y)?;
    }
    for (batch, m, n, k) in
        [(1, 1, 1, 1), (1, 101_000, 65, 64), (1, 64, 64, 101_000), (65_535, 3, 2, 5)]
    {
        let (a, b, bias, mut c) =
            (f32s(batch * m * k)?, f32s(batch * k * n)?, f32s(n)?, f32s(batch * m * n)?);
        let p = Gemm { batch, epilogue: Epilogue::BiasRelu, ..Gemm::new(m, n, k) };
        cuda.gemm(&p, &a, &b, Some(&bias), &mut c)?;
    }
    for (batch, tokens, heads, head_dim) in
        [(1, 1, 1, 1), (3, 101, 2, 5), (2, 4097, 3, 33), (1, 65, 1, 256), (1000, 101, 16, 4)]
    {
        let p = Attention { batch, tokens, heads, head_dim, scale: 0.5 };
        let d = heads * head_dim;
        let (qkv, mask) = (f32s(batch * tokens * 3 * d)?, f32s(batch * tokens)?);
        let (mut out, mut lse) = (f32s(batch * tokens * d)?, f32s(batch * heads * tokens)?);
        let mut dqkv = f32s(batch * tokens * 3 * d)?;
        for m in [None, Some(&mask)] {
            cuda.attention_fwd(&p, &qkv, m, &mut out, &mut lse)?;
            cuda.attention_bwd(&p, &qkv, m, &out, &lse, &out, &mut dqkv)?;
        }
    }
    for (ids, dim, rows) in [(1, 1, 1), (101 * 1000, 64, 3), (7, 5000, 100_000)] {
        let (table, id) = (f32s(rows * dim)?, buf(DType::U32, ids)?);
        let (mut out, mut dtable) = (f32s(ids * dim)?, f32s(rows * dim)?);
        cuda.embedding_fwd(&table, &id, dim, &mut out)?;
        cuda.embedding_bwd(&out, &id, dim, &mut dtable, false)?;
    }
    for (rows, in_dim, half) in [(1, 1, 1), (101 * 100, 3, 33), (1, 1, 65_535 * 32)] {
        let (x, freqs, dout) = (f32s(rows * in_dim)?, f32s(in_dim * half)?, f32s(rows * 2 * half)?);
        let (mut out, mut dfreqs) = (f32s(rows * 2 * half)?, f32s(in_dim * half)?);
        cuda.fourier_fwd(&x, &freqs, rows, in_dim, half, &mut out)?;
        cuda.fourier_bwd(&x, &freqs, &dout, rows, in_dim, half, &mut dfreqs, true)?;
    }
    cuda.synchronize()
}

#[test]
fn every_kernel_launches_within_the_limits_at_the_benchmark_and_odd_sizes() {
    let mut launched = HashSet::new();
    for matmul in [Matmul::F32, Matmul::Tf32] {
        for (sites, batch, samples) in [(SITES, BATCH, SAMPLE_CHUNK + 1), (1, 1, 1), (7, 3, 33)] {
            let (cuda, rec) = recording(matmul);
            workloads(cuda, sites, batch, samples)
                .unwrap_or_else(|e| panic!("{matmul:?}, {sites} sites, batch {batch}: {e}"));
            launched.extend(rec.launched.lock().unwrap().iter().copied());
        }
        let (cuda, rec) = recording(matmul);
        odd_sizes(&cuda).unwrap_or_else(|e| panic!("{matmul:?}: {e}"));
        launched.extend(rec.launched.lock().unwrap().iter().copied());
    }
    let missed: Vec<_> =
        kernel_names().enumerate().filter(|(i, _)| !launched.contains(i)).map(|(_, f)| f).collect();
    assert!(missed.is_empty(), "never launched: {missed:?}");
}

#[test]
fn fourier_bwd_past_65535_column_tiles_stays_within_the_grid_limit() {
    // fourier_bwd needs ceil(half / 32) column tiles; past 65 535 its grid stays at that height
    // and each row of blocks loops over several tiles, so the launch passes the limit check.
    let (cuda, rec) = recording(Matmul::F32);
    let half = 65_535 * 32 + 1;
    let f32s = |n| cuda.alloc(DType::F32, n).unwrap();
    let (x, freqs, dout, mut dfreqs) = (f32s(1), f32s(half), f32s(2 * half), f32s(half));
    cuda.fourier_bwd(&x, &freqs, &dout, 1, 1, half, &mut dfreqs, false).unwrap();
    cuda.synchronize().unwrap();
    assert!(!rec.launched.lock().unwrap().is_empty(), "fourier_bwd was launched");
}

#[test]
fn closing_the_device_waits_for_the_work_sent() {
    // Graphs and modules go after this, and must not go while the device may still run them.
    let (cuda, rec) = recording(Matmul::F32);
    let mut x = cuda.upload_f32(&[1.0; 8]).unwrap();
    cuda.fill(&mut x, 2.0).unwrap();
    let sent = rec.log.lock().unwrap().len();
    drop(x);
    drop(cuda);
    assert_eq!(rec.log.lock().unwrap()[sent..], ["run", "synchronize"]);
}
