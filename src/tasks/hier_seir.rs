//! `hier-seir`: a seasonally forced SEIR epidemic per site, observed through Poisson counts of the
//! exposed at five random days of the third year. Globals: transmission β0 ~ U(0.1, 2),
//! incubation rate α ~ U(1/30, 1/7), recovery rate σ ~ U(1/21, 1/7). Locals: seasonal amplitude
//! A ~ U(0.2, 0.5), period T ~ Gamma(shape 365/7, rate 1/7) (mean 365 days), phase φ ~ U(0, π).
//! The observation days t ~ U[0, 365) are the functional input.
//!
//! The task observes dequantised counts y = count + u with u ∈ (0, 1], as the reference does:
//! they are continuous and strictly positive, so the observation bijection is `Log`. No exact
//! posterior.

use super::dopri::{solve_at, Tolerances};
use super::{uniform01, Bijection, HierarchicalModel, Variable};
use rand::{Rng, RngExt};
use rand_distr::{Gamma, Poisson};
use std::f64::consts::PI;

/// Population size, constant: births μN balance deaths μ(S+E+I+R).
const POPULATION: f64 = 10_000.0;
/// Birth and death rate μ, per day.
const TURNOVER: f64 = 1.0 / 50.0;
/// (S, E, I, R) at day 0: 0.1 % infectious.
const INITIAL: [f64; 4] = [9_990.0, 0.0, 10.0, 0.0];
/// Days simulated before the observation year, so that the initial state is forgotten.
const WARM_UP: f64 = 730.0;
/// Observation days per site, each drawn from U[0, YEAR).
const DRAWS: usize = 5;
const YEAR: f64 = 365.0;
/// The Poisson rate never falls below this, so an extinct epidemic still yields counts.
const RATE_FLOOR: f64 = 0.1;
/// Prior supports.
const BETA0: (f64, f64) = (0.1, 2.0);
const ALPHA: (f64, f64) = (1.0 / 30.0, 1.0 / 7.0);
const SIGMA: (f64, f64) = (1.0 / 21.0, 1.0 / 7.0);
const AMP: (f64, f64) = (0.2, 0.5);
const PHASE: (f64, f64) = (0.0, PI);
/// Gamma prior on the season's period, shape and rate.
const PERIOD_SHAPE: f64 = 365.0 / 7.0;
const PERIOD_RATE: f64 = 1.0 / 7.0;
/// Far tighter than the Poisson noise on the counts needs, and still cheap (5 000 sites take one or
/// two seconds on one core): the solver's error never competes with the simulator's. atol, in
/// people, governs only compartments near extinction, where the rate floor rules anyway.
const TOLERANCES: Tolerances = Tolerances { rtol: 1e-8, atol: 1e-6, max_steps: 200_000 };

/// The seasonal SEIR task (docs/architecture.md#tasks, `hier-seir`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HierSeir;

fn logit_affine((lo, hi): (f64, f64)) -> Bijection {
    Bijection::LogitAffine { lo, hi }
}

fn uniform((lo, hi): (f64, f64), rng: &mut dyn Rng) -> f64 {
    lo + (hi - lo) * uniform01(rng)
}

impl HierarchicalModel for HierSeir {
    fn name(&self) -> &str {
        "hier-seir"
    }

    fn global_variables(&self) -> Vec<Variable> {
        vec![
            Variable::scalar("beta0", logit_affine(BETA0)),
            Variable::scalar("alpha", logit_affine(ALPHA)),
            Variable::scalar("sigma", logit_affine(SIGMA)),
        ]
    }

    fn local_variables(&self) -> Vec<Variable> {
        vec![
            Variable::scalar("amp", logit_affine(AMP)),
            Variable::scalar("period", Bijection::Log),
            Variable::scalar("phase", logit_affine(PHASE)),
        ]
    }

