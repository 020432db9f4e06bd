//! # tfmpe
//!
//! Amortised Bayesian inference for hierarchical simulation models by Tokenised Flow Matching
//! for Posterior Estimation (TFMPE) with likelihood factorisation.
//!
//! A whole run from the library: train the posterior of a built-in task from 2 000
//! single-site simulations, then draw from it for a simulated observation.
//!
//! ```no_run
//! use rand::SeedableRng;
//! use tfmpe::sbi::{run, Quiet, RunConfig, Sampler};
//! use tfmpe::tasks::{simulate_dataset, task_by_name};
//! use tfmpe::model::ode::Solver;
//!
//! let task = task_by_name("hier-gaussian-linear")?;
//! let device = tfmpe::Device::cpu();
//! let mut trained = run(&device, &*task, &RunConfig::new(10, 2000), &Quiet)?;
//! let data = simulate_dataset(&*task, 10, &mut rand::rngs::StdRng::seed_from_u64(3))?;
//! let sampler = Sampler::new(&device, Solver::from_name("rk4", 25)?);
//! let draws = sampler.posterior(&mut trained.posterior, &*task, &data.observed(), 1000, 0, &Quiet)?;
//! assert_eq!(draws[0].len(), task.param_dim(10));
//! # Ok::<(), tfmpe::Error>(())
//! ```
//!
//! Your own model: [`tasks::CustomModel`] (priors from a vocabulary, a batched simulator), or
//! a model file for the command line ([`tasks::custom::model_file`]).
//!
//! The crate is layered; each layer calls only the ones below it:
//!
//! - [`backend`]: the kernel contract ([`backend::Backend`]), its implementations and
//!   [`Device`], the handle the layers above pass around. The CPU backend is always present
//!   and is the reference.
//! - [`tape`]: a small reverse-mode autodiff tape whose backward rules call the same kernels.
//! - [`nn`]: layers (Linear, LayerNorm, multi-head attention, the post-LN encoder) and AdamW.
//! - [`model`]: tokens, the TFMPE velocity field, flow matching, ODE samplers, checkpoints.
//! - [`sbi`]: pipelines (LF, direct), the training loop, posterior sampling, calibration draws.
//! - [`tasks`]: hierarchical models (the user-model trait and the benchmark tasks).
//! - [`metrics`]: posterior-quality metrics (C2ST, L-C2ST, SBC, TARP), classifiers trained on
//!   the tape.
//! - [`report`]: the run's plots as SVG, from plain data; it depends on nothing above.
//! - [`run_folder`]: a run's output folder (checkpoints, CSVs, plots, `report.json`) and its
//!   evaluation (C2ST, SBC, TARP): what `tfmpe run`, `sample` and `eval` read and write.
//! - [`benchmark`]: the paper's protocol (tasks × methods × budgets × site counts, scored by
//!   L-C2ST and C2ST) into `results.csv`, `table.md` and a plot: what `tfmpe benchmark` runs.
//! - [`workloads`]: the benchmark workloads (training step, sampling) on top of [`sbi`], shared
//!   by `tfmpe bench` and the criterion benches.

pub mod backend;
pub mod benchmark;
pub mod error;
pub mod io;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod report;
pub mod run_folder;
pub mod sbi;
pub mod tape;
pub mod tasks;
pub mod workloads;

pub use backend::Device;
pub use error::{Error, Result};
