//! Tokens: one per scalar. Each carries a label (which variable), a position (index within its
//! site's block, or within the variable for globals) and a group (0 for globals, s + 1 for site
//! s). Condition tokens come first, target tokens after.
//!
//! A [`TokenBatch`] lays out a batch of sets, each `n_cond + n_target` tokens long: sets with
//! fewer tokens than the longest (other site counts) are padded, condition and target blocks
//! separately, and masked — padded keys are never attended to, padded targets never scored.
//!
//! Observation tokens of a model with functional inputs carry `input_dim` input values each
//! (an observation time, a sensor position). A set's input values are stored apart, in token
//! order of its input-carrying tokens; the batch maps every token to its row of inputs, or to
//! none (parameter tokens and padding), see docs/architecture.md#tokens.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The identity of one token (its value is stored apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub label: u32,
    pub position: u32,
    pub group: u32,
    /// Whether the token carries functional inputs (the observations of a model with them).
    #[serde(default)]
    pub input: bool,
}

/// The tokens of one set: conditions, then targets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub cond: Vec<Token>,
    pub target: Vec<Token>,
}

/// What a layout needs to know of a model: the sizes (scalars each) of its variables, in
/// order. Every `tasks::HierarchicalModel` provides it.
pub trait VariableSizes {
    /// The global variables θ_g.
    fn global_sizes(&self) -> Vec<usize>;
    /// One site's local variables η_s.
    fn local_sizes(&self) -> Vec<usize>;
    /// One site's observation variables y_s.
    fn observation_sizes(&self) -> Vec<usize>;
    /// Functional-input values per observation scalar (0: none).
    fn input_dim(&self) -> usize;
}

/// Labels: the model's global variables, then its local variables, then its observation
/// variables, one label each.
pub fn n_labels<M: VariableSizes + ?Sized>(model: &M) -> usize {
    model.global_sizes().len() + model.local_sizes().len() + model.observation_sizes().len()
}

/// Tokens of a list of variables, numbering labels from `first_label` and positions from 0
/// across the whole block. Tokens that carry functional inputs all take position 0: a site's
/// values are exchangeable given their inputs (see `HierarchicalModel::functional_input_dim`),
/// so their inputs, not their order, tell them apart; the network is then equivariant to
/// their order, and every observation of a site trains the same weights.
fn block(
    sizes: &[usize], first_label: u32, group: u32, input: bool,
) -> impl Iterator<Item = Token> + '_ {
    sizes.iter().enumerate().flat_map(move |(v, &size)| {
        let before: usize = sizes[..v].iter().sum();
        (0..size).map(move |c| Token {
            label: first_label + v as u32,
            position: if input { 0 } else { (before + c) as u32 },
            group,
            input,
        })
    })
}

impl Layout {
    /// The posterior network's tokens for `sites` sites: every observation scalar is a condition,
    /// every parameter (globals, then each site's locals) a target.
    pub fn posterior<M: VariableSizes + ?Sized>(model: &M, sites: usize) -> Layout {
        let (g, l, o) = (model.global_sizes(), model.local_sizes(), model.observation_sizes());
        let (l0, o0) = (g.len() as u32, (g.len() + l.len()) as u32);
        // Globals are numbered by component within their variable.
        let globals = g.iter().enumerate().flat_map(|(v, &size)| {
            (0..size).map(move |c| Token {
                label: v as u32,
                position: c as u32,
                group: 0,
                input: false,
            })
        });
        let mut target: Vec<Token> = globals.collect();
        let mut cond = Vec::new();
        let observed_inputs = model.input_dim() > 0;
        for s in 0..sites as u32 {
            cond.extend(block(&o, o0, s + 1, observed_inputs));
            target.extend(block(&l, l0, s + 1, false));
        }
        Layout { cond, target }
    }

    /// The likelihood surrogate's tokens: the globals and one site's locals are conditions, that
    /// site's observation is the target.
    pub fn surrogate<M: VariableSizes + ?Sized>(model: &M) -> Layout {
        let mut layout = Layout::posterior(model, 1);
        let obs = std::mem::take(&mut layout.cond);
        Layout { cond: layout.target, target: obs }
    }

    /// Posterior factorisation's global network: the observations of `sites` sites are
    /// conditions, the globals the only targets.
    pub fn global_posterior<M: VariableSizes + ?Sized>(model: &M, sites: usize) -> Layout {
        let mut layout = Layout::posterior(model, sites);
        layout.target.retain(|t| t.group == 0);
        layout
    }

