//! The TFMPE velocity field: a transformer encoder over tokens that predicts a velocity for every
//! target token (docs/architecture.md#model).
//!
//! Each token's features are `[value, label_emb, pos_emb, t, group_emb(, fourier(inputs))]`,
//! mapped by one Linear layer to the model width; post-LN encoder blocks follow; a Linear head
//! reads the target tokens only.
//!
//! The Fourier block `[sin 2πxF, cos 2πxF]` (trainable frequencies F) exists when the model has
//! functional inputs. Tokens without inputs (parameters, padding) get an all-zero block, which no
//! real input can produce: each frequency contributes a (sin, cos) pair on the unit circle, so a
//! real input's block has squared norm exactly `half`, and zero is unambiguous. (A sentinel input
//! value such as −1e8 would instead produce an arbitrary point on the same circles.)

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::tokens::TokenBatch;
use crate::backend::Device;
use crate::backend::{Buffer, DType};
use crate::error::{Error, Result};
use crate::nn::{Embedding, FourierFeatures, Linear, Transformer, TransformerConfig};
use crate::tape::{ParamStore, Tape, Var};

/// Architecture. The defaults are the benchmark configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TfmpeConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub n_ff: usize,
    pub label_dim: usize,
    pub pos_dim: usize,
    pub group_dim: usize,
    /// Table sizes of the label, position and group embeddings.
    pub n_labels: usize,
    pub max_positions: usize,
    pub max_groups: usize,
    /// Functional-input values per input token (0: the model has none, and no Fourier block).
    #[serde(default)]
    pub input_dim: usize,
    /// Fourier features of the inputs (sin and cos of `fourier_dim / 2` frequencies).
    #[serde(default = "default_fourier_dim")]
    pub fourier_dim: usize,
}

fn default_fourier_dim() -> usize {
    64
}

impl Default for TfmpeConfig {
    /// The reference's network with a wider group embedding (32 in place of 8): a target token
    /// finds its own site's tokens by their group embedding alone, and 8 random dimensions
    /// tell ten or more sites apart too weakly for posteriors much narrower than the prior
    /// (docs/architecture.md#model).
    fn default() -> Self {
        TfmpeConfig { group_dim: 32, ..TfmpeConfig::reference() }
    }
}

/// Architecture settings a user may change (`run --width …`); `None` keeps the base value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchOverrides {
    pub width: Option<usize>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    pub group_dim: Option<usize>,
    pub fourier_dim: Option<usize>,
}

impl TfmpeConfig {
    /// The reference implementation's benchmark network, which the PyTorch peer of the
    /// performance workloads builds too: width 64, 2 layers of 16 heads, n_ff 2, embeddings of
    /// 32 (label), 8 (position) and 8 (group).
    pub fn reference() -> Self {
        TfmpeConfig {
            width: 64,
            layers: 2,
            heads: 16,
            n_ff: 2,
            label_dim: 32,
            pos_dim: 8,
            group_dim: 8,
            n_labels: 3,
            max_positions: 128,
            max_groups: 128,
            input_dim: 0,
            fourier_dim: default_fourier_dim(),
        }
    }

    /// This configuration with the settings `o` gives, checked.
    pub fn overridden(&self, o: &ArchOverrides) -> Result<TfmpeConfig> {
        let mut c = self.clone();
        for (flag, value, field) in [
            ("--width", o.width, &mut c.width),
            ("--layers", o.layers, &mut c.layers),
            ("--heads", o.heads, &mut c.heads),
            ("--group-dim", o.group_dim, &mut c.group_dim),
            ("--fourier-dim", o.fourier_dim, &mut c.fourier_dim),
        ] {
            match value {
                Some(0) => return Err(Error::Invalid(format!("{flag} must be at least 1"))),
                Some(v) => *field = v,
                None => {}
            }
        }
        if !c.fourier_dim.is_multiple_of(2) {
            return Err(Error::Invalid(format!(
                "--fourier-dim {} must be even: a sine and a cosine per frequency",
                c.fourier_dim
            )));
        }
        c.check()?;
        Ok(c)
    }

