//! Conditional standardisation of the posterior's local parameters given the globals and their
//! site's data (`run --posterior-scaling conditional`).
//!
//! In a hierarchical posterior a site's locals, given the globals and that site's data, are
//! often far narrower than their marginal: in hier-gaussian-linear μ_s | σ, y_s is
//! N(y_s/(1+σ²), σ/√(1+σ²)), 0.1 wide at σ = 0.1 (the funnel's neck); in hier-brownian θ_s | μ,
//! y_s has the precision 100 + Σ_j 1/t_j², so a site observed at a small time pins θ_s down to
//! a few hundredths. A flow whose velocity errors are of order one in standardised units puts
//! such locals many of their own widths away, and the draws' density there is off by orders of
//! magnitude.
//!
//! Here each local gets a location m and a log scale ln s, functions of its site's standardised
//! globals and data; the flow learns z = (η − m)/s in their place, and a draw is m + s·z. That is
//! a triangular map (the globals pass unchanged and m, s depend on nothing else the flow
//! produces), so the log density of a draw is the flow's minus Σ ln s.
//!
//! m and ln s are two small MLPs (two hidden ReLU layers of [`HIDDEN`]) of the site's features:
//! the standardised globals, then each observation of the site: its value, its functional
//! inputs and whether it is present (ragged sites). In a function-valued task a site's
//! observations are exchangeable given their inputs, so they are ordered by their first input,
//! present ones first; otherwise they keep their order. m is fitted by least squares to the
//! locals of the training sets' sites; ln s by least squares to ln|η − m| + (γ + ln 2)/2, whose
//! mean is ln s for Gaussian residuals. m is then fitted again with each value weighted by
//! 1/s², so that it is precise where the locals are narrow: an affine map by weighted least
//! squares, which extrapolates as the narrowest sites do, plus an MLP of what it leaves; then
//! ln s from the new residuals. Every fit stops early on the validation sets' sites. The noise
//! of the ln s regression (variance π²/8 per value) leaves s some percent off, which the flow
//! absorbs: it still learns z, only in units close to the locals' own width.
//!
//! Where the posterior has globals, the scaling holds theirs too (`global_scaling`): a
//! location and scale of the globals given the whole data set. The locals' m and s read the
//! globals in natural (standardised, unwhitened) units, so whitening takes the locals first
//! and unwhitening the globals first, and the map stays triangular.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::global_scaling::GlobalScaling;
use super::host_mlp::{train_mlp, HostMlp, Pairs};
use super::network::CondRows;
use super::scaling::{
    check_floors, clamp_log_scale, column_min, column_spread, floored_log_scales,
    log_abs_residuals, Design, ScalingReport,
};
use super::train::Sets;
use crate::error::{Error, Result};

/// The location's fit weighs each value by 1/s², but s no smaller than e^this (0.02 of the
/// locals' marginal spread): an MLP cannot place m to within a far smaller s, and such values'
/// squared errors, in units of s², would then outweigh every other site's.
const MIN_WEIGHTED_LOG_SCALE: f64 = -3.9;
/// Sites fitted on at most, from the first sets on (sets and their sites are exchangeable, so
/// these are a fair sample); enough for two small MLPs, and it bounds the fit's time.
const MAX_SITES: usize = 40_000;

/// The sizes of one site in a posterior layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteShape {
    /// Global parameters (the first targets of a row).
    pub globals: usize,
    /// Local parameters per site (the targets after the globals, site by site).
    pub locals: usize,
    /// Observation values per site (the conditions, site by site).
    pub observations: usize,
    /// Functional-input values per observation (0: none).
    pub input_dim: usize,
}

impl SiteShape {
    fn features(&self) -> usize {
        self.globals + self.data_width()
    }

