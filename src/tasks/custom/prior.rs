//! The prior vocabulary of user models: eight families that know their supports, so that each
//! variable's bijection follows from its prior. A local prior's parameters may be constants, a
//! scalar global by name, or a function of the globals evaluated on whole batches of rows.

use std::fmt;
use std::sync::Arc;

use rand::Rng;
use rand_distr::{Beta, Distribution, Gamma};

use super::super::special::{
    ln_gamma, normal_log_interval, normal_log_pdf, truncated_standard_normal,
};
use super::super::{std_normal, uniform01, Bijection};
use crate::error::{Error, Result};

/// A prior parameter computed from the globals, vectorised over rows (a Python function).
pub trait ParamFunction: Send + Sync {
    /// One value per row of `globals` (`rows × global_dim`, natural space).
    fn eval(&self, globals: &[f64], rows: usize) -> Result<Vec<f64>>;
}

/// One parameter of a prior family.
#[derive(Clone)]
pub enum Param {
    Value(f64),
    /// The value of a scalar global variable, by name.
    Global(String),
    /// A function of all the globals.
    Function(Arc<dyn ParamFunction>),
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Value(v) => write!(f, "{v}"),
            Param::Global(name) => write!(f, "`{name}`"),
            Param::Function(_) => write!(f, "a function of the globals"),
        }
    }
}

impl From<f64> for Param {
    fn from(v: f64) -> Param {
        Param::Value(v)
    }
}

/// A prior family with its parameters. Bounds of a support (`Uniform`, `TruncatedNormal`) are
/// constants, so that every draw of a variable shares one bijection.
#[derive(Clone, Debug)]
pub enum Prior {
    Normal {
        loc: Param,
        scale: Param,
    },
    HalfNormal {
        scale: Param,
    },
    LogNormal {
        loc: Param,
        scale: Param,
    },
    Uniform {
        lo: f64,
        hi: f64,
    },
    /// N(loc, scale) truncated to (lo, hi); either bound may be infinite.
    TruncatedNormal {
        loc: Param,
        scale: Param,
        lo: f64,
        hi: f64,
    },
    /// Rate parameterisation: mean 1/rate.
    Exponential {
        rate: Param,
    },
    /// Shape and rate: mean shape/rate.
    Gamma {
        shape: Param,
        rate: Param,
    },
    Beta {
        alpha: Param,
        beta: Param,
    },
}

/// The rule a parameter's value must follow.
#[derive(Clone, Copy)]
enum Rule {
    Finite,
    Positive,
}