    /// Refuses sizes no network can be built with: zero width or heads, a width the heads do
    /// not divide, an odd Fourier block, or more parameters than [`MAX_PARAMETERS`].
    pub fn check(&self) -> Result<()> {
        match self.parameter_count() {
            Some(n) if n <= MAX_PARAMETERS => {}
            count => {
                return Err(Error::Invalid(format!(
                    "the network's sizes (width {}, {} layers, n_ff {}, embeddings {}/{}/{}, \
                     tables of {}/{}/{} rows) make {} parameters, more than the {MAX_PARAMETERS} \
                     this build accepts: choose smaller sizes (a saved network: is its \
                     config.json edited?)",
                    self.width,
                    self.layers,
                    self.n_ff,
                    self.label_dim,
                    self.pos_dim,
                    self.group_dim,
                    self.n_labels,
                    self.max_positions,
                    self.max_groups,
                    count.map_or("overflowing".to_string(), |n| n.to_string())
                )))
            }
        }
        if self.width == 0 || self.heads == 0 {
            return Err(Error::Invalid(format!(
                "width {} and heads {} must be at least 1",
                self.width, self.heads
            )));
        }
        if self.input_dim > 0 && (self.fourier_dim == 0 || !self.fourier_dim.is_multiple_of(2)) {
            return Err(Error::Invalid(format!(
                "fourier_dim {} must be a positive even number (sin and cos per frequency)",
                self.fourier_dim
            )));
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(Error::Invalid(format!(
                "width {} is not divisible by {} heads",
                self.width, self.heads
            )));
        }
        Ok(())
    }

    /// Features per token before the embedding layer: value, label, position, t, group and,
    /// with functional inputs, their Fourier features.
    pub fn in_dim(&self) -> usize {
        1 + self.label_dim + self.pos_dim + 1 + self.group_dim + self.fourier_features()
    }

    /// Width of the Fourier block (0 without functional inputs).
    pub fn fourier_features(&self) -> usize {
        if self.input_dim > 0 {
            self.fourier_dim
        } else {
            0
        }
    }

    /// The number of trainable values, or `None` when it overflows: embedding tables, the
    /// embedding layer, per encoder layer attention (QKV and output), feed-forward and two
    /// layer norms, the head and the Fourier frequencies.
    pub fn parameter_count(&self) -> Option<usize> {
        let w = self.width;
        let sum = |terms: &[Option<usize>]| -> Option<usize> {
            terms.iter().try_fold(0usize, |acc, t| acc.checked_add((*t)?))
        };
        let in_dim = sum(&[
            Some(2),
            Some(self.label_dim),
            Some(self.pos_dim),
            Some(self.group_dim),
            Some(self.fourier_features()),
        ])?;
        let ff = w.checked_mul(self.n_ff)?;
        let layer = sum(&[
            w.checked_mul(w)?.checked_mul(4),
            w.checked_mul(ff)?.checked_mul(2),
            w.checked_mul(8),
            ff.checked_add(0),
        ])?;
        sum(&[
            self.n_labels.checked_mul(self.label_dim),
            self.max_positions.checked_mul(self.pos_dim),
            self.max_groups.checked_mul(self.group_dim),
            in_dim.checked_add(1)?.checked_mul(w),
            layer.checked_mul(self.layers),
            w.checked_add(1),
            self.input_dim.checked_mul(self.fourier_dim),
        ])
    }

    /// Checks that every token id of a batch fits the embedding tables.
    pub fn check_ids(&self, tb: &TokenBatch) -> Result<()> {
        for (what, ids, size) in [
            ("label", &tb.labels, self.n_labels),
            ("position", &tb.positions, self.max_positions),
            ("group", &tb.groups, self.max_groups),
        ] {
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= size) {
                return Err(Error::Invalid(format!(
                    "token {what} {id} does not fit the model's {what} table of {size}: \
                     the model was built for fewer variables or sites"
                )));
            }
        }
        Ok(())
    }
}

/// The network and the ids of its parameters in a [`ParamStore`].
pub struct Tfmpe {
    pub config: TfmpeConfig,
    label_emb: Embedding,
    pos_emb: Embedding,
    group_emb: Embedding,
    embed: Linear,
    encoder: Transformer,
    head: Linear,
    fourier: Option<FourierFeatures>,
}

/// A batch's token ids, masks and gather indices, on the device, reused step after step.
pub struct DeviceTokens {
    pub batch: usize,
    pub n_cond: usize,
    pub n_target: usize,
    labels: Buffer,
    positions: Buffer,
    groups: Buffer,
    /// Which sample each token belongs to (to broadcast the per-sample time).
    sample_of_token: Buffer,
    /// Row of each target token within `[batch · tokens]`.
    target_rows: Buffer,
    key_mask: Option<Buffer>,
    pub target_mask: Option<Buffer>,
    /// Each token's row in the Fourier table (0: none), see [`TokenBatch::input_index`].
    input_index: Option<Buffer>,
    /// Rows of functional inputs the batch carries.
    pub input_rows: usize,
}

