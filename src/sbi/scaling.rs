//! Conditional standardisation of the likelihood surrogate's observations
//! (`--surrogate-scaling conditional`; by default where the fitted scale varies).
//!
//! Marginal standardisation leaves an observation as narrow as the simulator makes it given
//! its parameters: hier-brownian's y ~ N(θ, t) at t = 0.02 is about 0.01 wide in standardised
//! units. Flow matching's errors are of the velocity's scale, about 1, so such conditionals come
//! out several times too wide, and the posterior trained on those synthetic sites learns that
//! wide data can come from narrow parameters.
//!
//! Before the flow, each observation gets a location m and a log scale ln s that are affine
//! in its site's standardised parameters (and, in a function-valued task, in the observation's
//! own standardised input); the flow learns the residual z = (y − m) / s, and synthetic
//! observations are m + s·z. Where the simulator adds Gaussian noise whose mean and log scale
//! are affine in those coordinates (hier-gaussian, hier-gaussian-linear, whose σ is stored as
//! ln σ, and hier-brownian, whose time is stored as ln t), z is exactly N(0, 1) and the flow's
//! errors are multiplied by s. Elsewhere the affine part is a change of units: a location that
//! misses a nonlinear mean leaves residuals that widen s, so it falls back towards the marginal
//! standardisation, and the flow learns the rest.
//!
//! Both are least-squares fits in closed form (normal equations in f64): m to y, and ln s to
//! ln|y − m| + (γ + ln 2)/2, whose mean is ln σ for Gaussian noise of scale σ (γ: Euler's
//! constant); m is then refitted with weights 1/s² and ln s again from its residuals, so that
//! precise observations set the location where they are. An affine map is used, not a network: the fit of ln s sees noise of variance
//! π²/8 per observation, and a flexible fit of it carried its noise into s (measured on
//! hier-gaussian: two hidden layers of 64 gave s 15% off, and a worse posterior than marginal
//! standardisation). The fit is deterministic, so a resumed or refitted surrogate gets the same
//! m and s from the same simulations.

use serde::{Deserialize, Serialize};

use super::train::Sets;
use crate::error::{Error, Result};

/// (γ + ln 2) / 2: minus the mean of ln|ε| for ε ~ N(0, 1).
const LOG_ABS_NORMAL_OFFSET: f64 = 0.635_181_422_730_739;
/// π²/8: the variance of ln|ε| for ε ~ N(0, 1).
const LOG_ABS_NORMAL_VARIANCE: f64 = std::f64::consts::PI * std::f64::consts::PI / 8.0;
/// Bounds of ln s in standardised units: s stays in [1e-4, 1e2], so that z and m + s·z stay
/// finite for any residual.
const LOG_SCALE_RANGE: (f64, f64) = (-9.21, 4.61);
/// Residuals are floored here before their logarithm (an exact fit would give −∞).
const RESIDUAL_FLOOR: f64 = 1e-6;
/// Ridge added to the normal equations' diagonal, per row: keeps them solvable when a
/// coordinate is constant over the simulations, and changes nothing measurable otherwise.
const RIDGE: f64 = 1e-9;

/// A fitted conditional standardisation, saved in the surrogate's `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionalScaling {
    /// Condition values of a row (one site's parameters).
    pub n_cond: usize,
    /// Observation values of a row.
    pub n_target: usize,
    /// Functional-input values per observation (0: none). With inputs, one affine map of a
    /// row's conditions and the observation's own input serves every observation; without,
    /// each observation has its own map of the row's conditions.
    pub input_dim: usize,
    /// `[(features + 1) · outputs]`, row-major: a feature's weight for each output, then the
    /// intercepts.
    pub location: Vec<f64>,
    pub log_scale: Vec<f64>,
    /// The smallest ln s the fit gave any training simulation, per output
    /// ([`floored_log_scales`]). Empty in checkpoints written before the floor: none.
    #[serde(default)]
    pub log_scale_floor: Vec<f64>,
}

/// What fitting did, for `report.json`: the validation simulations' mean squared errors of m
/// (standardised units) and of ln s (against ln|y − m| + (γ + ln 2)/2, π²/8 ≈ 1.23 for exact
/// Gaussian noise), and how much the fitted ln s varies over the training rows (its standard
/// deviation per value, averaged over the values); for the surrogate's affine fit, also the
/// spread its noise alone would show were the scale constant.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ScalingReport {
    pub location_val_mse: f64,
    pub log_scale_val_mse: f64,
    #[serde(default)]
    pub log_scale_spread: f64,
    /// √(π²/8 · features / rows): the norm of ln s's coefficients, hence its spread over
    /// standardised features, fitted by least squares to values of variance π²/8 whose mean
    /// does not vary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_scale_noise: Option<f64>,
    /// The same for the posterior's globals, where its conditional scaling has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<Box<ScalingReport>>,
}