    /// The features of site `site` of row `row`: its globals (`globals`, standardised), then
    /// [`SiteShape::data_features`].
    fn site_features(&self, rows: &CondRows, row: usize, globals: &[f32], site: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.features());
        out.extend(globals.iter().map(|&v| f64::from(v)));
        out.extend(self.data_features(rows, row, site));
        out
    }

    /// Values per site in [`SiteShape::data_features`].
    pub(super) fn data_width(&self) -> usize {
        self.observations * (2 + self.input_dim)
    }

    /// Site `site`'s data in row `row`: each observation's value, inputs and presence,
    /// ordered as the module says.
    pub(super) fn data_features(&self, rows: &CondRows, row: usize, site: usize) -> Vec<f64> {
        let (k, id) = (self.observations, self.input_dim);
        let first = row * rows.n_cond + site * k;
        let values = &rows.conds[first..first + k];
        let inputs = rows.inputs.filter(|_| id > 0).map(|x| &x[first * id..(first + k) * id]);
        let tokens = rows.n_cond + self.globals + rows.n_cond / k * self.locals;
        let present = |j: usize| rows.masks.is_none_or(|m| m[row * tokens + site * k + j] > 0.5);
        let mut order: Vec<usize> = (0..k).collect();
        if let Some(x) = inputs {
            order.sort_by(|&a, &b| {
                (!present(a), x[a * id])
                    .partial_cmp(&(!present(b), x[b * id]))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        }
        let mut out = Vec::with_capacity(self.data_width());
        for j in order {
            let on = present(j);
            let keep = |v: f32| if on { f64::from(v) } else { 0.0 };
            out.push(keep(values[j]));
            if let Some(x) = inputs {
                out.extend(x[j * id..(j + 1) * id].iter().map(|&v| keep(v)));
            }
            out.push(if on { 1.0 } else { 0.0 });
        }
        out
    }

    /// Targets per row for `rows`, after checking that `target` holds whole rows.
    pub(super) fn check_rows(&self, rows: &CondRows, target: &[f32]) -> Result<(usize, usize)> {
        let k = self.observations.max(1);
        let sites = rows.n_cond / k;
        let n_target = self.globals + sites * self.locals;
        let n = rows.conds.len() / rows.n_cond.max(1);
        if !rows.n_cond.is_multiple_of(k) || target.len() != n * n_target {
            return Err(Error::Shape(format!(
                "local scaling: {} condition and {} target values are not rows of {} sites",
                rows.conds.len(),
                target.len(),
                sites
            )));
        }
        Ok((sites, n_target))
    }
}

/// A fitted conditional standardisation of a posterior's locals, saved in its `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalScaling {
    pub shape: SiteShape,
    /// m: the site's features → its locals' locations.
    pub location: HostMlp,
    /// ln s: the site's features → its locals' log scales (clamped as the surrogate's are).
    pub log_scale: HostMlp,
    /// The smallest ln s of each local over the training sites ([`floored_log_scales`]).
    /// Empty in checkpoints written before the floor: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_scale_floor: Vec<f64>,
    /// The globals' scaling given the whole data set, which the locals' rests on (none: the
    /// globals pass unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<GlobalScaling>,
}

impl LocalScaling {
    /// Refuses a scaling whose networks do not fit its shape.
    pub fn check(&self) -> Result<()> {
        let (f, l) = (self.shape.features(), self.shape.locals);
        self.location.check(f, l)?;
        self.log_scale.check(f, l)?;
        check_floors(&self.log_scale_floor, l)?;
        self.globals.as_ref().map_or(Ok(()), |g| g.check(&self.shape))
    }

    /// m and ln s of one site's locals.
    fn site(&self, features: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let log_s = floored_log_scales(self.log_scale.forward(features), &self.log_scale_floor);
        (self.location.forward(features), log_s)
    }

    /// Moves the locals of standardised target rows (`[rows · targets]`, conditioned on
    /// `rows`) into the flow's units, z = (η − m)/s; returns each row's Σ ln s.
    pub fn whiten(&self, rows: CondRows, target: &mut [f32]) -> Result<Vec<f64>> {
        self.map(rows, target, true)
    }

    /// Undoes [`LocalScaling::whiten`] on the flow's draws: η = m + s·z.
    pub fn unwhiten(&self, rows: CondRows, target: &mut [f32]) -> Result<()> {
        self.map(rows, target, false).map(|_| ())
    }