impl DeviceTokens {
    pub fn upload(dev: &Device, tb: &TokenBatch) -> Result<Self> {
        let b = dev.backend();
        let n = tb.tokens();
        let sample_of_token: Vec<u32> = (0..tb.batch * n).map(|i| (i / n) as u32).collect();
        let target_rows: Vec<u32> = (0..tb.batch)
            .flat_map(|s| (0..tb.n_target).map(move |j| (s * n + tb.n_cond + j) as u32))
            .collect();
        Ok(DeviceTokens {
            batch: tb.batch,
            n_cond: tb.n_cond,
            n_target: tb.n_target,
            labels: b.upload_u32(&tb.labels)?,
            positions: b.upload_u32(&tb.positions)?,
            groups: b.upload_u32(&tb.groups)?,
            sample_of_token: b.upload_u32(&sample_of_token)?,
            target_rows: b.upload_u32(&target_rows)?,
            key_mask: tb.key_mask.as_ref().map(|m| b.upload_f32(m)).transpose()?,
            target_mask: tb.target_mask.as_ref().map(|m| b.upload_f32(m)).transpose()?,
            input_index: tb.input_index.as_ref().map(|m| b.upload_u32(m)).transpose()?,
            input_rows: tb.input_rows,
        })
    }

    pub fn tokens(&self) -> usize {
        self.n_cond + self.n_target
    }

    fn ids(&self, tape: &mut Tape, buf: &Buffer) -> Result<Var> {
        debug_assert_eq!(buf.dtype(), DType::U32);
        tape.input_copy(buf, &[buf.len()])
    }
}

/// The largest network [`Tfmpe::new`] builds: 2^30 values, 4 GiB of f32 weights, far beyond
/// any model of this crate (the benchmark network has about 70 000).
pub const MAX_PARAMETERS: usize = 1 << 30;

impl Tfmpe {
    /// Registers a freshly initialised network in `params`, drawing weights from `seed`.
    pub fn new(params: &mut ParamStore, config: TfmpeConfig, seed: u64) -> Result<Self> {
        // Sizes come from a file that may have been edited: refuse what no machine can hold
        // before allocating (an allocation that fails aborts the process).
        config.check()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let label_emb =
            Embedding::new(params, "embed.label", config.n_labels, config.label_dim, &mut rng)?;
        let pos_emb = Embedding::new(
            params,
            "embed.position",
            config.max_positions,
            config.pos_dim,
            &mut rng,
        )?;
        let group_emb =
            Embedding::new(params, "embed.group", config.max_groups, config.group_dim, &mut rng)?;
        let embed =
            Linear::new(params, "embed.linear", config.in_dim(), config.width, true, &mut rng)?;
        let tc = TransformerConfig {
            width: config.width,
            layers: config.layers,
            heads: config.heads,
            n_ff: config.n_ff,
        };
        let encoder = Transformer::new(params, "encoder", tc, &mut rng)?;
        let head = Linear::new(params, "head", config.width, 1, true, &mut rng)?;
        // Drawn last, so that a model without inputs is initialised as before they existed.
        let fourier = (config.input_dim > 0)
            .then(|| {
                let half = config.fourier_dim / 2;
                FourierFeatures::new(params, "embed.fourier", config.input_dim, half, &mut rng)
            })
            .transpose()?;
        Ok(Tfmpe { config, label_emb, pos_emb, group_emb, embed, encoder, head, fourier })
    }

