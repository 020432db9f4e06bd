//! Z-scoring of token values with training-set statistics, one mean and standard deviation per
//! (label, position): exchangeable sites share their statistics, so a model trained on S sites
//! standardises any other site count the same way. Stored in the checkpoint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tokens::Token;
use crate::error::{Error, Result};

/// Below this, a variable is treated as constant and only centred.
const MIN_STD: f64 = 1e-8;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// `(label, position, mean, std)` rows, sorted by key.
    stats: Vec<(u32, u32, f64, f64)>,
    /// `(mean, std)` of each functional-input dimension over every input-carrying token;
    /// empty for models without inputs.
    #[serde(default)]
    inputs: Vec<(f64, f64)>,
}

impl Standardizer {
    /// Fits the statistics of `rows` (each one set's values, in the order of `tokens`).
    pub fn fit<'a>(
        tokens: &[Token], rows: impl IntoIterator<Item = &'a [f64]>,
    ) -> Result<Standardizer> {
        Self::fit_sets(rows.into_iter().map(|row| (tokens, row)))
    }

    /// Fits the statistics of sets of different layouts: `(tokens, values)` per set.
    pub fn fit_sets<'a>(
        sets: impl IntoIterator<Item = (&'a [Token], &'a [f64])>,
    ) -> Result<Standardizer> {
        let mut acc: BTreeMap<(u32, u32), (f64, f64, f64)> = BTreeMap::new();
        for (tokens, row) in sets {
            if row.len() != tokens.len() {
                return Err(Error::Shape(format!(
                    "{} values for {} tokens",
                    row.len(),
                    tokens.len()
                )));
            }
            for (t, &v) in tokens.iter().zip(row) {
                let e = acc.entry((t.label, t.position)).or_default();
                *e = (e.0 + 1.0, e.1 + v, e.2 + v * v);
            }
        }
        if acc.is_empty() {
            return Err(Error::Invalid("cannot standardise without training data".into()));
        }
        let stats = acc
            .into_iter()
            .map(|((label, position), sums)| {
                let (mean, std) = mean_std(sums);
                (label, position, mean, std)
            })
            .collect();
        Ok(Standardizer { stats, inputs: Vec::new() })
    }

    /// The same standardiser with statistics for functional inputs fitted on `values`
    /// (`input_dim` values per input-carrying token).
    pub fn with_inputs(mut self, input_dim: usize, values: &[f64]) -> Result<Standardizer> {
        if input_dim == 0 || values.is_empty() || !values.len().is_multiple_of(input_dim) {
            return Err(Error::Shape(format!(
                "{} functional-input values do not make rows of {input_dim}",
                values.len()
            )));
        }
        self.inputs = (0..input_dim)
            .map(|d| {
                let sums = values
                    .iter()
                    .skip(d)
                    .step_by(input_dim)
                    .fold((0.0, 0.0, 0.0), |a, &v| (a.0 + 1.0, a.1 + v, a.2 + v * v));
                mean_std(sums)
            })
            .collect();
        Ok(self)
    }

    /// Functional inputs, natural → standardised (`input_dim` values per token).
    pub fn apply_inputs(&self, values: &[f64]) -> Result<Vec<f32>> {
        let d = self.inputs.len();
        if d == 0 || !values.len().is_multiple_of(d) {
            return Err(Error::Shape(format!(
                "{} functional-input values for a model with {d} inputs per observation",
                values.len()
            )));
        }
        Ok(values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let (m, s) = self.inputs[i % d];
                ((v - m) / s) as f32
            })
            .collect())
    }

    fn stat(&self, t: &Token) -> Result<(f64, f64)> {
        self.stats
            .binary_search_by_key(&(t.label, t.position), |s| (s.0, s.1))
            .map(|i| (self.stats[i].2, self.stats[i].3))
            .map_err(|_| {
                Error::Invalid(format!(
                    "no standardisation statistics for label {} position {}: the model never saw such a token",
                    t.label, t.position
                ))
            })
    }

    /// Natural → standardised, as f32 for the device.
    pub fn apply(&self, tokens: &[Token], values: &[f64]) -> Result<Vec<f32>> {
        tokens
            .iter()
            .zip(values)
            .map(|(t, &v)| self.stat(t).map(|(m, s)| ((v - m) / s) as f32))
            .collect()
    }

    /// Σ ln std over `tokens`: the log-determinant of [`Standardizer::invert`], so a density
    /// of standardised values minus this is the density of the values themselves.
    pub fn log_std(&self, tokens: &[Token]) -> Result<f64> {
        tokens.iter().map(|t| self.stat(t).map(|(_, s)| s.ln())).sum()
    }

    /// Standardised → natural.
    pub fn invert(&self, tokens: &[Token], values: &[f32]) -> Result<Vec<f64>> {
        tokens
            .iter()
            .zip(values)
            .map(|(t, &v)| self.stat(t).map(|(m, s)| v as f64 * s + m))
            .collect()
    }
}