    fn observation_variables(&self) -> Vec<Variable> {
        vec![Variable::new("y", DRAWS, Bijection::Log)]
    }

    fn ragged_observations(&self) -> bool {
        true
    }

    fn functional_input_dim(&self) -> usize {
        1
    }

    fn functional_input_names(&self) -> Vec<String> {
        vec!["t".to_string()]
    }

    fn sample_functional_inputs(&self, rng: &mut dyn Rng) -> Option<Vec<f64>> {
        Some((0..DRAWS).map(|_| YEAR * uniform01(rng)).collect())
    }

    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64> {
        vec![uniform(BETA0, rng), uniform(ALPHA, rng), uniform(SIGMA, rng)]
    }

    fn sample_locals(&self, _globals: &[f64], rng: &mut dyn Rng) -> Vec<f64> {
        let period = Gamma::new(PERIOD_SHAPE, 1.0 / PERIOD_RATE).expect("valid Gamma prior");
        vec![uniform(AMP, rng), rng.sample(period), uniform(PHASE, rng)]
    }

    fn simulate_site(
        &self, globals: &[f64], locals: &[f64], inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        let days = inputs.expect("hier-seir simulates at its observation days");
        let Some(exposed) = exposed_at(globals, locals, days) else {
            return vec![f64::NAN; days.len()];
        };
        let alpha = globals[1];
        exposed
            .iter()
            .map(|&e| {
                let rate = (alpha * e).max(RATE_FLOOR);
                let count: f64 = rng.sample(Poisson::new(rate).expect("finite positive rate"));
                // 1 − U[0, 1) lies in (0, 1], so y > 0 even for a zero count.
                count + (1.0 - uniform01(rng))
            })
            .collect()
    }
}

/// The exposed compartment E at day `t + WARM_UP` for each observation day `t`, in input order;
/// `None` when a day is not finite or precedes the start, or the solver fails.
fn exposed_at(globals: &[f64], locals: &[f64], days: &[f64]) -> Option<Vec<f64>> {
    let mut order: Vec<usize> = (0..days.len()).collect();
    order.sort_by(|&a, &b| days[a].total_cmp(&days[b]));
    let times: Vec<f64> = order.iter().map(|&j| days[j] + WARM_UP).collect();
    if times.iter().any(|t| !t.is_finite() || *t < 0.0) {
        return None;
    }
    let states = solve_at(seir(globals, locals), 0.0, &INITIAL, &times, &TOLERANCES)?;
    let mut exposed = vec![0.0; days.len()];
    for (state, &j) in states.chunks(INITIAL.len()).zip(&order) {
        exposed[j] = state[1];
    }
    Some(exposed)
}

/// The right-hand side of the seasonal SEIR system for one site's parameters.
fn seir(globals: &[f64], locals: &[f64]) -> impl Fn(f64, &[f64], &mut [f64]) {
    let (beta0, alpha, sigma) = (globals[0], globals[1], globals[2]);
    let (amp, period, phase) = (locals[0], locals[1], locals[2]);
    move |t, y, dy| {
        let [s, e, i, r] = [y[0], y[1], y[2], y[3]];
        let beta = beta0 * (1.0 + amp * (2.0 * PI * t / period - phase).sin());
        let infection = beta * s * i / POPULATION;
        dy[0] = -infection + TURNOVER * (e + i + r);
        dy[1] = infection - (alpha + TURNOVER) * e;
        dy[2] = alpha * e - (sigma + TURNOVER) * i;
        dy[3] = sigma * i - TURNOVER * r;
    }
}

#[cfg(test)]
mod tests {
    use super::super::rk4::rk4;
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn draw(seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let g = HierSeir.sample_globals(&mut rng);
        let l = HierSeir.sample_locals(&g, &mut rng);
        let days = HierSeir.sample_functional_inputs(&mut rng).unwrap();
        (g, l, days)
    }

