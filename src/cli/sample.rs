//! `tfmpe sample`: posterior samples for a new observation from a saved posterior network.

use std::path::PathBuf;

use tfmpe::backend::Precision;
use tfmpe::run_folder::{read_observations, write_draws};
use tfmpe::sbi::Sampler;
use tfmpe::{Device, Error, Result};

use super::progress::Bars;

#[derive(clap::Args)]
pub struct SampleArgs {
    /// The posterior checkpoint folder (`DIR/posterior` of a run, or the run folder itself).
    #[arg(long)]
    pub model: PathBuf,
    /// The observed data sets: a CSV in the wide format (one row per data set, columns y.0,
    /// y.1, ...) or the long format (columns dataset, site, the task's inputs, y; one row per
    /// observed value). Every data set is sampled in one batched solve.
    #[arg(long)]
    pub observation: PathBuf,
    /// Posterior draws per data set.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    #[command(flatten)]
    pub ode: super::SolverArgs,
    /// The arithmetic of the network's linear layers: f32, or bf16 (operands rounded to
    /// bfloat16, sums in f32: faster on CPUs with AVX-512 BF16, the same numbers but slower
    /// than f32 elsewhere; CPU backend and a fixed-step solver only). The log density is
    /// always computed in f32.
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Seeds the draws' start noise (each data set's draws equal a call for it alone).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples integrated together (bounds the memory; the samples do not depend on it).
    #[arg(long, default_value_t = Sampler::DEFAULT_CHUNK)]
    pub chunk: usize,
    /// Where to compute: auto (a GPU backend when one works, else cpu), cpu, wgpu or cuda.
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    pub backend: tfmpe::backend::BackendKind,
    /// Add a `log_prob` column: the posterior's log density at each draw (natural space).
    #[arg(long)]
    pub log_prob: bool,
    #[command(flatten)]
    pub density: super::DivergenceArgs,
    /// Output CSV: one row per draw with the parameter columns, led by a `dataset` column when
    /// the file holds several data sets and followed by `log_prob` with --log-prob. `-`
    /// writes to standard output.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: SampleArgs) -> Result<()> {
    let solver = args.ode.solver()?;
    let precision = Precision::from_name(&args.precision)?;
    super::check_samples(args.samples)?;
    super::check_chunk(args.chunk)?;
    let (device, why) = Device::open(args.backend)?;
    eprintln!("tfmpe: backend {why}");
    let (mut net, task) = super::load_model(&device, &args.model)?;
    let data = read_observations(&args.observation, &*task)?;
    let sites = data[0].sites;
    if let Some(other) = data.iter().find(|d| d.sites != sites) {
        return Err(Error::Invalid(format!(
            "{}: data sets of {sites} and {} sites; sample each site count in its own call",
            args.observation.display(),
            other.sites
        )));
    }
    let bars = Bars::new();
    let sampler = Sampler::new(&device, solver).with_chunk(args.chunk).with_precision(precision)?;
    let sets = sampler.posteriors(&mut net, &*task, &data, args.samples, args.seed, &bars)?;
    let log_prob = if args.log_prob {
        let divergence = args.density.divergence(net.flow_dim(&*task, sites), args.seed)?;
        let densities: Result<Vec<Vec<f64>>> = data
            .iter()
            .zip(&sets)
            .map(|(obs, draws)| sampler.log_prob(&mut net, &*task, obs, draws, divergence, &bars))
            .collect();
        match densities {
            Ok(all) => Some(all),
            Err(e) => {
                // The draws are finished: keep them, without the column that failed.
                bars.finish();
                write_draws(&args.out, &*task, sites, sets, None)?;
                return Err(Error::Invalid(format!(
                    "{e}; the draws were written to {} without a log_prob column",
                    args.out.display()
                )));
            }
        }
    } else {
        None
    };
    bars.finish();
    write_draws(&args.out, &*task, sites, sets, log_prob)?;
    let to = if args.out.as_os_str() == "-" {
        "standard output".to_string()
    } else {
        args.out.display().to_string()
    };
    eprintln!(
        "tfmpe: wrote {} draws for each of {} data sets ({sites} sites) to {to}",
        args.samples,
        data.len(),
    );
    Ok(())
}
