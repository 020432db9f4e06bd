//! Finished work is kept: each training saves its state after every epoch, and each trained
//! network is saved with its training record as its phase ends, so that Ctrl-C or a crash
//! loses at most the epoch under way. A resumed run loads a finished network instead of training
//! it again, and goes on with an unfinished training from its last completed epoch. Every
//! phase draws from its own seed streams, so a resumed run gives the same results as an
//! uninterrupted one.

use std::path::PathBuf;

use super::epoch_state::EpochFile;
use super::network::Network;
use super::train::TrainReport;
use crate::error::{Error, Result};
use crate::Device;

/// The training record beside a saved network's checkpoint.
const RECORD: &str = "training.json";
/// The state a training keeps after every epoch until its network is saved.
const EPOCH_STATE: &str = "epoch.safetensors";

/// Where a run keeps its finished networks (`surrogate/`, `posterior/`).
#[derive(Clone, Debug, Default)]
pub struct Checkpoints {
    /// `None`: nothing is saved during the run.
    pub dir: Option<PathBuf>,
    /// Load a network found there instead of training it.
    pub resume: bool,
}

impl Checkpoints {
    /// The saved network of `role` and its record, when resuming and both are there.
    pub(super) fn load(&self, dev: &Device, role: &str) -> Result<Option<(Network, TrainReport)>> {
        let Some(dir) = self.dir.as_ref().filter(|_| self.resume).map(|d| d.join(role)) else {
            return Ok(None);
        };
        let record = dir.join(RECORD);
        if !record.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&record)
            .map_err(|source| Error::Io { path: record.display().to_string(), source })?;
        let report: TrainReport = serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!(
                "{}: {e}; delete {} to train the {role} again",
                record.display(),
                dir.display()
            ))
        })?;
        Ok(Some((Network::load(dev, &dir)?, report)))
    }

    /// Where the training of `role` keeps its state after every epoch.
    pub(super) fn epoch_file(&self, role: &str) -> Option<EpochFile> {
        let path = self.dir.as_ref()?.join(role).join(EPOCH_STATE);
        Some(EpochFile { path, resume: self.resume })
    }

    /// Saves `net` and its record as `role`; the record goes last, so that a checkpoint is
    /// resumed from only once it is complete.
    pub(super) fn save(&self, role: &str, net: &Network, report: &TrainReport) -> Result<()> {
        let Some(dir) = self.dir.as_ref().map(|d| d.join(role)) else {
            return Ok(());
        };
        net.save(&dir)?;
        // The finished network replaces the state its training kept for resuming mid-phase.
        let state = dir.join(EPOCH_STATE);
        if state.exists() {
            std::fs::remove_file(&state)
                .map_err(|source| Error::Io { path: state.display().to_string(), source })?;
        }
        let text = serde_json::to_string(report)
            .map_err(|e| Error::Invalid(format!("{role} training record: {e}")))?;
        crate::io::atomic_write(&dir.join(RECORD), text.as_bytes())
    }
}
