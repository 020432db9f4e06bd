//! `tfmpe bench`: the performance workloads of DESIGN §12 (W1 train step, W2 sampling), on
//! the benchmark configuration, printed as JSON.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use tfmpe::model::ode::Solver;
use tfmpe::model::tfmpe::TfmpeConfig;
use tfmpe::model::tokens::Layout;
use tfmpe::sbi::network::Network;
use tfmpe::sbi::train::{Sets, Stepper, TrainConfig};
use tfmpe::sbi::{new_network, sample_posterior, Quiet, Role};
use tfmpe::tasks::{simulate_dataset, task_by_name, HierarchicalModel};
use tfmpe::{Device, Result};

#[derive(clap::Subcommand)]
pub enum Workload {
    /// W1: forward + backward + AdamW steps of the posterior network.
    TrainStep(Common),
    /// W2: posterior samples for one observation.
    Sample {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1000)]
        n: usize,
        #[arg(long, default_value = "euler")]
        solver: String,
        #[arg(long, default_value_t = 100)]
        steps: usize,
    },
}

#[derive(clap::Args)]
pub struct Common {
    #[arg(long, default_value = "hier-gaussian-linear")]
    task: String,
    #[arg(long, default_value_t = 50)]
    sites: usize,
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Timed steps (train-step) per repeat.
    #[arg(long, default_value_t = 30)]
    steps_per_repeat: usize,
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    backend: tfmpe::backend::BackendKind,
    /// Print one JSON object (the default output is JSON too; kept for scripts).
    #[arg(long)]
    json: bool,
}

/// A posterior network and `n_sets` data sets simulated directly, standardised by their own
/// statistics: the shapes and value ranges of a real run.
fn setup(
    dev: &Device,
    task: &dyn HierarchicalModel,
    sites: usize,
    n_sets: usize,
) -> Result<(Network, Sets)> {
    let mut rng = StdRng::seed_from_u64(1);
    let (mut cond, mut target) = (Vec::new(), Vec::new());
    for _ in 0..n_sets {
        let d = simulate_dataset(task, sites, &mut rng);
        cond.extend(d.obs);
        target.extend(task.to_unconstrained(&d.params, sites));
    }
    let net = new_network(
        dev,
        task,
        Role::Posterior,
        sites,
        &cond,
        &target,
        &TfmpeConfig::default(),
        0,
    )?;
    let sets = Sets {
        cond: net.standardize(&cond, true)?,
        target: net.standardize(&target, false)?,
    };
    Ok((net, sets))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

pub fn run(w: Workload) -> Result<()> {
    let common = match &w {
        Workload::TrainStep(c) | Workload::Sample { common: c, .. } => c,
    };
    let task = task_by_name(&common.task)?;
    let (dev, why) = Device::open(common.backend)?;
    let tokens = Layout::posterior(&*task, common.sites).len();
    let base = json!({
        "backend": dev.name(), "backend_reason": why, "device": dev.backend().device_name(),
        "task": task.name(), "sites": common.sites, "tokens": tokens,
        "config": { "width": 64, "layers": 2, "heads": 16, "n_ff": 2, "label_dim": 32, "pos_dim": 8, "group_dim": 8 },
    });
    let out = match w {
        Workload::TrainStep(c) => {
            // 16 distinct batches, cycled, as the PyTorch peer does.
            let (mut net, sets) = setup(&dev, &*task, c.sites, 16 * c.batch)?;
            let cfg = TrainConfig {
                batch: c.batch,
                ..Default::default()
            };
            let layout = net.config.layout.clone();
            let mut stepper = Stepper::new(&dev, &layout, &net.tape, &cfg)?;
            let idx: Vec<usize> = (0..16 * c.batch).collect();
            let batches: Vec<&[usize]> = idx.chunks(c.batch).collect();
            let mut draw = 0u64;
            let mut run_steps = |n: usize, net: &mut Network| -> Result<()> {
                let mut last = None;
                for _ in 0..n {
                    let b = batches[draw as usize % batches.len()];
                    last = Some(stepper.step(&mut net.tape, &net.model, &sets, b, 0, draw)?);
                    draw += 1;
                }
                if let Some(l) = last {
                    net.tape.to_vec(l)?; // waits for the device, as the peer's float(loss) does
                }
                Ok(())
            };
            run_steps(5, &mut net)?;
            let mut rates = Vec::new();
            for _ in 0..c.repeats {
                let t0 = Instant::now();
                run_steps(c.steps_per_repeat, &mut net)?;
                rates.push(c.steps_per_repeat as f64 / t0.elapsed().as_secs_f64());
            }
            json!({ "workload": "W1", "batch": c.batch, "steps_per_repeat": c.steps_per_repeat,
                    "steps_per_s": median(&rates), "steps_per_s_all": rates })
        }
        Workload::Sample {
            common: c,
            n,
            solver,
            steps,
        } => {
            let s = Solver::from_name(&solver, steps)?;
            let (mut net, _) = setup(&dev, &*task, c.sites, 4 * c.batch)?;
            let obs = simulate_dataset(&*task, c.sites, &mut StdRng::seed_from_u64(2)).obs;
            let mut times = Vec::new();
            for r in 0..=c.repeats.min(3) {
                let t0 = Instant::now();
                sample_posterior(&dev, &mut net, &*task, &obs, n, s, 0, 1000, &Quiet)?;
                if r > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            let rates: Vec<f64> = times.iter().map(|t| n as f64 / t).collect();
            json!({ "workload": "W2", "solver": s, "n_samples": n, "chunk": 1000,
                    "samples_per_s": median(&rates), "samples_per_s_all": rates, "note": "untrained weights" })
        }
    };
    let mut merged = base;
    for (k, v) in out.as_object().into_iter().flatten() {
        merged[k] = v.clone();
    }
    println!("{merged}");
    Ok(())
}