/// The standard deviation of each column of `[rows · columns]` values, averaged over columns.
pub(super) fn column_spread(values: &[f64], columns: usize) -> f64 {
    let rows = values.len() / columns.max(1);
    if rows == 0 {
        return 0.0;
    }
    let sd = |k: usize| {
        let column = values.iter().skip(k).step_by(columns);
        let mean = column.clone().sum::<f64>() / rows as f64;
        (column.map(|v| (v - mean).powi(2)).sum::<f64>() / rows as f64).sqrt()
    };
    (0..columns).map(sd).sum::<f64>() / columns as f64
}

/// The smallest value of each column of `[rows · columns]` values: a fit's log-scale floors.
pub(super) fn column_min(values: &[f64], columns: usize) -> Vec<f64> {
    let mut min = vec![f64::INFINITY; columns];
    for row in values.chunks(columns.max(1)) {
        for (m, &v) in min.iter_mut().zip(row) {
            *m = m.min(v);
        }
    }
    min
}

/// Log scales `[rows · floors.len()]`, each raised to its column's floor (none where `floors`
/// is empty), then clamped. Every conditional scaling floors its ln s at the smallest its fit
/// gave a training row: beyond the training rows an affine or ReLU map's ln s goes on falling,
/// and the location's small error there outgrows the scale. One validation simulation of
/// hier-gaussian-linear whose σ lay below every training one whitened to z = −31 and alone
/// doubled the surrogate's validation loss, so that one row chose its best epoch; a
/// validation set of the posterior's, to locals 20 to 48 scales off.
pub(super) fn floored_log_scales(log_s: Vec<f64>, floors: &[f64]) -> Vec<f64> {
    let columns = floors.len().max(1);
    let floor = |i: usize| floors.get(i % columns).copied().unwrap_or(f64::NEG_INFINITY);
    log_s.into_iter().enumerate().map(|(i, r)| clamp_log_scale(r.max(floor(i)))).collect()
}

/// Refuses floors of a checkpoint that are neither absent nor one per output.
pub(super) fn check_floors(floors: &[f64], outputs: usize) -> Result<()> {
    if floors.is_empty() || floors.len() == outputs {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "a conditional scaling holds {} log-scale floors for {outputs} values; the checkpoint is \
         damaged: train the run again",
        floors.len()
    )))
}

/// The affine maps' inputs and outputs for standardised sets of one layout.
pub(super) struct Design {
    /// `[rows · features]`.
    x: Vec<f64>,
    features: usize,
    outputs: usize,
}

impl Design {
    /// One row per set without inputs (its conditions; outputs: every observation), or one
    /// per observation with inputs (its set's conditions and its own input; output: it).
    fn new(
        n_cond: usize, n_target: usize, input_dim: usize, conds: &[f32], inputs: Option<&[f32]>,
    ) -> Result<Design> {
        if n_cond == 0 {
            return Err(Error::Invalid(
                "conditional scaling needs the site's parameters as conditions".into(),
            ));
        }
        let n = conds.len() / n_cond;
        if input_dim == 0 {
            let x = conds.iter().map(|&v| f64::from(v)).collect();
            return Ok(Design { x, features: n_cond, outputs: n_target });
        }
        let per_row = n_target * input_dim;
        let inputs = inputs.filter(|x| x.len() == n * per_row).ok_or_else(|| {
            Error::Shape(format!("conditional scaling: {n} rows need {} input values", n * per_row))
        })?;
        let mut x = Vec::with_capacity(n * n_target * (n_cond + input_dim));
        for (c, row_inputs) in conds.chunks(n_cond).zip(inputs.chunks(per_row)) {
            for input in row_inputs.chunks(input_dim) {
                x.extend(c.iter().chain(input).map(|&v| f64::from(v)));
            }
        }
        Ok(Design { x, features: n_cond + input_dim, outputs: 1 })
    }

    /// Rows of `features` values each (`x`), for maps with `outputs` outputs.
    pub(super) fn from_rows(x: Vec<f64>, features: usize, outputs: usize) -> Design {
        Design { x, features, outputs }
    }

