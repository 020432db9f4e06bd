//! What a run will hold, worked out before any work: token counts and training-set counts by
//! checked arithmetic (a size that overflows is an error, never a panic), and the host memory of
//! the largest arrays, refused with the number and the fix when the machine has less.

use super::config::{Method, RunConfig};
use crate::error::{Error, Result};
use crate::tasks::HierarchicalModel;

/// Bytes per stored value of a set: the f64 row, its f32 standardised copy, and the copies the
/// pipelines make while moving rows between phases (measured peaks stay below this).
const BYTES_PER_VALUE: u64 = 3 * 8 + 2 * 4;

/// Checks that `cfg` makes whole training batches and fits in memory for `task`.
pub(super) fn check(cfg: &RunConfig, task: &dyn HierarchicalModel) -> Result<()> {
    let too_large = |what: &str| {
        Error::Invalid(format!("{what} is too large to represent; lower --sites or --budget"))
    };
    let max_sites = cfg.site_counts().max();
    let per_site = task.local_dim() + task.obs_dim() * (1 + task.functional_input_dim());
    let per_set = max_sites
        .checked_mul(per_site)
        .and_then(|v| v.checked_add(task.global_dim()))
        .ok_or_else(|| too_large("the number of values of one data set"))?;
    // Training sets: LF makes one per single-site simulation, direct one per `sites` of them;
    // pf one per drawn site count (at most the budget), padded to the largest.
    let sets = match cfg.method {
        Method::Lf | Method::Pf | Method::Joint => cfg.budget,
        Method::Direct => cfg.budget / cfg.sites,
    };
    check_batches(cfg, sets)?;
    // LF's pool may hold more sets than simulations.
    let sets = match cfg.method {
        Method::Lf | Method::Joint => cfg.pool_sets(sets),
        Method::Direct | Method::Pf => sets,
    };
    let values = (sets as u64)
        .checked_mul(per_set as u64)
        .and_then(|v| v.checked_add(cfg.budget as u64 * (per_site + task.global_dim()) as u64))
        .ok_or_else(|| too_large("the training data"))?;
    let bytes =
        values.checked_mul(BYTES_PER_VALUE).ok_or_else(|| too_large("the training data"))?;
    if let Some(available) = available_memory() {
        if bytes > available {
            return Err(Error::Invalid(format!(
                "the training sets of {sets} data sets of up to {max_sites} sites need about {} of \
                 memory but {} is available; lower --budget or --sites",
                gib(bytes),
                gib(available)
            )));
        }
    }
    Ok(())
}

/// Every network must get at least one whole batch of training sets after the validation
/// split, or its training cannot take a step.
fn check_batches(cfg: &RunConfig, sets: usize) -> Result<()> {
    // pf's set count is drawn at random; its networks shrink their batches to what they get.
    if cfg.method == Method::Pf {
        return Ok(());
    }
    // A sequential run's first round has its share of the budget only.
    let sets = if cfg.rounds > 1 { sets / cfg.rounds } else { sets };
    let train = sets.saturating_sub(if sets < 2 { sets } else { cfg.validation_count(sets) });
    let (what, needed) = match cfg.method {
        Method::Lf | Method::Joint if cfg.rounds > 1 => {
            ("single-site simulations in the first round", cfg.budget / cfg.rounds)
        }
        Method::Lf | Method::Joint => ("single-site simulations", cfg.budget),
        Method::Direct => ("data sets of --sites sites (--budget / --sites)", sets),
        Method::Pf => unreachable!("returned above"),
    };
    for (network, batch) in
        [("posterior", cfg.train.batch), ("surrogate", cfg.surrogate_train.batch)]
    {
        if cfg.method == Method::Direct && network == "surrogate" {
            continue;
        }
        if sets < 2 || train < batch {
            return Err(Error::Invalid(format!(
                "--budget {} gives {needed} {what}, {train} of them for training after the \
                 validation split, fewer than one batch of {batch} for the {network}; raise \
                 --budget or lower --batch-size",
                cfg.budget
            )));
        }
    }
    Ok(())
}

/// Refuses `rows` draws of `dim` values each (host rows of f64, plus each row's own header)
/// when they would not fit in the memory the system has free.
pub fn check_draws(rows: usize, dim: usize) -> Result<()> {
    let bytes = (dim as u64)
        .checked_mul(8)
        .and_then(|b| b.checked_add(24))
        .and_then(|b| b.checked_mul(rows as u64));
    let free = available_memory();
    match (bytes, free) {
        (Some(b), Some(f)) if b <= f => Ok(()),
        (Some(_), None) => Ok(()),
        (b, _) => Err(Error::Invalid(format!(
            "{rows} posterior draws of {dim} values need {}, more than the {} this machine has \
             free; draw fewer samples",
            b.map_or("more than 16 EiB".to_string(), gib),
            free.map_or("memory".to_string(), gib)
        ))),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The memory the system can give without swapping (Linux `MemAvailable`); `None` elsewhere.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
