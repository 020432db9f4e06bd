//! The `tfmpe` command: parses arguments, picks a backend, and reports.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tfmpe",
    version,
    about = "Tokenised flow matching for hierarchical simulation-based inference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate, train the surrogate and posterior networks, sample, evaluate, write DIR.
    Run(cli::run::RunArgs),
    /// Sample a saved posterior network for a new observation.
    Sample(cli::sample::SampleArgs),
    /// The posterior's log density at given parameter vectors.
    LogProb(cli::log_prob::LogProbArgs),
    /// Scores a run folder: C2ST against the exact posterior (tasks that have one), and on request
    /// SBC and TARP calibration (--calibration N) and L-C2ST (--lc2st) of its posterior network.
    Eval(cli::eval::EvalArgs),
    /// The paper's benchmark: tasks × methods × budgets × S, ten observations each, scored by
    /// L-C2ST (and C2ST where exact); writes results.csv, table.md and benchmark.svg.
    Benchmark(cli::benchmark::BenchmarkArgs),
    /// The performance workloads (W1 train step, W2 sampling), as JSON.
    #[command(subcommand)]
    Bench(cli::bench::Workload),
    /// Lists the backends this binary can use on this machine.
    Info(cli::info::InfoArgs),
}

fn main() -> ExitCode {
    // Before any thread starts: it sets an environment variable.
    tfmpe::backend::quiet_headless_vulkan();
    let result = match Cli::parse().command {
        Command::Run(a) => cli::run::run(a),
        Command::Sample(a) => cli::sample::run(a),
        Command::LogProb(a) => cli::log_prob::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Benchmark(a) => cli::benchmark::run(a),
        Command::Bench(w) => cli::bench::run(w),
        Command::Info(a) => cli::info::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