    /// Velocities of the target tokens, `[batch · n_target, 1]`, for condition values
    /// `cond: [batch, n_cond]`, current target values `xt: [batch, n_target]`, one time per
    /// sample `t: [batch]` and, for a model with functional inputs, the standardised inputs
    /// `[input_rows, input_dim]` of the batch's input tokens. `key_mask: [batch, tokens]`
    /// (1 = present), when given, replaces the token batch's own padding mask: it also hides
    /// the observation tokens that a ragged set does not have.
    #[allow(clippy::too_many_arguments)]
    pub fn velocity(
        &self, tape: &mut Tape, tok: &DeviceTokens, cond: Var, xt: Var, t: Var,
        inputs: Option<Var>, key_mask: Option<Var>,
    ) -> Result<Var> {
        let (b, n) = (tok.batch, tok.tokens());
        let values = if tok.n_cond > 0 { tape.concat(&[cond, xt])? } else { xt };
        let values = tape.reshape(values, &[b * n, 1])?;
        let t_table = tape.reshape(t, &[b, 1])?;
        let sample_ids = tok.ids(tape, &tok.sample_of_token)?;
        let t_col = tape.embedding(t_table, sample_ids)?;
        let labels = tok.ids(tape, &tok.labels)?;
        let positions = tok.ids(tape, &tok.positions)?;
        let groups = tok.ids(tape, &tok.groups)?;
        let mut parts = vec![
            values,
            self.label_emb.forward(tape, labels)?,
            self.pos_emb.forward(tape, positions)?,
            t_col,
            self.group_emb.forward(tape, groups)?,
        ];
        if let Some(fourier) = &self.fourier {
            parts.push(self.fourier_block(tape, tok, fourier, inputs)?);
        } else if inputs.is_some() {
            return Err(Error::Invalid("functional inputs given to a model without them".into()));
        }
        let x = tape.concat(&parts)?;
        let h = self.embed.forward(tape, x)?;
        let h = tape.reshape(h, &[b, n, self.config.width])?;
        let mask = match key_mask {
            Some(m) => Some(m),
            None => tok.key_mask.as_ref().map(|m| tape.input_copy(m, &[b, n])).transpose()?,
        };
        let h = self.encoder.forward(tape, h, mask)?;
        let h = tape.reshape(h, &[b * n, self.config.width])?;
        let rows = tok.ids(tape, &tok.target_rows)?;
        let h = tape.gather_rows(h, rows)?;
        self.head.forward(tape, h)
    }

    /// The Fourier block `[batch · tokens, fourier_dim]`: the features of the input rows,
    /// placed at their tokens through a table whose row 0 is zeros (tokens without inputs).
    fn fourier_block(
        &self, tape: &mut Tape, tok: &DeviceTokens, fourier: &FourierFeatures, inputs: Option<Var>,
    ) -> Result<Var> {
        let width = self.config.fourier_dim;
        let Some(index) = tok.input_index.as_ref() else {
            // No token of this batch carries inputs: every block is zero.
            let zeros = vec![0.0; tok.batch * tok.tokens() * width];
            return tape.input(&zeros, &[tok.batch * tok.tokens(), width]);
        };
        let Some(inputs) = inputs else {
            return Err(Error::Invalid(
                "this model needs the functional inputs of its observation tokens".into(),
            ));
        };
        let rows = tok.input_rows;
        let expected = [rows, self.config.input_dim];
        if tape.shape(inputs)? != expected {
            return Err(Error::Shape(format!(
                "functional inputs are {:?} but the batch's input tokens need {expected:?}",
                tape.shape(inputs)?
            )));
        }
        let features = fourier.forward(tape, inputs)?;
        let features = tape.reshape(features, &[1, rows * width])?;
        let zero = tape.input(&vec![0.0; width], &[1, width])?;
        let table = tape.concat(&[zero, features])?;
        let table = tape.reshape(table, &[rows + 1, width])?;
        let ids = tok.ids(tape, index)?;
        tape.embedding(table, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::{ArchOverrides, TfmpeConfig};

    #[test]
    fn overrides_replace_only_what_they_name_and_are_checked() {
        let base = TfmpeConfig::default();
        let o = ArchOverrides { width: Some(32), heads: Some(4), ..ArchOverrides::default() };
        let c = base.overridden(&o).unwrap();
        assert_eq!((c.width, c.heads, c.layers, c.group_dim), (32, 4, base.layers, base.group_dim));
        assert_eq!(base.overridden(&ArchOverrides::default()).unwrap(), base);
        for (o, needle) in [
            (ArchOverrides { heads: Some(5), ..Default::default() }, "not divisible by 5 heads"),
            (
                ArchOverrides { layers: Some(0), ..Default::default() },
                "--layers must be at least 1",
            ),
            (ArchOverrides { fourier_dim: Some(3), ..Default::default() }, "--fourier-dim 3"),
            (ArchOverrides { width: Some(1 << 20), ..Default::default() }, "smaller sizes"),
        ] {
            let err = base.overridden(&o).unwrap_err().to_string();
            assert!(err.contains(needle), "{o:?}: {err}");
        }
    }

    #[test]
    fn the_default_differs_from_the_reference_only_in_the_group_embedding() {
        let reference = TfmpeConfig::reference();
        assert_eq!(
            TfmpeConfig { group_dim: reference.group_dim, ..TfmpeConfig::default() },
            reference
        );
        assert_eq!(TfmpeConfig::default().group_dim, 32);
    }
}
