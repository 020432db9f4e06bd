//! `tfmpe benchmark`: the paper's protocol (`tfmpe::benchmark` runs it) into a folder with
//! `results.csv`, `table.md` and `benchmark.svg`; rerunning it resumes.

use std::path::PathBuf;

use tfmpe::benchmark::{run_benchmark, BenchMethod, BenchmarkConfig};
use tfmpe::{Device, Result};

use super::progress::Bars;
use super::SolverArgs;

#[derive(clap::Args)]
pub struct BenchmarkArgs {
    /// Output folder; an existing one is resumed (finished configurations are skipped).
    #[arg(long)]
    pub out: PathBuf,
    /// Shrink everything (budget 500, S = 3, 2 observations, small L-C2ST, 10 epochs, one
    /// synthetic set per simulation) so that a smoke run takes minutes; the flags below still
    /// override.
    #[arg(long)]
    pub quick: bool,
    /// Comma-separated task names [default: the paper's six].
    #[arg(long, value_delimiter = ',')]
    pub tasks: Option<Vec<String>>,
    /// Comma-separated methods (lf, direct, pf, joint, sequential) [default: all five].
    /// sequential is LF in two rounds, the second at each observation's proposal: trained once
    /// per observation, with C2ST only (the model must give its prior density).
    #[arg(long, value_delimiter = ',')]
    pub methods: Option<Vec<BenchMethod>>,
    /// Comma-separated budgets in single-site simulator calls [default: 1000,5000,10000].
    #[arg(long, value_delimiter = ',')]
    pub budgets: Option<Vec<usize>>,
    /// Comma-separated site counts [default: 50].
    #[arg(long, value_delimiter = ',')]
    pub sites: Option<Vec<usize>>,
    /// Observations per configuration; observation k is simulated with prior seed k [default: 10].
    #[arg(long)]
    pub observations: Option<usize>,
    /// Posterior samples per observation [default: 1000].
    #[arg(long)]
    pub samples: Option<usize>,
    /// L-C2ST: data sets from the prior with one posterior draw each [default: 1000].
    #[arg(long)]
    pub lc2st_data_sets: Option<usize>,
    /// L-C2ST: permutation-null classifiers [default: 100].
    #[arg(long)]
    pub lc2st_nulls: Option<usize>,
    /// SBC and TARP data sets per configuration, 0 to skip [default: 100].
    #[arg(long)]
    pub calibration: Option<usize>,
    #[command(flatten)]
    pub train: super::TrainArgs,
    #[command(flatten)]
    pub arch: super::ArchArgs,
    #[command(flatten)]
    pub ode: SolverArgs,
    /// Seeds the simulations, weights and calibration sets of every configuration.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to compute: auto (a GPU backend when one works, else cpu), cpu, wgpu or cuda.
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    pub backend: tfmpe::backend::BackendKind,
}

pub fn run(a: BenchmarkArgs) -> Result<()> {
    let mut cfg = if a.quick { BenchmarkConfig::quick() } else { BenchmarkConfig::default() };
    cfg.tasks = a.tasks.unwrap_or(cfg.tasks);
    cfg.methods = a.methods.unwrap_or(cfg.methods);
    cfg.budgets = a.budgets.unwrap_or(cfg.budgets);
    cfg.sites = a.sites.unwrap_or(cfg.sites);
    cfg.observations = a.observations.unwrap_or(cfg.observations);
    cfg.samples = a.samples.unwrap_or(cfg.samples);
    cfg.lc2st_data_sets = a.lc2st_data_sets.unwrap_or(cfg.lc2st_data_sets);
    cfg.lc2st.null_trials = a.lc2st_nulls.unwrap_or(cfg.lc2st.null_trials);
    cfg.calibration = a.calibration.unwrap_or(cfg.calibration);
    cfg.train = a.train.apply(cfg.train)?;
    cfg.architecture = a.arch.apply(&cfg.architecture)?;
    cfg.solver = a.ode.solver()?;
    cfg.seed = a.seed;
    cfg.check()?;
    let (device, why) = Device::open(a.backend)?;
    eprintln!("tfmpe: backend {why}");
    let bars = Bars::new();
    let rows = run_benchmark(&device, &a.out, &cfg, &bars)?;
    bars.finish();
    eprintln!("tfmpe: {} rows in {}", rows.len(), a.out.join("results.csv").display());
    Ok(())
}
