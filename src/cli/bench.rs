//! `tfmpe bench`: the performance workloads of [`tfmpe::workloads`] (W1 train step, W2
//! sampling), on the benchmark configuration, and the attention forward kernel alone at long
//! sequences, printed as JSON.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tfmpe::backend::{Attention, DType, Precision};
use tfmpe::model::ode::Solver;
use tfmpe::model::tfmpe::TfmpeConfig;
use tfmpe::model::tokens::Layout;
use tfmpe::tasks::{task_by_name, HierarchicalModel};
use tfmpe::workloads::{self, Sampling, TrainStep};
use tfmpe::{Device, Error, Result};

#[derive(clap::Subcommand)]
pub enum Workload {
    /// W1: forward + backward + AdamW steps of the posterior network.
    TrainStep(Common),
    /// W2: posterior samples for one observation.
    Sample {
        #[command(flatten)]
        common: Common,
        /// Posterior samples drawn per repeat.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// euler, rk4 or dopri5.
        #[arg(long, default_value = "euler")]
        solver: String,
        /// Steps of the fixed-step solvers.
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// f32, or bf16 (the linear layers' operands rounded to bfloat16; CPU backend).
        #[arg(long, default_value = "f32")]
        precision: String,
    },
    /// The attention forward kernel alone (random inputs, no mask): bytes moved per second
    /// (Q, K, V read; O and the log-sum-exp written) beside the device's copy bandwidth, and
    /// FLOP/s.
    Attention(AttentionArgs),
}