    #[test]
    fn adaptive_solution_matches_fine_rk4() {
        // RK4 at dt = 0.01 agrees with dt = 0.005 to 1e−12 relative, so it stands for the exact
        // solution. The whole state is compared at days of the observation year: relative 1e−5,
        // measured against at least one person, since atol = 1e−6 governs compartments close to
        // extinction (over 200 draws the worst errors were 8e−8 relative above one person and
        // 1.5e−6 people below).
        let times = [730.0, 801.0, 912.0, 1003.0, 1094.0];
        for seed in 0..32 {
            let (g, l, _) = draw(seed);
            let got = solve_at(seir(&g, &l), 0.0, &INITIAL, &times, &TOLERANCES).unwrap();
            let want = rk4(seir(&g, &l), &INITIAL, &times, 0.01);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "seed {seed}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn prior_draws_lie_in_their_supports_and_round_trip() {
        for seed in 0..200 {
            let (g, l, days) = draw(seed);
            let params = [g.clone(), l.clone()].concat();
            let u = HierSeir.to_unconstrained(&params, 1);
            assert!(u.iter().all(|u| u.is_finite()), "{params:?}");
            for (b, x) in HierSeir.to_natural(&u, 1).iter().zip(&params) {
                assert!((b - x).abs() <= 1e-12 * x.abs().max(1.0), "{b} vs {x}");
            }
            assert!(l[1] > 0.0);
            assert!(days.iter().all(|t| (0.0..YEAR).contains(t)));
        }
    }

    #[test]
    fn observations_are_positive_finite_and_seeded() {
        for seed in 0..50 {
            let (g, l, days) = draw(seed);
            let y = HierSeir.simulate_site(&g, &l, Some(&days), &mut StdRng::seed_from_u64(seed));
            assert!(y.iter().all(|&y| y > 0.0 && y.is_finite()), "seed {seed}: {y:?}");
            let again =
                HierSeir.simulate_site(&g, &l, Some(&days), &mut StdRng::seed_from_u64(seed));
            assert_eq!(y, again);
        }
    }

    #[test]
    fn observation_days_map_back_to_input_order() {
        let (g, l, _) = draw(3);
        let days = [300.0, 10.0, 150.0, 10.0, 0.0];
        let exposed = exposed_at(&g, &l, &days).unwrap();
        for (j, &t) in days.iter().enumerate() {
            let alone = exposed_at(&g, &l, &[t]).unwrap()[0];
            assert!((exposed[j] - alone).abs() <= 1e-6 * alone.abs() + 1e-9, "day {t}");
        }
        assert!(exposed_at(&g, &l, &[f64::NAN]).is_none());
        let y = HierSeir.simulate_site(&g, &l, Some(&[f64::NAN]), &mut StdRng::seed_from_u64(0));
        assert!(y[0].is_nan());
    }

    #[test]
    fn strong_transmission_spreads_and_weak_transmission_dies_out() {
        let days: Vec<f64> = (0..365).map(f64::from).collect();
        let first_year: Vec<f64> = (0..365).map(|t| t as f64 - WARM_UP).collect();
        let seasons = [0.35, 365.0, 1.0];
        // R0 = β0 α / ((α + μ)(σ + μ)) ≈ 26: the exposed peak in the first year is large.
        let strong = [2.0, 1.0 / 7.0, 1.0 / 21.0];
        let peak = exposed_at(&strong, &seasons, &first_year).unwrap();
        let peak = peak.iter().fold(0.0f64, |m, &e| m.max(e));
        assert!(peak > 1_000.0, "peak E {peak}");
        // R0 ≈ 0.54 even at the top of the season (× 1.5 < 1): E decays to nothing.
        let weak = [0.1, 1.0 / 7.0, 1.0 / 7.0];
        let exposed = exposed_at(&weak, &seasons, &days).unwrap();
        assert!(exposed.iter().all(|&e| e.abs() < 1e-3), "{exposed:?}");
    }
}