    /// Posterior factorisation's local network: the globals and one site's observation are
    /// conditions, that site's locals the targets.
    pub fn local_posterior<M: VariableSizes + ?Sized>(model: &M) -> Layout {
        let posterior = Layout::posterior(model, 1);
        let (globals, locals): (Vec<Token>, Vec<Token>) =
            posterior.target.into_iter().partition(|t| t.group == 0);
        Layout { cond: globals.into_iter().chain(posterior.cond).collect(), target: locals }
    }

    /// The same tokens with every target's label moved up by `offset`: a network trained on
    /// both the surrogate's and the posterior's layouts (`--method joint`) sees a variable as
    /// a condition under its own label and as a target under the shifted one, since nothing
    /// else in a token's features says which it is.
    pub fn with_target_labels(mut self, offset: u32) -> Layout {
        for t in &mut self.target {
            t.label += offset;
        }
        self
    }

    pub fn len(&self) -> usize {
        self.cond.len() + self.target.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens that carry functional inputs.
    pub fn input_tokens(&self) -> usize {
        self.cond.iter().chain(&self.target).filter(|t| t.input).count()
    }

    /// The largest position and group id used, for sizing embedding tables.
    pub fn max_ids(&self) -> (u32, u32, u32) {
        self.cond
            .iter()
            .chain(&self.target)
            .fold((0, 0, 0), |(l, p, g), t| (l.max(t.label), p.max(t.position), g.max(t.group)))
    }
}

/// The token ids and masks of a batch of sets, on the host, ready to upload.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBatch {
    pub batch: usize,
    /// Condition slots per set (the longest set's condition count).
    pub n_cond: usize,
    /// Target slots per set.
    pub n_target: usize,
    /// `[batch · tokens]` each, tokens = n_cond + n_target.
    pub labels: Vec<u32>,
    pub positions: Vec<u32>,
    pub groups: Vec<u32>,
    /// Key-padding mask `[batch · tokens]` (1 = real token), `None` when nothing is padded.
    pub key_mask: Option<Vec<f32>>,
    /// `[batch · n_target]` (1 = real target), `None` when nothing is padded.
    pub target_mask: Option<Vec<f32>>,
    /// `[batch · tokens]`: 1 + the token's row among the batch's input rows (sets in order,
    /// each set's input tokens in token order), 0 for a token without inputs; `None` when no
    /// token carries inputs.
    pub input_index: Option<Vec<u32>>,
    /// Input rows of the whole batch.
    pub input_rows: usize,
    /// Real (unpadded) condition and target counts per set.
    counts: Vec<(usize, usize)>,
    /// Input-carrying tokens per set.
    input_counts: Vec<usize>,
}

impl TokenBatch {
    /// Packs the layouts of a batch of sets (one per set; they may differ in length).
    pub fn pack(layouts: &[&Layout]) -> Result<TokenBatch> {
        if layouts.is_empty() {
            return Err(Error::Invalid("a token batch needs at least one set".into()));
        }
        let n_cond = layouts.iter().map(|l| l.cond.len()).max().unwrap_or(0);
        let n_target = layouts.iter().map(|l| l.target.len()).max().unwrap_or(0);
        if n_target == 0 {
            return Err(Error::Invalid("a set needs at least one target token".into()));
        }
        let tokens = n_cond + n_target;
        let batch = layouts.len();
        let pad = Token { label: 0, position: 0, group: 0, input: false };
        let (mut labels, mut positions, mut groups) = (
            Vec::with_capacity(batch * tokens),
            Vec::with_capacity(batch * tokens),
            Vec::with_capacity(batch * tokens),
        );
        let mut key_mask = Vec::with_capacity(batch * tokens);
        let mut target_mask = Vec::with_capacity(batch * n_target);
        let mut input_index = Vec::with_capacity(batch * tokens);
        let mut input_rows = 0u32;
        for l in layouts {
            let cond = l.cond.iter().map(Some).chain(std::iter::repeat(None)).take(n_cond);
            let target = l.target.iter().map(Some).chain(std::iter::repeat(None)).take(n_target);
            for (i, t) in cond.chain(target).enumerate() {
                let tok = t.copied().unwrap_or(pad);
                labels.push(tok.label);
                positions.push(tok.position);
                groups.push(tok.group);
                key_mask.push(if t.is_some() { 1.0 } else { 0.0 });
                input_index.push(if tok.input {
                    input_rows += 1;
                    input_rows
                } else {
                    0
                });
                if i >= n_cond {
                    target_mask.push(if t.is_some() { 1.0 } else { 0.0 });
                }
            }
        }
        let padded = key_mask.contains(&0.0);
        Ok(TokenBatch {
            batch,
            n_cond,
            n_target,
            labels,
            positions,
            groups,
            key_mask: padded.then_some(key_mask),
            target_mask: padded.then_some(target_mask),
            input_index: (input_rows > 0).then_some(input_index),
            input_rows: input_rows as usize,
            counts: layouts.iter().map(|l| (l.cond.len(), l.target.len())).collect(),
            input_counts: layouts.iter().map(|l| l.input_tokens()).collect(),
        })
    }