    fn map(&self, rows: CondRows, target: &mut [f32], whiten: bool) -> Result<Vec<f64>> {
        self.check()?;
        let (sites, n_target) = self.shape.check_rows(&rows, target)?;
        let (g, l) = (self.shape.globals, self.shape.locals);
        // Rows are independent: in parallel, each row's arithmetic in its own fixed order.
        let log_dets = target
            .par_chunks_mut(n_target.max(1))
            .enumerate()
            .map(|(r, row)| {
                let (globals, locals) = row.split_at_mut(g);
                // The locals' m and s depend on the globals in natural units: whitening takes
                // the locals first, unwhitening the globals first.
                let map_globals = |globals: &mut [f32]| match &self.globals {
                    Some(scaling) => {
                        let (m, log_s) = scaling.location_scale(&self.shape, &rows, r, sites);
                        affine(globals, &m, &log_s, whiten)
                    }
                    None => 0.0,
                };
                let mut log_det = 0.0;
                if !whiten {
                    log_det += map_globals(globals);
                }
                for (s, eta) in locals.chunks_mut(l.max(1)).enumerate().take(sites) {
                    let (m, log_s) = self.site(&self.shape.site_features(&rows, r, globals, s));
                    log_det += affine(eta, &m, &log_s, whiten);
                }
                if whiten {
                    log_det += map_globals(globals);
                }
                log_det
            })
            .collect();
        Ok(log_dets)
    }

    /// Fits m and ln s on the sites of standardised posterior sets (`train`, stopping early on
    /// `validation`), with the weights' start and batch order from `seed`.
    pub fn fit(
        shape: SiteShape, train: &[Sets], validation: &[Sets], seed: u64,
    ) -> Result<(LocalScaling, ScalingReport)> {
        if shape.locals == 0 || shape.observations == 0 {
            return Err(Error::Invalid(
                "conditional posterior scaling needs a model with local parameters and \
                 observations"
                    .into(),
            ));
        }
        let fit = site_pairs(shape, train)?;
        let val = site_pairs(shape, validation)?;
        if fit.len() == 0 || val.len() == 0 {
            return Err(Error::Invalid(
                "conditional posterior scaling needs training and validation sites".into(),
            ));
        }
        let (f, l) = (shape.features(), shape.locals);
        let mut rng = StdRng::seed_from_u64(seed);
        let what = "the posterior's local scaling";
        let location = train_mlp(&fit, &val, what, &mut rng)?.0;
        let log_scale = |location: &HostMlp, rng: &mut StdRng| {
            let residuals = |p: &Pairs| p.with_targets(log_abs(p, &p.predict_mlp(location)));
            train_mlp(&residuals(&fit), &residuals(&val), what, rng)
        };
        let first_scale = log_scale(&location, &mut rng)?.0;
        // m again, each value weighted by 1/s², so that where the locals are narrow their
        // location is as precise as their width needs: an affine map by weighted least
        // squares, which the narrowest sites dominate and which extrapolates as they do (a
        // funnel's neck at data far out in the tails), then an MLP of what it leaves; then ln s
        // from the residuals.
        let weights = |p: &Pairs| precision(&p.predict_mlp(&first_scale));
        let design = Design::from_rows(fit.x.iter().map(|&v| f64::from(v)).collect(), f, l);
        let y: Vec<f64> = fit.y.iter().map(|&v| f64::from(v)).collect();
        let w: Vec<f64> = weights(&fit).iter().map(|&v| f64::from(v)).collect();
        let affine = design.fit(&y, Some(&w))?;
        let remainder = |p: &Pairs| Pairs { weights: Some(weights(p)), ..minus_affine(p, &affine) };
        let (mut location, location_val_mse) =
            train_mlp(&remainder(&fit), &remainder(&val), what, &mut rng)?;
        location.affine = affine;
        let (log_scale, log_scale_val_mse) = log_scale(&location, &mut rng)?;
        let fitted: Vec<f64> =
            fit.predict_mlp(&log_scale).into_iter().map(clamp_log_scale).collect();
        let log_scale_spread = column_spread(&fitted, l);
        let log_scale_floor = column_min(&fitted, l);
        let (globals, global_report) = if shape.globals > 0 {
            let (g, report) = GlobalScaling::fit(&shape, train, validation, &mut rng)?;
            (Some(g), Some(Box::new(report)))
        } else {
            (None, None)
        };
        let report = ScalingReport {
            location_val_mse,
            log_scale_val_mse,
            log_scale_spread,
            log_scale_noise: None,
            globals: global_report,
        };
        Ok((LocalScaling { shape, location, log_scale, log_scale_floor, globals }, report))
    }
}

