//! `tfmpe log-prob`: the posterior's log density at given parameter vectors.

use std::path::PathBuf;

use tfmpe::run_folder::{read_observation, read_parameter_rows};
use tfmpe::sbi::Sampler;
use tfmpe::{io::Table, Device, Result};

use super::progress::Bars;

#[derive(clap::Args)]
pub struct LogProbArgs {
    /// The posterior checkpoint folder (`DIR/posterior` of a run, or the run folder itself).
    #[arg(long)]
    pub model: PathBuf,
    /// The observed data set (one, in the wide or long format).
    #[arg(long)]
    pub observation: PathBuf,
    /// A CSV of parameter vectors, one per row, with the task's parameter columns (a
    /// `samples.csv` works; other columns are ignored).
    #[arg(long)]
    pub params: PathBuf,
    #[command(flatten)]
    pub ode: super::SolverArgs,
    #[command(flatten)]
    pub density: super::DivergenceArgs,
    /// Seeds the Hutchinson probes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Parameter vectors integrated together (bounds the memory).
    #[arg(long, default_value_t = Sampler::DEFAULT_CHUNK)]
    pub chunk: usize,
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    pub backend: tfmpe::backend::BackendKind,
    /// Output CSV: the parameter columns and `log_prob`, one row per vector; `-` writes to
    /// standard output.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: LogProbArgs) -> Result<()> {
    let solver = args.ode.solver()?;
    super::check_chunk(args.chunk)?;
    let (device, why) = Device::open(args.backend)?;
    eprintln!("tfmpe: backend {why}");
    let (mut net, task) = super::load_model(&device, &args.model)?;
    let obs = read_observation(&args.observation, &*task, None)?;
    let params = read_parameter_rows(&args.params, &*task, obs.sites)?;
    let divergence = args.density.divergence(net.flow_dim(&*task, obs.sites), args.seed)?;
    let bars = Bars::new();
    let sampler = Sampler::new(&device, solver).with_chunk(args.chunk);
    let lp = sampler.log_prob(&mut net, &*task, &obs, &params, divergence, &bars)?;
    bars.finish();
    let mut columns = task.parameter_names(obs.sites);
    columns.push("log_prob".into());
    let rows: Vec<Vec<f64>> = params
        .into_iter()
        .zip(lp)
        .map(|(mut p, l)| {
            p.push(l);
            p
        })
        .collect();
    let count = rows.len();
    Table { columns, rows }.write(&args.out)?;
    eprintln!("tfmpe: wrote the log density at {} parameter vectors", count);
    Ok(())
}
