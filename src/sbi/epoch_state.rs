//! A training phase's state at the end of each epoch (weights, Adam's moments, the best
//! weights so far and the record), saved so that an interrupted phase goes on from its last
//! completed epoch. The noise of each step is drawn from the step's number and the batch order
//! is drawn again for the epochs done, so the resumed phase trains exactly as an uninterrupted
//! one.

use std::collections::HashMap;
use std::path::PathBuf;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use super::train::TrainReport;
use crate::error::{Error, Result};
use crate::nn::AdamState;
use crate::tape::ParamStore;

/// Where a phase keeps its epoch state, and whether to go on from one found there.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochFile {
    pub path: PathBuf,
    pub resume: bool,
}

/// The counters beside the tensors, as the file's metadata.
#[derive(Serialize, Deserialize)]
struct Counters {
    epoch: usize,
    last_improvement: usize,
    adam_step: u32,
    report: TrainReport,
}

/// Everything a phase needs to go on after `epoch` completed epochs.
pub(super) struct EpochState {
    pub epoch: usize,
    pub last_improvement: usize,
    pub weights: Vec<Vec<f32>>,
    pub best: Vec<Vec<f32>>,
    pub adam: AdamState,
    pub report: TrainReport,
}

const KINDS: [&str; 4] = ["weights", "best", "m", "v"];

impl EpochState {
    pub fn save(&self, file: &EpochFile) -> Result<()> {
        let arrays = [&self.weights, &self.best, &self.adam.m, &self.adam.v];
        let bytes: Vec<(String, usize, Vec<u8>)> = KINDS
            .iter()
            .zip(arrays)
            .flat_map(|(kind, list)| {
                list.iter().enumerate().map(move |(i, v)| {
                    (
                        format!("{kind}.{i}"),
                        v.len(),
                        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    )
                })
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, len, b)| {
                TensorView::new(Dtype::F32, vec![*len], b)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| Error::Invalid(format!("epoch state `{name}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let counters = Counters {
            epoch: self.epoch,
            last_improvement: self.last_improvement,
            adam_step: self.adam.step,
            report: self.report.clone(),
        };
        let meta = serde_json::to_string(&counters)
            .map_err(|e| Error::Invalid(format!("epoch state: {e}")))?;
        let data = safetensors::serialize(views, Some(HashMap::from([("state".into(), meta)])))
            .map_err(|e| Error::Invalid(format!("epoch state: {e}")))?;
        if let Some(dir) = file.path.parent() {
            crate::io::ensure_dir(dir)?;
        }
        crate::io::atomic_write(&file.path, &data)
    }

    /// The state saved for a store shaped like `params`, when resuming and one is there.
    pub fn load(file: &EpochFile, params: &ParamStore) -> Result<Option<EpochState>> {
        if !file.resume || !file.path.is_file() {
            return Ok(None);
        }
        let shown = file.path.display();
        let bad = |what: String| {
            Error::Invalid(format!("{shown}: {what}; delete it to train this phase again"))
        };
        let bytes = std::fs::read(&file.path)
            .map_err(|source| Error::Io { path: shown.to_string(), source })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("corrupt ({e})")))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let text = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("state"))
            .ok_or_else(|| bad("no counters".into()))?;
        let c: Counters = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let sizes: Vec<usize> = params.iter().map(|p| p.value.len()).collect();
        let mut lists = Vec::new();
        for kind in KINDS {
            let list = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let view = st.tensor(&format!("{kind}.{i}")).map_err(|e| bad(e.to_string()))?;
                    if view.shape() != [n] {
                        return Err(bad(format!("`{kind}.{i}` does not fit this network")));
                    }
                    Ok(view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect())
                })
                .collect::<Result<Vec<Vec<f32>>>>()?;
            lists.push(list);
        }
        let [weights, best, m, v]: [Vec<Vec<f32>>; 4] =
            lists.try_into().map_err(|_| bad("missing tensors".into()))?;
        Ok(Some(EpochState {
            epoch: c.epoch,
            last_improvement: c.last_improvement,
            weights,
            best,
            adam: AdamState { m, v, step: c.adam_step },
            report: c.report,
        }))
    }
}