/// z = (x − m)/s of each value (whiten) or x = m + s·z, s = e^{ln s}; returns Σ ln s.
pub(super) fn affine(values: &mut [f32], m: &[f64], log_s: &[f64], whiten: bool) -> f64 {
    let mut log_det = 0.0;
    for ((v, m), ls) in values.iter_mut().zip(m).zip(log_s) {
        let x = f64::from(*v);
        *v = if whiten { (x - m) * (-ls).exp() } else { m + ls.exp() * x } as f32;
        log_det += ls;
    }
    log_det
}

/// Each site's features and its locals, from the first sets on, at most [`MAX_SITES`].
fn site_pairs(shape: SiteShape, buckets: &[Sets]) -> Result<Pairs> {
    let (g, l) = (shape.globals, shape.locals);
    let mut pairs = Pairs::new(shape.features(), 1);
    for sets in buckets {
        let rows = CondRows::of(sets);
        let (sites, n_target) = shape.check_rows(&rows, &sets.target)?;
        for (r, row) in sets.target.chunks(n_target).enumerate() {
            for s in 0..sites {
                if pairs.len() >= MAX_SITES {
                    return Ok(pairs);
                }
                let x = shape.site_features(&rows, r, &row[..g], s);
                pairs.x.extend(x.iter().map(|&v| v as f32));
                pairs.y.extend_from_slice(&row[g + s * l..g + (s + 1) * l]);
            }
        }
    }
    Ok(pairs)
}

/// ln|y − m| + (γ + ln 2)/2 of the pairs' targets y: the targets of ln s.
pub(super) fn log_abs(pairs: &Pairs, m: &[f64]) -> Vec<f32> {
    log_abs_residuals(&pairs.y, m).into_iter().map(|v| v as f32).collect()
}

/// The pairs with their targets less the affine map `coef` of their features.
fn minus_affine(pairs: &Pairs, coef: &[f64]) -> Pairs {
    let x: Vec<f64> = pairs.x.iter().map(|&v| f64::from(v)).collect();
    let outputs = pairs.y.len() / pairs.len().max(1);
    let m = Design::from_rows(x, pairs.features, outputs).apply(coef);
    pairs.with_targets(pairs.y.iter().zip(m).map(|(&y, m)| (f64::from(y) - m) as f32).collect())
}