    /// The same layout repeated `batch` times.
    pub fn repeat(layout: &Layout, batch: usize) -> Result<TokenBatch> {
        TokenBatch::pack(&vec![layout; batch])
    }

    pub fn tokens(&self) -> usize {
        self.n_cond + self.n_target
    }

    /// Places each set's condition values (its real count) into the padded `[batch · n_cond]`
    /// block, zeros in the padding.
    pub fn pack_cond(&self, sets: &[&[f32]]) -> Result<Vec<f32>> {
        self.pack_values(sets, self.n_cond, |c| c.0, "condition")
    }

    /// Places each set's target values into the padded `[batch · n_target]` block.
    pub fn pack_target(&self, sets: &[&[f32]]) -> Result<Vec<f32>> {
        self.pack_values(sets, self.n_target, |c| c.1, "target")
    }

    /// Concatenates each set's input values (`input_dim` per input token, in token order) into
    /// the `[input_rows · input_dim]` block that [`TokenBatch::input_index`] points into.
    pub fn pack_inputs(&self, sets: &[&[f32]], input_dim: usize) -> Result<Vec<f32>> {
        if sets.len() != self.batch {
            return Err(Error::Shape(format!(
                "{} input sets for a batch of {}",
                sets.len(),
                self.batch
            )));
        }
        let mut out = Vec::with_capacity(self.input_rows * input_dim);
        for (b, (set, &n)) in sets.iter().zip(&self.input_counts).enumerate() {
            if set.len() != n * input_dim {
                return Err(Error::Shape(format!(
                    "set {b} has {} input values but its layout has {n} input tokens of {input_dim}",
                    set.len()
                )));
            }
            out.extend_from_slice(set);
        }
        Ok(out)
    }