/// Mean and sample standard deviation from `(count, sum, sum of squares)`; a near-constant
/// value gets std 1 so that it is only centred.
fn mean_std((n, s, ss): (f64, f64, f64)) -> (f64, f64) {
    let mean = s / n;
    let var = (ss / n - mean * mean).max(0.0) * n / (n - 1.0).max(1.0);
    (mean, if var.sqrt() < MIN_STD { 1.0 } else { var.sqrt() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(label: u32, position: u32) -> Token {
        Token { label, position, group: 0, input: false }
    }

    #[test]
    fn sites_share_statistics_and_round_trip() {
        let tokens = [tok(0, 0), tok(1, 0), tok(1, 0)];
        let rows: Vec<Vec<f64>> = vec![vec![1.0, 10.0, 14.0], vec![3.0, 12.0, 16.0]];
        let s = Standardizer::fit(&tokens, rows.iter().map(|r| r.as_slice())).unwrap();
        let z = s.apply(&tokens, &rows[0]).unwrap();
        // Label 0: mean 2, sample std √2. Label 1 pools both sites: mean 13, std √(20/3).
        assert!((z[0] as f64 + 1.0 / 2f64.sqrt()).abs() < 1e-6);
        assert!((z[1] as f64 + 3.0 / (20.0f64 / 3.0).sqrt()).abs() < 1e-6);
        let log_std = 0.5 * 2f64.ln() + (20.0f64 / 3.0).ln();
        assert!((s.log_std(&tokens).unwrap() - log_std).abs() < 1e-12);
        let back = s.invert(&tokens, &z).unwrap();
        for (a, b) in back.iter().zip(&rows[0]) {
            assert!((a - b).abs() < 1e-5);
        }
        assert!(s.apply(&[tok(5, 0)], &[1.0]).is_err());
    }

    #[test]
    fn constants_are_only_centred() {
        let tokens = [tok(0, 0)];
        let s = Standardizer::fit(&tokens, [[4.0].as_slice(), [4.0].as_slice()]).unwrap();
        assert_eq!(s.apply(&tokens, &[5.0]).unwrap(), vec![1.0]);
    }

    #[test]
    fn inputs_are_standardised_per_dimension() {
        let s = Standardizer::fit(&[tok(0, 0)], [[1.0].as_slice(), [2.0].as_slice()]).unwrap();
        assert!(s.apply_inputs(&[1.0]).is_err(), "no input statistics fitted");
        // Two input dimensions: the first takes 0 and 2 (mean 1, std √2), the second is 5.
        let s = s.with_inputs(2, &[0.0, 5.0, 2.0, 5.0]).unwrap();
        let z = s.apply_inputs(&[2.0, 6.0]).unwrap();
        assert!((z[0] as f64 - 1.0 / 2f64.sqrt()).abs() < 1e-6 && z[1] == 1.0);
        assert!(s.apply_inputs(&[1.0]).is_err());
    }
}