/// 1/s² of every value under the log scales `log_s`, divided by their mean.
pub(super) fn precision(log_s: &[f64]) -> Vec<f32> {
    let w: Vec<f64> = log_s
        .iter()
        .map(|&ls| (-2.0 * clamp_log_scale(ls).max(MIN_WEIGHTED_LOG_SCALE)).exp())
        .collect();
    let mean = w.iter().sum::<f64>() / w.len().max(1) as f64;
    w.into_iter().map(|v| (v / mean) as f32).collect()
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    use super::*;
    use crate::model::tokens::{Layout, Token};

    /// One global, one local and three observations with one input per site.
    const SHAPE: SiteShape = SiteShape { globals: 1, locals: 1, observations: 3, input_dim: 1 };
    const SITES: usize = 4;

    /// `n` sets of [`SITES`] sites: a global u ~ N(0, 1); per site three observations with
    /// values and inputs N(0, 1), and the local η = u/2 + (the value at the smallest input) +
    /// s·ε, s = e^{u/2 − 1.5}. Returns the sets and every local's true (location, scale).
    fn sets(n: usize, seed: u64) -> (Sets, Vec<(f64, f64)>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
        let (mut cond, mut target, mut inputs, mut truth) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let u = normal();
            target.push(u as f32);
            for _ in 0..SITES {
                let obs: Vec<(f64, f64)> = (0..3).map(|_| (normal(), normal())).collect();
                cond.extend(obs.iter().map(|o| o.0 as f32));
                inputs.extend(obs.iter().map(|o| o.1 as f32));
                let first = obs.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
                let (m, s) = (0.5 * u + first, (0.5 * u - 1.5).exp());
                target.push((m + s * normal()) as f32);
                truth.push((m, s));
            }
        }
        let token = Token { label: 0, position: 0, group: 0, input: false };
        let layout = Layout { cond: vec![token; 3 * SITES], target: vec![token; 1 + SITES] };
        (Sets { sites: SITES, layout, cond, target, inputs, mask: Vec::new() }, truth)
    }

    /// Where the locals' location and log scale are smooth functions of the globals and the
    /// site's data (through the observations' order by input), the fitted m and s find them,
    /// whitened locals are standard normal wherever the global lies, the global (of which the
    /// data say nothing) keeps about its prior's location and scale, and the map inverts.
    #[test]
    fn finds_the_conditional_location_and_scale_and_inverts() {
        let (train, _) = sets(4000, 1);
        let (validation, _) = sets(500, 2);
        let (scaling, report) = LocalScaling::fit(SHAPE, &[train], &[validation], 3).unwrap();
        // The whole of ln|ε|'s variance, π²/8, is what ln s cannot explain.
        let ideal = std::f64::consts::PI.powi(2) / 8.0;
        assert!((report.log_scale_val_mse - ideal).abs() < 0.2, "{report:?}");
        let (test, truth) = sets(2000, 4);
        let mut z = test.target.clone();
        let log_dets = scaling.whiten(CondRows::of(&test), &mut z).unwrap();
        let (mut loc_err, mut scale_err) = (0.0, 0.0);
        let mut by_global = [(0.0, 0.0, 0.0); 3];
        let mut global_err = 0.0;
        for (r, row) in z.chunks(1 + SITES).enumerate() {
            let u = f64::from(test.target[r * (1 + SITES)]);
            // The data say nothing of the global here: its scaling stays near the prior's.
            let globals = scaling.globals.as_ref().expect("a posterior with a global");
            let (m_g, ls_g) = globals.location_scale(&SHAPE, &CondRows::of(&test), r, SITES);
            global_err += m_g[0].abs() + ls_g[0].abs();
            let z_g = (u - m_g[0]) * (-ls_g[0]).exp();
            assert!((f64::from(row[0]) - z_g).abs() < 1e-5, "{} against {z_g}", row[0]);
            let mut log_det = ls_g[0];
            for (s, &zs) in row[1..].iter().enumerate() {
                let (m, sd) = truth[r * SITES + s];
                let eta = f64::from(test.target[r * (1 + SITES) + 1 + s]);
                // The fitted m and s from z = (η − m̂)/ŝ and ln ŝ.
                let features = SHAPE.site_features(&CondRows::of(&test), r, &[u as f32], s);
                let (m_hat, ls) = scaling.site(&features);
                assert!((f64::from(zs) - (eta - m_hat[0]) / ls[0].exp()).abs() < 1e-4);
                log_det += ls[0];
                loc_err += (m_hat[0] - m).abs() / sd;
                scale_err += (ls[0].exp() / sd - 1.0).abs();
                let bin = &mut by_global[if u < -0.5 {
                    0
                } else if u < 0.5 {
                    1
                } else {
                    2
                }];
                *bin = (bin.0 + 1.0, bin.1 + f64::from(zs), bin.2 + f64::from(zs).powi(2));
            }
            assert!((log_det - log_dets[r]).abs() < 1e-9);
        }
        let n = truth.len() as f64;
        assert!(loc_err / n < 0.15 && scale_err / n < 0.1, "{} {}", loc_err / n, scale_err / n);
        let global_err = global_err / (n / SITES as f64);
        // Measured 0.15: the set networks fit some of the training sets' noise.
        assert!(global_err < 0.2, "the global's |m| + |ln s| average {global_err}");
        for (count, sum, sq) in by_global {
            let (mean, var) = (sum / count, sq / count - (sum / count).powi(2));
            assert!(mean.abs() < 0.1 && (var.sqrt() - 1.0).abs() < 0.1, "z {mean} ± {var}");
        }
        let mut back = z.clone();
        scaling.unwhiten(CondRows::of(&test), &mut back).unwrap();
        for (b, t) in back.iter().zip(&test.target) {
            assert!((b - t).abs() <= 1e-5 * (1.0 + t.abs()), "{b} against {t}");
        }
        // Saved and loaded (config.json), it maps alike.
        let json = serde_json::to_string(&scaling).unwrap();
        let loaded: LocalScaling = serde_json::from_str(&json).unwrap();
        let mut again = test.target.clone();
        loaded.whiten(CondRows::of(&test), &mut again).unwrap();
        assert_eq!(again, z);
    }

    /// A site's features do not depend on the order of its observations (they are ordered by
    /// input) nor on the value or input of an absent one; an absent observation differs from
    /// a present one of value and input 0.
    #[test]
    fn site_features_are_exchangeable_and_ignore_absent_observations() {
        let shape = SiteShape { globals: 1, locals: 1, observations: 3, input_dim: 1 };
        let features = |values: [f32; 3], inputs: [f32; 3], mask: Option<[f32; 5]>| {
            let rows = CondRows {
                conds: &values,
                inputs: Some(&inputs),
                masks: mask.as_ref().map(|m| &m[..]),
                n_cond: 3,
            };
            shape.site_features(&rows, 0, &[0.25], 0)
        };
        let base = features([1.0, 2.0, 3.0], [0.5, -1.0, 2.0], None);
        assert_eq!(base, features([3.0, 1.0, 2.0], [2.0, 0.5, -1.0], None));
        assert_eq!(base, vec![0.25, 2.0, -1.0, 1.0, 1.0, 0.5, 1.0, 3.0, 2.0, 1.0]);
        let absent = Some([1.0, 0.0, 1.0, 1.0, 1.0]);
        let one_missing = features([1.0, 2.0, 3.0], [0.5, -1.0, 2.0], absent);
        assert_eq!(one_missing, features([1.0, -9.0, 3.0], [0.5, 4.0, 2.0], absent));
        assert_eq!(one_missing, vec![0.25, 1.0, 0.5, 1.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0]);
        let zero = features([1.0, 0.0, 3.0], [0.5, 0.0, 2.0], None);
        assert_ne!(one_missing, zero);
    }

    /// A site whose global lies far below the training ones keeps the smallest scale of the
    /// training sites, near e^{u/2 − 1.5} at the lowest training u, where the unfloored network
    /// extrapolates its ln s further down. Floors of the wrong count are refused.
    #[test]
    fn the_locals_scale_is_not_extrapolated_below_the_training_sites() {
        let (train, _) = sets(4000, 1);
        let (validation, _) = sets(500, 2);
        let lowest = train.target.chunks(1 + SITES).map(|r| f64::from(r[0])).fold(0.0, f64::min);
        let (scaling, _) = LocalScaling::fit(SHAPE, &[train], &[validation], 3).unwrap();
        let floor = scaling.log_scale_floor[0];
        assert!((floor - (0.5 * lowest - 1.5)).abs() < 0.5, "floor {floor}, lowest u {lowest}");
        let (far, _) = sets(1, 5);
        let features = SHAPE.site_features(&CondRows::of(&far), 0, &[-8.0], 0);
        let floored = scaling.site(&features).1[0];
        let unfloored = LocalScaling { log_scale_floor: Vec::new(), ..scaling.clone() };
        let below = unfloored.site(&features).1[0];
        assert_eq!(floored, floor);
        assert!(below < floor - 1.0, "unfloored ln s {below} against the floor {floor}");
        let damaged = LocalScaling { log_scale_floor: vec![floor; 2], ..scaling };
        assert!(damaged.check().unwrap_err().to_string().contains("floors"));
    }

    /// A damaged checkpoint's networks (sizes that do not fit the shape) are refused, not
    /// read out of bounds.
    #[test]
    fn refuses_networks_that_do_not_fit_the_shape() {
        let mlp = |widths: Vec<usize>| {
            let layers = widths.windows(2).map(|io| vec![0.0; (io[0] + 1) * io[1]]).collect();
            HostMlp { widths, layers, affine: Vec::new() }
        };
        let f = SHAPE.features();
        let ok = LocalScaling {
            shape: SHAPE,
            location: mlp(vec![f, 4, 1]),
            log_scale: mlp(vec![f, 1]),
            log_scale_floor: Vec::new(),
            globals: None,
        };
        assert!(ok.check().is_ok());
        let mut bad = ok.clone();
        bad.location = mlp(vec![f + 1, 4, 1]);
        assert!(bad.check().is_err());
        let mut short = ok.clone();
        short.log_scale.layers[0].pop();
        let err = short.check().unwrap_err().to_string();
        assert!(err.contains("damaged checkpoint"), "{err}");
        let (test, _) = sets(2, 5);
        let mut z = test.target.clone();
        assert!(short.whiten(CondRows::of(&test), &mut z).is_err());
    }
}