    fn rows(&self) -> usize {
        self.x.len() / self.features.max(1)
    }

    /// `[rows · outputs]`: the affine map `coef` at every row.
    pub(super) fn apply(&self, coef: &[f64]) -> Vec<f64> {
        let (f, o) = (self.features, self.outputs);
        let intercept = &coef[f * o..];
        let mut out = Vec::with_capacity(self.rows() * o);
        for x in self.x.chunks(f) {
            out.extend((0..o).map(|k| {
                intercept[k] + x.iter().enumerate().map(|(j, v)| v * coef[j * o + k]).sum::<f64>()
            }));
        }
        out
    }

    /// Least squares of `y` (`[rows · outputs]`) on the features and an intercept, each
    /// output's residuals weighted by `weights` (`[rows · outputs]`; `None`: equally).
    pub(super) fn fit(&self, y: &[f64], weights: Option<&[f64]>) -> Result<Vec<f64>> {
        let (f, o) = (self.features, self.outputs);
        let p = f + 1;
        let mut coef = vec![0.0; p * o];
        let mut row = vec![1.0; p];
        for k in 0..o {
            let mut xtx = vec![0.0; p * p];
            let mut xty = vec![0.0; p];
            let mut total = 0.0;
            for (i, x) in self.x.chunks(f).enumerate() {
                let w = weights.map_or(1.0, |w| w[i * o + k]);
                total += w;
                row[..f].copy_from_slice(x);
                for a in 0..p {
                    for b in 0..p {
                        xtx[a * p + b] += w * row[a] * row[b];
                    }
                    xty[a] += w * row[a] * y[i * o + k];
                }
            }
            for a in 0..p {
                xtx[a * p + a] += RIDGE * total;
            }
            let l = cholesky(&xtx, p).ok_or_else(not_determined)?;
            for (a, v) in solve_cholesky(&l, p, &xty).into_iter().enumerate() {
                coef[a * o + k] = v;
            }
        }
        Ok(coef)
    }
}

fn not_determined() -> Error {
    Error::Invalid(
        "conditional scaling: the training data do not determine an affine fit (too few \
         finite simulations); raise --budget or use marginal scaling"
            .into(),
    )
}

/// The lower Cholesky factor of the symmetric `[p · p]` matrix `a`; `None` when it is not
/// positive definite.
fn cholesky(a: &[f64], p: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; p * p];
    for i in 0..p {
        for j in 0..=i {
            let s = a[i * p + j] - (0..j).map(|k| l[i * p + k] * l[j * p + k]).sum::<f64>();
            if i == j {
                // NaN sums fail this too.
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[i * p + i] = s.sqrt();
            } else {
                l[i * p + j] = s / l[j * p + j];
            }
        }
    }
    Some(l)
}

/// Solves L Lᵀ x = b.
fn solve_cholesky(l: &[f64], p: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; p];
    for i in 0..p {
        y[i] = (b[i] - (0..i).map(|k| l[i * p + k] * y[k]).sum::<f64>()) / l[i * p + i];
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        x[i] = (y[i] - (i + 1..p).map(|k| l[k * p + i] * x[k]).sum::<f64>()) / l[i * p + i];
    }
    x
}

/// ln|y − m| + (γ + ln 2)/2, the regression target of ln s.
pub(super) fn log_abs_residuals(y: &[f32], m: &[f64]) -> Vec<f64> {
    y.iter()
        .zip(m)
        .map(|(&y, m)| (f64::from(y) - m).abs().max(RESIDUAL_FLOOR).ln() + LOG_ABS_NORMAL_OFFSET)
        .collect()
}

pub(super) fn clamp_log_scale(r: f64) -> f64 {
    r.clamp(LOG_SCALE_RANGE.0, LOG_SCALE_RANGE.1)
}

fn mse(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / a.len().max(1) as f64
}

fn inputs_of(sets: &Sets) -> Option<&[f32]> {
    (!sets.inputs.is_empty()).then_some(sets.inputs.as_slice())
}