impl Prior {
    /// A prior from its family's name and its named parameters, as the model file and Python
    /// give them. The family's keys are required (a truncated normal's `lo` and `hi` are
    /// optional, infinite by default), no other key is taken, and bounds are numbers.
    pub fn from_named(variable: &str, family: &str, params: Vec<(String, Param)>) -> Result<Prior> {
        let (keys, optional): (&[&str], &[&str]) = match family {
            "Normal" | "LogNormal" => (&["loc", "scale"], &[]),
            "HalfNormal" => (&["scale"], &[]),
            "Uniform" => (&["lo", "hi"], &[]),
            "TruncatedNormal" => (&["loc", "scale"], &["lo", "hi"]),
            "Exponential" => (&["rate"], &[]),
            "Gamma" => (&["shape", "rate"], &[]),
            "Beta" => (&["alpha", "beta"], &[]),
            other => {
                return Err(Error::Invalid(format!(
                    "prior of `{variable}`: unknown family `{other}`; known: Normal, HalfNormal, \
                     LogNormal, Uniform, TruncatedNormal, Exponential, Gamma, Beta"
                )))
            }
        };
        let given: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        let missing: Vec<&&str> = keys.iter().filter(|k| !given.contains(k)).collect();
        let extra: Vec<&&str> =
            given.iter().filter(|k| !keys.contains(k) && !optional.contains(k)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            let also = if optional.is_empty() {
                String::new()
            } else {
                format!(" (and optionally {})", optional.join(", "))
            };
            return Err(Error::Invalid(format!(
                "prior of `{variable}`: {family} takes {}{also}; missing {missing:?}, not used {extra:?}",
                keys.join(", ")
            )));
        }
        let take = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, p)| p.clone());
        // Present: checked above.
        let p = |key: &str| take(key).unwrap_or(Param::Value(f64::NAN));
        let bound = |key: &str, default: f64| match take(key) {
            None => Ok(default),
            Some(Param::Value(v)) => Ok(v),
            Some(other) => Err(Error::Invalid(format!(
                "prior of `{variable}`: {family} bound {key} is {other:?}; bounds are numbers"
            ))),
        };
        let inf = f64::INFINITY;
        Ok(match family {
            "Normal" => Prior::Normal { loc: p("loc"), scale: p("scale") },
            "LogNormal" => Prior::LogNormal { loc: p("loc"), scale: p("scale") },
            "HalfNormal" => Prior::HalfNormal { scale: p("scale") },
            "Uniform" => Prior::Uniform { lo: bound("lo", f64::NAN)?, hi: bound("hi", f64::NAN)? },
            "TruncatedNormal" => Prior::TruncatedNormal {
                loc: p("loc"),
                scale: p("scale"),
                lo: bound("lo", -inf)?,
                hi: bound("hi", inf)?,
            },
            "Exponential" => Prior::Exponential { rate: p("rate") },
            "Gamma" => Prior::Gamma { shape: p("shape"), rate: p("rate") },
            _ => Prior::Beta { alpha: p("alpha"), beta: p("beta") },
        })
    }

    /// The family's name as the model file and Python spell it.
    pub fn family(&self) -> &'static str {
        match self {
            Prior::Normal { .. } => "Normal",
            Prior::HalfNormal { .. } => "HalfNormal",
            Prior::LogNormal { .. } => "LogNormal",
            Prior::Uniform { .. } => "Uniform",
            Prior::TruncatedNormal { .. } => "TruncatedNormal",
            Prior::Exponential { .. } => "Exponential",
            Prior::Gamma { .. } => "Gamma",
            Prior::Beta { .. } => "Beta",
        }
    }

    /// The named parameters and the rule each follows, in the family's order.
    fn params(&self) -> Vec<(&'static str, &Param, Rule)> {
        use Rule::{Finite, Positive};
        match self {
            Prior::Normal { loc, scale }
            | Prior::LogNormal { loc, scale }
            | Prior::TruncatedNormal { loc, scale, .. } => {
                vec![("loc", loc, Finite), ("scale", scale, Positive)]
            }
            Prior::HalfNormal { scale } => vec![("scale", scale, Positive)],
            Prior::Uniform { .. } => vec![],
            Prior::Exponential { rate } => vec![("rate", rate, Positive)],
            Prior::Gamma { shape, rate } => {
                vec![("shape", shape, Positive), ("rate", rate, Positive)]
            }
            Prior::Beta { alpha, beta } => {
                vec![("alpha", alpha, Positive), ("beta", beta, Positive)]
            }
        }
    }

    /// The map from the prior's support to the real line.
    pub fn bijection(&self) -> Bijection {
        match *self {
            Prior::Normal { .. } => Bijection::Identity,
            Prior::HalfNormal { .. }
            | Prior::LogNormal { .. }
            | Prior::Exponential { .. }
            | Prior::Gamma { .. } => Bijection::Log,
            Prior::Uniform { lo, hi } => Bijection::LogitAffine { lo, hi },
            Prior::Beta { .. } => Bijection::LogitAffine { lo: 0.0, hi: 1.0 },
            Prior::TruncatedNormal { lo, hi, .. } => match (lo.is_finite(), hi.is_finite()) {
                (true, true) => Bijection::LogitAffine { lo, hi },
                (true, false) if lo == 0.0 => Bijection::Log,
                (true, false) => Bijection::LogAbove { lo },
                (false, true) => Bijection::LogBelow { hi },
                (false, false) => Bijection::Identity,
            },
        }
    }

    /// Checks the constants and the references: bounds ordered, constant parameters valid,
    /// globals named (`globals`: scalar global names, in order) only where `may_reference`.
    pub(super) fn check(&self, variable: &str, globals: Option<&[String]>) -> Result<()> {
        let bad = |why: String| Err(Error::Invalid(format!("prior of `{variable}`: {why}")));
        if let Prior::Uniform { lo, hi } | Prior::TruncatedNormal { lo, hi, .. } = *self {
            let finite_ok =
                matches!(self, Prior::TruncatedNormal { .. }) || (lo.is_finite() && hi.is_finite());
            if lo.is_nan() || hi.is_nan() || lo >= hi || !finite_ok {
                return bad(format!(
                    "{} needs bounds lo < hi ({}), got lo = {lo}, hi = {hi}",
                    self.family(),
                    if finite_ok { "either may be infinite" } else { "both finite" }
                ));
            }
        }
        for (name, param, rule) in self.params() {
            match param {
                Param::Value(v) if !rule.holds(*v) => {
                    return bad(format!("{} {name} = {v} must be {}", self.family(), rule.says()))
                }
                Param::Value(_) => {}
                Param::Global(g) => match globals {
                    None => {
                        return bad(format!(
                            "{name} refers to `{g}`, but a global's prior takes only constants"
                        ))
                    }
                    Some(names) if !names.contains(g) => {
                        return bad(format!(
                        "{name} refers to `{g}`, which is not a scalar global (scalar globals: {})",
                        names.join(", ")
                    ))
                    }
                    Some(_) => {}
                },
                Param::Function(_) if globals.is_none() => {
                    return bad(format!(
                        "{name} is a function, but a global's prior takes only constants"
                    ))
                }
                Param::Function(_) => {}
            }
        }
        Ok(())
    }

    /// Draws `n` values per row for `rows` rows, the parameters resolved against each row's
    /// globals (`rows × global_dim`; `global_index` maps a global's name to its column).
    /// A parameter that resolves to an invalid value (a negative scale from a global) is an
    /// error naming the variable and the row.
    pub fn sample(
        &self, variable: &str, globals: &[f64], rows: usize, n: usize,
        global_index: &dyn Fn(&str) -> usize, rng: &mut dyn Rng,
    ) -> Result<Vec<f64>> {
        let columns = self.resolve(variable, globals, rows, global_index)?;
        let mut out = Vec::with_capacity(rows * n);
        for r in 0..rows {
            let p: Vec<f64> = columns.iter().map(|c| c[r]).collect();
            for _ in 0..n {
                out.push(self.draw(&p, rng));
            }
        }
        Ok(out)
    }

    /// ln density of `values` (`n` per row of globals, as [`Prior::sample`] draws them), summed
    /// per row; −∞ outside the support.
    pub fn log_density(
        &self, variable: &str, globals: &[f64], rows: usize, values: &[f64],
        global_index: &dyn Fn(&str) -> usize,
    ) -> Result<Vec<f64>> {
        let columns = self.resolve(variable, globals, rows, global_index)?;
        let n = values.len() / rows.max(1);
        Ok((0..rows)
            .map(|r| {
                let p: Vec<f64> = columns.iter().map(|c| c[r]).collect();
                values[r * n..(r + 1) * n].iter().map(|&x| self.log_pdf(x, &p)).sum()
            })
            .collect())
    }

    /// ln density at `x` given the resolved parameters.
    fn log_pdf(&self, x: f64, p: &[f64]) -> f64 {
        let ninf = f64::NEG_INFINITY;
        let inside = |ok: bool, v: f64| if ok { v } else { ninf };
        match *self {
            Prior::Normal { .. } => normal_log_pdf(x, p[0], p[1]),
            Prior::HalfNormal { .. } => {
                inside(x >= 0.0, std::f64::consts::LN_2 + normal_log_pdf(x, 0.0, p[0]))
            }
            Prior::LogNormal { .. } => inside(x > 0.0, normal_log_pdf(x.ln(), p[0], p[1]) - x.ln()),
            Prior::Uniform { lo, hi } => inside(x >= lo && x <= hi, -(hi - lo).ln()),
            Prior::TruncatedNormal { lo, hi, .. } => {
                let (m, s) = (p[0], p[1]);
                let mass = normal_log_interval((lo - m) / s, (hi - m) / s);
                inside(x >= lo && x <= hi, normal_log_pdf(x, m, s) - mass)
            }
            Prior::Exponential { .. } => inside(x >= 0.0, p[0].ln() - p[0] * x),
            Prior::Gamma { .. } => {
                let (k, rate) = (p[0], p[1]);
                inside(x > 0.0, k * rate.ln() - ln_gamma(k) + (k - 1.0) * x.ln() - rate * x)
            }
            Prior::Beta { .. } => {
                let (a, b) = (p[0], p[1]);
                let ln_beta = ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b);
                inside(x > 0.0 && x < 1.0, (a - 1.0) * x.ln() + (b - 1.0) * (-x).ln_1p() - ln_beta)
            }
        }
    }

    /// The family's parameters for each row of globals (one column per parameter), each
    /// checked against its rule.
    fn resolve(
        &self, variable: &str, globals: &[f64], rows: usize, global_index: &dyn Fn(&str) -> usize,
    ) -> Result<Vec<Vec<f64>>> {
        let global_dim = globals.len().checked_div(rows).unwrap_or(0);
        let mut columns = Vec::new();
        for (name, param, rule) in self.params() {
            let values = match param {
                Param::Value(v) => vec![*v; rows],
                Param::Global(g) => {
                    let j = global_index(g);
                    (0..rows).map(|r| globals[r * global_dim + j]).collect()
                }
                Param::Function(f) => {
                    let v = f.eval(globals, rows)?;
                    if v.len() != rows {
                        return Err(Error::Shape(format!(
                            "prior of `{variable}`: the function for {name} returned {} values for {rows} rows of globals; it must return one per row",
                            v.len()
                        )));
                    }
                    v
                }
            };
            if let Some(r) = values.iter().position(|&v| !rule.holds(v)) {
                return Err(Error::Invalid(format!(
                    "prior of `{variable}`: {} {name} = {} (from {param:?}, globals {:?}) must be {}",
                    self.family(),
                    values[r],
                    &globals[r * global_dim..(r + 1) * global_dim],
                    rule.says()
                )));
            }
            columns.push(values);
        }
        Ok(columns)
    }

    /// One draw given the resolved parameters, strictly inside the support so that the
    /// bijection stays finite.
    fn draw(&self, p: &[f64], rng: &mut dyn Rng) -> f64 {
        let positive = |x: f64| x.max(f64::MIN_POSITIVE);
        match *self {
            Prior::Normal { .. } => p[0] + p[1] * std_normal(rng),
            Prior::HalfNormal { .. } => positive(p[0] * std_normal(rng).abs()),
            Prior::LogNormal { .. } => positive((p[0] + p[1] * std_normal(rng)).exp()),
            Prior::Uniform { lo, hi } => {
                (lo + (hi - lo) * uniform01(rng)).clamp(lo.next_up(), hi.next_down())
            }
            Prior::TruncatedNormal { lo, hi, .. } => {
                let (m, s) = (p[0], p[1]);
                let z = truncated_standard_normal((lo - m) / s, (hi - m) / s, uniform01(rng));
                (m + s * z).clamp(lo.next_up(), hi.next_down())
            }
            Prior::Exponential { .. } => positive(-(1.0 - uniform01(rng)).ln() / p[0]),
            Prior::Gamma { .. } => {
                // Valid parameters were checked, so construction cannot fail.
                let g = Gamma::new(p[0], 1.0 / p[1]).map_or(f64::NAN, |d| d.sample(rng));
                positive(g)
            }
            Prior::Beta { .. } => {
                let b = Beta::new(p[0], p[1]).map_or(f64::NAN, |d| d.sample(rng));
                b.clamp(f64::MIN_POSITIVE, 1.0f64.next_down())
            }
        }
    }
}

impl Rule {
    fn holds(self, v: f64) -> bool {
        match self {
            Rule::Finite => v.is_finite(),
            Rule::Positive => v.is_finite() && v > 0.0,
        }
    }

    fn says(self) -> &'static str {
        match self {
            Rule::Finite => "a finite number",
            Rule::Positive => "a finite number above 0",
        }
    }
}
