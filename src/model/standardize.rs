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
}

impl Standardizer {
    /// Fits the statistics of `rows` (each one set's values, in the order of `tokens`).
    pub fn fit<'a>(
        tokens: &[Token], rows: impl IntoIterator<Item = &'a [f64]>,
    ) -> Result<Standardizer> {
        let mut acc: BTreeMap<(u32, u32), (f64, f64, f64)> = BTreeMap::new();
        for row in rows {
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
            .map(|((label, position), (n, s, ss))| {
                let mean = s / n;
                let var = (ss / n - mean * mean).max(0.0) * n / (n - 1.0).max(1.0);
                let std = if var.sqrt() < MIN_STD { 1.0 } else { var.sqrt() };
                (label, position, mean, std)
            })
            .collect();
        Ok(Standardizer { stats })
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

    /// Standardised → natural.
    pub fn invert(&self, tokens: &[Token], values: &[f32]) -> Result<Vec<f64>> {
        tokens
            .iter()
            .zip(values)
            .map(|(t, &v)| self.stat(t).map(|(m, s)| v as f64 * s + m))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(label: u32, position: u32) -> Token {
        Token { label, position, group: 0 }
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
}