impl ConditionalScaling {
    /// Fits m, then ln s, on standardised single-site sets of `n_cond` conditions and
    /// `input_dim` input values per observation; scores both on `validation`.
    pub fn fit(
        train: &Sets, validation: &Sets, n_cond: usize, input_dim: usize,
    ) -> Result<(ConditionalScaling, ScalingReport)> {
        let n_target = train.layout.target.len();
        let design = Design::new(n_cond, n_target, input_dim, &train.cond, inputs_of(train))?;
        let check =
            Design::new(n_cond, n_target, input_dim, &validation.cond, inputs_of(validation))?;
        let y: Vec<f64> = train.target.iter().map(|&v| f64::from(v)).collect();
        let fit_pair = |weights: Option<&[f64]>| -> Result<(Vec<f64>, Vec<f64>)> {
            let location = design.fit(&y, weights)?;
            let residuals = log_abs_residuals(&train.target, &design.apply(&location));
            Ok((location, design.fit(&residuals, None)?))
        };
        // Least squares, then once more weighted by 1/s² from the first fit's scales, so that
        // the precise observations (small s) set the location where they are.
        let (_, log_scale) = fit_pair(None)?;
        let weights: Vec<f64> =
            design.apply(&log_scale).iter().map(|r| (-2.0 * clamp_log_scale(*r)).exp()).collect();
        let (location, log_scale) = fit_pair(Some(&weights))?;
        let fitted: Vec<f64> = design.apply(&log_scale).into_iter().map(clamp_log_scale).collect();
        let log_scale_floor = column_min(&fitted, design.outputs);
        let scaling = ConditionalScaling {
            n_cond,
            n_target,
            input_dim,
            location,
            log_scale,
            log_scale_floor,
        };
        let m = check.apply(&scaling.location);
        let vy: Vec<f64> = validation.target.iter().map(|&v| f64::from(v)).collect();
        let report = ScalingReport {
            location_val_mse: mse(&m, &vy),
            log_scale_val_mse: mse(
                &scaling.log_scales(&check),
                &log_abs_residuals(&validation.target, &m),
            ),
            log_scale_spread: column_spread(&fitted, design.outputs),
            log_scale_noise: Some(
                (LOG_ABS_NORMAL_VARIANCE * design.features as f64 / design.rows().max(1) as f64)
                    .sqrt(),
            ),
            globals: None,
        };
        if !(report.location_val_mse.is_finite() && report.log_scale_val_mse.is_finite()) {
            return Err(Error::Invalid(
                "conditional scaling: the fit is not finite; use --surrogate-scaling marginal"
                    .into(),
            ));
        }
        Ok((scaling, report))
    }

    /// ln s at every row of `design`: the affine map, floored and clamped.
    fn log_scales(&self, design: &Design) -> Vec<f64> {
        floored_log_scales(design.apply(&self.log_scale), &self.log_scale_floor)
    }

    /// m and s of every observation of the rows of standardised `conds` and `inputs`
    /// (`[rows · n_target]` each).
    fn location_scale(
        &self, conds: &[f32], inputs: Option<&[f32]>,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let design = Design::new(self.n_cond, self.n_target, self.input_dim, conds, inputs)?;
        let coefficients = (design.features + 1) * design.outputs;
        if self.location.len() != coefficients || self.log_scale.len() != coefficients {
            return Err(Error::Invalid(format!(
                "conditional scaling: the surrogate's config.json holds {} location and {} log-scale \
                 coefficients where its layout needs {coefficients}; the checkpoint is damaged: \
                 train the run again",
                self.location.len(),
                self.log_scale.len()
            )));
        }
        check_floors(&self.log_scale_floor, design.outputs)?;
        let s = self.log_scales(&design).into_iter().map(f64::exp).collect();
        Ok((design.apply(&self.location), s))
    }

    /// Replaces standardised targets y by z = (y − m) / s.
    pub fn whiten(&self, sets: &mut Sets) -> Result<()> {
        let (m, s) = self.location_scale(&sets.cond, inputs_of(sets))?;
        check_len(m.len(), sets.target.len())?;
        for ((y, m), s) in sets.target.iter_mut().zip(&m).zip(&s) {
            *y = ((f64::from(*y) - m) / s) as f32;
        }
        Ok(())
    }

    /// Undoes [`ConditionalScaling::whiten`] on the flow's samples `z` (`[rows · n_target]`) of
    /// rows of standardised `conds` and `inputs`.
    pub fn unwhiten(&self, conds: &[f32], inputs: Option<&[f32]>, z: &mut [f32]) -> Result<()> {
        let (m, s) = self.location_scale(conds, inputs)?;
        check_len(m.len(), z.len())?;
        for ((z, m), s) in z.iter_mut().zip(&m).zip(&s) {
            *z = (m + s * f64::from(*z)) as f32;
        }
        Ok(())
    }
}