#[derive(clap::Args)]
pub struct AttentionArgs {
    /// Tokens per sequence.
    #[arg(long, default_value_t = 1024)]
    tokens: usize,
    /// Sequences per call.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 16)]
    heads: usize,
    /// Features per head.
    #[arg(long, default_value_t = 4)]
    head_dim: usize,
    /// Forward passes per timed repeat.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Timed repeats; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Size of the buffer copied to measure the device's memory bandwidth.
    #[arg(long, default_value_t = 256)]
    copy_mib: usize,
    /// Where to compute: auto (a GPU backend when one works, else cpu), cpu, wgpu or cuda.
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    backend: tfmpe::backend::BackendKind,
    /// Print one JSON object (the default output is JSON too; kept for scripts).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct Common {
    /// The task whose posterior network is timed.
    #[arg(long, default_value = workloads::TASK)]
    task: String,
    /// Sites S of each set.
    #[arg(long, default_value_t = workloads::SITES)]
    sites: usize,
    /// Sets per training step.
    #[arg(long, default_value_t = workloads::BATCH)]
    batch: usize,
    /// Timed steps (train-step) per repeat.
    #[arg(long, default_value_t = 30)]
    steps_per_repeat: usize,
    /// Timed repeats; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Where to compute: auto (a GPU backend when one works, else cpu), cpu, wgpu or cuda.
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    backend: tfmpe::backend::BackendKind,
    /// Print one JSON object (the default output is JSON too; kept for scripts).
    #[arg(long)]
    json: bool,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// `per_call / seconds` for each of `repeats` (at least one) timed calls of `work`, which must
/// leave the device idle. Warm-up (first launches, graph capture, the allocator) is the
/// caller's.
fn rates(repeats: usize, per_call: f64, mut work: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    (0..repeats.max(1))
        .map(|_| {
            let t0 = Instant::now();
            work()?;
            Ok(per_call / t0.elapsed().as_secs_f64())
        })
        .collect()
}

fn attention(a: AttentionArgs) -> Result<serde_json::Value> {
    let sizes = [a.tokens, a.batch, a.heads, a.head_dim, a.copy_mib];
    if sizes.contains(&0) {
        return Err(Error::Invalid(format!(
            "bench attention: --tokens {}, --batch {}, --heads {}, --head-dim {} and --copy-mib \
             {} must all be at least 1",
            a.tokens, a.batch, a.heads, a.head_dim, a.copy_mib
        )));
    }
    let (dev, why) = Device::open(a.backend)?;
    let be = dev.backend();
    let p = Attention {
        batch: a.batch,
        tokens: a.tokens,
        heads: a.heads,
        head_dim: a.head_dim,
        scale: 1.0 / (a.head_dim as f32).sqrt(),
    };
    let n = a.batch * a.tokens * p.model_dim();
    let rows = a.batch * a.heads * a.tokens;
    let mut rng = StdRng::seed_from_u64(3);
    let qkv: Vec<f32> = (0..3 * n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let qkv = be.upload_f32(&qkv)?;
    let (mut out, mut lse) = (be.alloc(DType::F32, n)?, be.alloc(DType::F32, rows)?);
    let iters = a.iters.max(1);
    let mut forward = || {
        for _ in 0..iters {
            be.attention_fwd(&p, &qkv, None, &mut out, &mut lse)?;
        }
        be.synchronize()
    };
    forward()?;
    let per_s = median(&rates(a.repeats, iters as f64, forward)?);
    // Each copy reads and writes the buffer once.
    let len = (a.copy_mib << 20) / 4;
    let mut src = be.alloc(DType::F32, len)?;
    be.fill(&mut src, 1.0)?; // touched, so that no page is the shared zero page
    let mut dst = be.alloc(DType::F32, len)?;
    let mut copies = || {
        for _ in 0..4 {
            be.copy(&src, 0, &mut dst, 0, len)?;
        }
        be.synchronize()
    };
    copies()?;
    let copies_per_s = median(&rates(a.repeats, 4.0, copies)?);
    let bytes = 4.0 * (4 * n + rows) as f64;
    let flops = 4.0 * (a.batch * a.heads) as f64 * (a.tokens * a.tokens * a.head_dim) as f64;
    let gb_per_s = per_s * bytes / 1e9;
    let copy_gb_per_s = copies_per_s * 8.0 * len as f64 / 1e9;
    Ok(json!({
        "workload": "attention-fwd", "backend": dev.name(), "backend_reason": why,
        "device": be.device_name(), "batch": a.batch, "tokens": a.tokens, "heads": a.heads,
        "head_dim": a.head_dim, "fwd_per_s": per_s, "gb_per_s": gb_per_s,
        "gflop_per_s": per_s * flops / 1e9, "copy_gb_per_s": copy_gb_per_s,
        "fraction_of_copy": gb_per_s / copy_gb_per_s,
    }))
}

pub fn run(w: Workload) -> Result<()> {
    let out = match w {
        Workload::Attention(a) => attention(a)?,
        Workload::TrainStep(c) => on_network(&c, |dev, task| train_step(dev, task, &c))?,
        Workload::Sample { common: c, n, solver, steps, precision } => {
            let precision = Precision::from_name(&precision)?;
            on_network(&c, |dev, task| sample(dev, task, &c, n, &solver, steps, precision))?
        }
    };
    println!("{out}");
    Ok(())
}

/// Opens the device and task of `c`, runs `body`, and adds what describes the run (backend,
/// device, task, tokens, network configuration) to its JSON object.
fn on_network(
    c: &Common, body: impl FnOnce(&Device, &dyn HierarchicalModel) -> Result<serde_json::Value>,
) -> Result<serde_json::Value> {
    let task = task_by_name(&c.task)?;
    let (dev, why) = Device::open(c.backend)?;
    let tokens = Layout::posterior(&*task, c.sites).len();
    let config = TfmpeConfig::reference();
    let mut merged = json!({
        "backend": dev.name(), "backend_reason": why, "device": dev.backend().device_name(),
        "task": task.name(), "sites": c.sites, "tokens": tokens,
        "config": {
            "width": config.width, "layers": config.layers, "heads": config.heads,
            "n_ff": config.n_ff, "label_dim": config.label_dim, "pos_dim": config.pos_dim,
            "group_dim": config.group_dim,
        },
    });
    for (k, v) in body(&dev, &*task)?.as_object().into_iter().flatten() {
        merged[k] = v.clone();
    }
    Ok(merged)
}

fn train_step(dev: &Device, task: &dyn HierarchicalModel, c: &Common) -> Result<serde_json::Value> {
    let mut w1 = TrainStep::new(dev, task, c.sites, c.batch)?;
    let mut steps = w1.steps()?;
    let mut draw = 0u64;
    let mut run_steps = |n: usize| -> Result<()> {
        let mut last = None;
        for _ in 0..n {
            last = Some(steps.step(draw)?);
            draw += 1;
        }
        if let Some(l) = last {
            steps.loss(l)?;
        }
        Ok(())
    };
    run_steps(5)?;
    let spr = c.steps_per_repeat;
    let rates = rates(c.repeats, spr as f64, || run_steps(spr))?;
    Ok(json!({ "workload": "W1", "batch": c.batch, "steps_per_repeat": c.steps_per_repeat,
                "steps_per_s": median(&rates), "steps_per_s_all": rates }))
}

fn sample(
    dev: &Device, task: &dyn HierarchicalModel, c: &Common, n: usize, solver: &str, steps: usize,
    precision: Precision,
) -> Result<serde_json::Value> {
    let s = Solver::from_name(solver, steps)?;
    let mut w2 = Sampling::new(dev, task, c.sites, c.batch)?;
    let mut solve = || w2.sample(dev, n, s, precision);
    solve()?;
    let rates = rates(c.repeats.min(3), n as f64, solve)?;
    Ok(
        json!({ "workload": "W2", "solver": s, "precision": precision.name(), "n_samples": n, "chunk": workloads::SAMPLE_CHUNK,
               "samples_per_s": median(&rates), "samples_per_s_all": rates, "note": "untrained weights" }),
    )
}