    /// Splits a padded `[batch · n_target]` block back into each set's real targets.
    pub fn unpack_target<'a>(&self, packed: &'a [f32]) -> Vec<&'a [f32]> {
        self.counts
            .iter()
            .enumerate()
            .map(|(b, &(_, m))| &packed[b * self.n_target..b * self.n_target + m])
            .collect()
    }

    fn pack_values(
        &self, sets: &[&[f32]], slots: usize, count: fn(&(usize, usize)) -> usize, what: &str,
    ) -> Result<Vec<f32>> {
        if sets.len() != self.batch {
            return Err(Error::Shape(format!(
                "{} {what} sets for a batch of {}",
                sets.len(),
                self.batch
            )));
        }
        let mut out = vec![0.0; self.batch * slots];
        for (b, (set, c)) in sets.iter().zip(&self.counts).enumerate() {
            if set.len() != count(c) {
                return Err(Error::Shape(format!(
                    "set {b} has {} {what} values but its layout has {} {what} tokens",
                    set.len(),
                    count(c)
                )));
            }
            out[b * slots..b * slots + set.len()].copy_from_slice(set);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of one scalar global, one scalar local per site and `obs` scalars observed per
    /// site (hier-gaussian: 5, hier-gaussian-linear: 1).
    struct Sizes {
        obs: usize,
        inputs: usize,
    }

    impl VariableSizes for Sizes {
        fn global_sizes(&self) -> Vec<usize> {
            vec![1]
        }
        fn local_sizes(&self) -> Vec<usize> {
            vec![1]
        }
        fn observation_sizes(&self) -> Vec<usize> {
            vec![self.obs]
        }
        fn input_dim(&self) -> usize {
            self.inputs
        }
    }

    #[test]
    fn posterior_layout_follows_the_parameter_and_observation_order() {
        let task = Sizes { obs: 5, inputs: 0 };
        let l = Layout::posterior(&task, 2);
        // 2 sites × 5 observations as conditions; mu, then theta per site, as targets.
        assert_eq!(l.cond.len(), 10);
        assert_eq!(l.target.len(), 3);
        assert_eq!(l.target[0], Token { label: 0, position: 0, group: 0, input: false });
        assert_eq!(l.target[2], Token { label: 1, position: 0, group: 2, input: false });
        assert_eq!(l.cond[7], Token { label: 2, position: 2, group: 2, input: false });
        let s = Layout::surrogate(&task);
        assert_eq!((s.cond.len(), s.target.len()), (2, 5));
        assert_eq!(n_labels(&task), 3);
    }

    #[test]
    fn factorised_and_joint_layouts_keep_the_tokens_of_their_roles() {
        let task = Sizes { obs: 5, inputs: 1 };
        let full = Layout::posterior(&task, 2);
        let global = Layout::global_posterior(&task, 2);
        assert_eq!((global.cond, global.target), (full.cond.clone(), full.target[..1].to_vec()));
        // One site's locals given the globals and that site's observation.
        let local = Layout::local_posterior(&task);
        assert_eq!(local.cond.len(), 6);
        assert_eq!(local.cond[0], Token { label: 0, position: 0, group: 0, input: false });
        assert!(local.cond[1..].iter().all(|t| t.label == 2 && t.group == 1 && t.input));
        assert_eq!(local.target, vec![Token { label: 1, position: 0, group: 1, input: false }]);
        // Joint: the targets' labels move past the model's three; conditions keep theirs.
        let joint = full.clone().with_target_labels(3);
        assert_eq!(joint.cond, full.cond);
        let labels: Vec<u32> = joint.target.iter().map(|t| t.label).collect();
        assert_eq!(labels, [3, 4, 4]);
    }

    #[test]
    fn mixed_site_counts_are_padded_and_masked() {
        let task = Sizes { obs: 1, inputs: 0 };
        let (a, b) = (Layout::posterior(&task, 3), Layout::posterior(&task, 1));
        let tb = TokenBatch::pack(&[&a, &b]).unwrap();
        assert_eq!((tb.n_cond, tb.n_target, tb.tokens()), (3, 4, 7));
        let km = tb.key_mask.as_ref().unwrap();
        assert_eq!(&km[..7], &[1.0; 7]);
        assert_eq!(&km[7..], &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(tb.target_mask.as_ref().unwrap(), &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        let cond = tb.pack_cond(&[&[1.0, 2.0, 3.0], &[4.0]]).unwrap();
        assert_eq!(cond, vec![1.0, 2.0, 3.0, 4.0, 0.0, 0.0]);
        let tgt = tb.pack_target(&[&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0]]).unwrap();
        assert_eq!(tb.unpack_target(&tgt)[1], &[5.0, 6.0]);
        assert!(tb.pack_cond(&[&[1.0], &[4.0]]).is_err());
        let same = TokenBatch::repeat(&a, 4).unwrap();
        assert!(same.key_mask.is_none() && same.target_mask.is_none());
    }

    #[test]
    fn input_tokens_index_their_rows_and_others_point_at_none() {
        let task = Sizes { obs: 2, inputs: 3 };
        let (a, b) = (Layout::posterior(&task, 2), Layout::posterior(&task, 1));
        assert_eq!((a.input_tokens(), b.input_tokens()), (4, 2));
        assert!(a.cond.iter().all(|t| t.input) && a.target.iter().all(|t| !t.input));
        let s = Layout::surrogate(&task);
        assert!(s.cond.iter().all(|t| !t.input) && s.target.iter().all(|t| t.input));
        // Exchangeable given their inputs: one position for all of a site's values, which
        // keep their positions 0, 1 in a model without inputs.
        assert!(a.cond.iter().chain(&s.target).all(|t| t.position == 0));
        let plain = Layout::posterior(&Sizes { obs: 2, inputs: 0 }, 1);
        assert_eq!(plain.cond.iter().map(|t| t.position).collect::<Vec<_>>(), [0, 1]);
        let tb = TokenBatch::pack(&[&a, &b]).unwrap();
        // Set 0: 4 observations (rows 1..=4), then 3 targets; set 1: 2 observations, 2 padded
        // condition slots, 2 targets and 1 padded target.
        assert_eq!(tb.input_index.as_ref().unwrap(), &[1, 2, 3, 4, 0, 0, 0, 5, 6, 0, 0, 0, 0, 0]);
        assert_eq!(tb.input_rows, 6);
        let packed = tb.pack_inputs(&[&[1.0; 12], &[2.0; 6]], 3).unwrap();
        assert_eq!(packed.len(), 18);
        assert!(tb.pack_inputs(&[&[1.0; 12], &[2.0; 5]], 3).is_err());
        let plain = TokenBatch::pack(&[&Layout::posterior(&Sizes { obs: 2, inputs: 0 }, 2)]);
        assert!(plain.unwrap().input_index.is_none());
    }
}