fn check_len(values: usize, targets: usize) -> Result<()> {
    if values != targets {
        return Err(Error::Shape(format!(
            "conditional scaling: {values} values for {targets} targets"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    use super::*;
    use crate::model::tokens::{Layout, Token};

    /// `n` rows from standard normal conditions c: without inputs, two observations
    /// y = (2c₀ − c₁ + e^{c₁/2}/10·ε₀, −c₀ + 0.3 + ε₁/5); with inputs, three observations
    /// y_k = c₀ + e^{x_k/2}/10·ε_k at standard normal inputs x_k. Returns the sets and each
    /// target's true (location, scale).
    fn rows(n: usize, functional: bool, seed: u64) -> (Sets, Vec<(f64, f64)>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
        let (mut cond, mut target, mut inputs, mut truth) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let c = [normal(), normal()];
            cond.extend(c.map(|v| v as f32));
            let at = if functional {
                (0..3)
                    .map(|_| {
                        let x = normal();
                        inputs.push(x as f32);
                        (c[0], (0.5 * x).exp() * 0.1)
                    })
                    .collect::<Vec<_>>()
            } else {
                vec![(2.0 * c[0] - c[1], (0.5 * c[1]).exp() * 0.1), (0.3 - c[0], 0.2)]
            };
            for (m, s) in at {
                target.push((m + s * normal()) as f32);
                truth.push((m, s));
            }
        }
        let token = Token { label: 0, position: 0, group: 0, input: false };
        let layout = Layout { cond: vec![token; 2], target: vec![token; truth.len() / n] };
        (Sets { sites: 1, layout, cond, target, inputs, mask: Vec::new() }, truth)
    }

    /// Where the simulator's mean and log scale are affine, the fit finds them (location and
    /// scale within 3% of the scale on average), the whitened residuals are standard normal,
    /// and unwhitening undoes whitening.
    /// The fitted scale's spread tells noise whose scale varies with the parameters from
    /// noise of one scale: y = c₀ + s·ε with s = 0.1, then s = 0.1·e^{1.2 c₁}.
    #[test]
    fn the_log_scale_spread_separates_varying_from_constant_noise() {
        let sets = |varying: bool, n: usize, seed: u64| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
            let (mut cond, mut target) = (vec![], vec![]);
            for _ in 0..n {
                let c = [normal(), normal()];
                let s = if varying { 0.1 * (1.2 * c[1]).exp() } else { 0.1 };
                cond.extend(c.map(|v| v as f32));
                target.push((c[0] + s * normal()) as f32);
            }
            let token = Token { label: 0, position: 0, group: 0, input: false };
            let layout = Layout { cond: vec![token; 2], target: vec![token] };
            Sets { sites: 1, layout, cond, target, inputs: vec![], mask: vec![] }
        };
        let spread = |varying| {
            let (train, validation) = (sets(varying, 5000, 1), sets(varying, 500, 2));
            ConditionalScaling::fit(&train, &validation, 2, 0).unwrap().1.log_scale_spread
        };
        let (constant, varying) = (spread(false), spread(true));
        assert!(constant < 0.1, "{constant}");
        assert!((varying - 1.2).abs() < 0.1, "{varying}");
    }

    #[test]
    fn finds_affine_location_and_scale_and_round_trips() {
        for functional in [false, true] {
            let input_dim = usize::from(functional);
            let (train, _) = rows(20000, functional, 1);
            let (validation, _) = rows(500, functional, 2);
            let (scaling, report) =
                ConditionalScaling::fit(&train, &validation, 2, input_dim).unwrap();
            // Exact Gaussian noise: ln|ε|'s variance π²/8 is all that ln s cannot explain.
            let ideal = std::f64::consts::PI.powi(2) / 8.0;
            assert!((report.log_scale_val_mse - ideal).abs() < 0.2, "{report:?}");
            let (mut test, truth) = rows(2000, functional, 4);
            let inputs = functional.then(|| test.inputs.clone());
            let (m, s) = scaling.location_scale(&test.cond, inputs.as_deref()).unwrap();
            // Errors in units of the true scale: a global fit extrapolates to the rare rows of
            // extreme conditions, so the worst row is allowed more than the mean.
            let loc: Vec<f64> =
                truth.iter().zip(&m).map(|((tm, ts), m)| (m - tm).abs() / ts).collect();
            let scale: Vec<f64> =
                truth.iter().zip(&s).map(|((_, ts), s)| (s / ts - 1.0).abs()).collect();
            for (what, e, mean, worst) in
                [("location", &loc, 0.03, 0.25), ("scale", &scale, 0.03, 0.1)]
            {
                let avg = e.iter().sum::<f64>() / e.len() as f64;
                let max = e.iter().fold(0.0f64, |a, &b| a.max(b));
                assert!(
                    avg < mean && max < worst,
                    "{functional}: {what} error {avg} (worst {max})"
                );
            }
            let y = test.target.clone();
            scaling.whiten(&mut test).unwrap();
            let n = test.target.len() as f64;
            let mean = test.target.iter().map(|&z| f64::from(z)).sum::<f64>() / n;
            let var = test.target.iter().map(|&z| (f64::from(z) - mean).powi(2)).sum::<f64>() / n;
            assert!(mean.abs() < 0.05 && (var.sqrt() - 1.0).abs() < 0.05, "z {mean} ± {var}");
            let mut back = test.target.clone();
            scaling.unwhiten(&test.cond, inputs.as_deref(), &mut back).unwrap();
            for (a, b) in back.iter().zip(&y) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} against {b}");
            }
        }
    }

    /// A row whose condition lies far below the training ones keeps the smallest scale of the
    /// training rows: y = c₀ + 0.1·e^{c₁}·ε, trained on standard normal c, whitens a row at
    /// c₁ = −8 (true scale 3·10⁻⁵, below every training scale) to a residual of ordinary size,
    /// where the unfloored affine scale makes the location's small error tens of scales wide.
    /// A checkpoint without floors reads, and keeps the unfloored scale.
    #[test]
    fn the_scale_is_not_extrapolated_below_the_training_rows() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
        let token = Token { label: 0, position: 0, group: 0, input: false };
        let layout = Layout { cond: vec![token; 2], target: vec![token] };
        let conds: Vec<[f64; 2]> = (0..4000).map(|_| [normal(), normal()]).collect();
        let target = conds.iter().map(|c| (c[0] + 0.1 * c[1].exp() * normal()) as f32).collect();
        let cond = conds.iter().flat_map(|c| c.map(|v| v as f32)).collect();
        let train = Sets { sites: 1, layout, cond, target, inputs: vec![], mask: vec![] };
        let (scaling, _) = ConditionalScaling::fit(&train, &train.clone(), 2, 0).unwrap();
        let lowest = train.cond.chunks(2).map(|c| f64::from(c[1])).fold(f64::INFINITY, f64::min);
        let floor = scaling.log_scale_floor[0];
        assert!((floor - (0.1f64.ln() + lowest)).abs() < 0.3, "floor {floor}, lowest c₁ {lowest}");
        // The location's error at c₁ = −8 alone, without noise: y = c₀ exactly.
        let far = Sets { target: vec![0.5], cond: vec![0.5, -8.0], ..train.clone() };
        let z = |scaling: &ConditionalScaling| {
            let mut row = far.clone();
            scaling.whiten(&mut row).unwrap();
            row.target[0]
        };
        let unfloored: ConditionalScaling = serde_json::from_value({
            let mut v = serde_json::to_value(&scaling).unwrap();
            v.as_object_mut().unwrap().remove("log_scale_floor");
            v
        })
        .unwrap();
        assert!(unfloored.log_scale_floor.is_empty());
        let (with, without) = (z(&scaling), z(&unfloored));
        assert!(with.abs() < 1.0, "floored z {with}");
        assert!(without.abs() > 4.0, "unfloored z {without}: the case no longer tests the floor");
    }

    /// Conditions that do not vary leave the intercept to the ridge: the fit still solves;
    /// coefficients of the wrong count (a damaged checkpoint) and inputs of the wrong length
    /// are refused.
    #[test]
    fn constant_conditions_fit_and_bad_inputs_are_refused() {
        let (mut train, _) = rows(300, false, 5);
        train.cond.iter_mut().for_each(|c| *c = 0.0);
        let (scaling, _) = ConditionalScaling::fit(&train, &train.clone(), 2, 0).unwrap();
        assert!(scaling.location.iter().all(|v| v.is_finite()));
        let damaged = ConditionalScaling { location: vec![0.0; 2], ..scaling.clone() };
        let err = damaged.unwhiten(&train.cond, None, &mut train.target.clone()).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        let (functional, _) = rows(10, true, 6);
        let err = ConditionalScaling::fit(&functional, &functional, 2, 2).unwrap_err();
        assert!(err.to_string().contains("input values"), "{err}");
    }
}
