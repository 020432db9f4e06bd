//! `hier-lotka-volterra`: predator–prey dynamics per site, both species observed with log-normal
//! noise at five times. Globals, for each rate k ∈ (α, β, γ, δ): a log-location μ_k ~ N(0, 0.1)
//! and a log-scale σ_k ~ Exp(1). Locals: the site's rates, k_s ~ LogNormal(μ_k, σ_k). The ODE is
//! x' = αx − βxy (prey), y' = −γy + δxy (predators) from (x, y) = (30, 1); at t = 0, 5, …, 20 each
//! population is observed as exp(ln clamp(value, 1e−10, 1e4) + 0.1 ε), ε ~ N(0, 1).
//!
//! One observation variable `y` of 10 values per site: the prey at the five times, then the
//! predators at the five times. Observations are positive, hence the `Log` bijection. No exact
//! posterior.

use super::dopri::{solve_at, Tolerances};
use super::{std_normal, Bijection, HierarchicalModel, Variable};
use rand::{Rng, RngExt};
use rand_distr::Exp1;

/// (x, y) at t = 0.
const INITIAL: [f64; 2] = [30.0, 1.0];
/// Observation times 0, 5, …, 20.
const TIMES: usize = 5;
const INTERVAL: f64 = 5.0;
/// Populations are clamped to [1e−10, 1e4] before the noise, in logs.
const LOG_FLOOR: f64 = -23.025850929940457;
const LOG_CEILING: f64 = 9.210340371976184;
/// Log-sd of the observation noise.
const NOISE: f64 = 0.1;
/// Sd of the prior on each log-location μ_k.
const MU_SD: f64 = 0.1;
const RATES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
/// The ODE is solved for (ln x, ln y), so the tolerances are relative errors of the populations,
/// a hundred-millionth of the noise. With σ_k ~ Exp(1) the prior's rates span many orders of
/// magnitude; in 20 000 prior draws the costliest solve took about 30 000 attempted steps, and
/// none reached the cap. The cap is for rates beyond those (a user's, a proposal's), where the
/// populations cycle too often to follow: such a solve fails within milliseconds (NaN
/// observations, which the pipelines drop) instead of stalling a batch.
const TOLERANCES: Tolerances = Tolerances { rtol: 1e-10, atol: 1e-10, max_steps: 100_000 };

/// The Lotka–Volterra task (docs/architecture.md#tasks, `hier-lotka-volterra`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HierLotkaVolterra;

impl HierarchicalModel for HierLotkaVolterra {
    fn name(&self) -> &str {
        "hier-lotka-volterra"
    }

    fn global_variables(&self) -> Vec<Variable> {
        let mus = RATES.map(|k| Variable::scalar(format!("mu_{k}"), Bijection::Identity));
        let sigmas = RATES.map(|k| Variable::scalar(format!("sigma_{k}"), Bijection::Log));
        [mus, sigmas].concat()
    }

    fn local_variables(&self) -> Vec<Variable> {
        RATES.map(|k| Variable::scalar(k, Bijection::Log)).to_vec()
    }

    fn observation_variables(&self) -> Vec<Variable> {
        vec![Variable::new("y", 2 * TIMES, Bijection::Log)]
    }

    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64> {
        let mut globals: Vec<f64> = (0..RATES.len()).map(|_| MU_SD * std_normal(rng)).collect();
        globals.extend((0..RATES.len()).map(|_| rng.sample::<f64, _>(Exp1)));
        globals
    }

    fn sample_locals(&self, globals: &[f64], rng: &mut dyn Rng) -> Vec<f64> {
        let (mus, sigmas) = globals.split_at(RATES.len());
        mus.iter().zip(sigmas).map(|(mu, sigma)| (mu + sigma * std_normal(rng)).exp()).collect()
    }

    fn simulate_site(
        &self, _globals: &[f64], locals: &[f64], _inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        let Some(logs) = log_populations(locals, INITIAL, &observation_times()) else {
            return vec![f64::NAN; 2 * TIMES];
        };
        // The solver's states are (ln x, ln y) per time; the observation lists x first, then y.
        let (prey, predators) = (logs.iter().step_by(2), logs.iter().skip(1).step_by(2));
        prey.chain(predators)
            .map(|&u| (u.clamp(LOG_FLOOR, LOG_CEILING) + NOISE * std_normal(rng)).exp())
            .collect()
    }
}

fn observation_times() -> [f64; TIMES] {
    std::array::from_fn(|k| INTERVAL * k as f64)
}

/// (ln x, ln y) at each of `times`, concatenated, for rates (α, β, γ, δ) from `initial`; `None`
/// when the solver fails.
///
/// In logs the populations stay positive whatever the step, a population near extinction keeps
/// its relative accuracy instead of sinking under an absolute tolerance, and the clamp and the
/// noise act on logs anyway.
fn log_populations(rates: &[f64], initial: [f64; 2], times: &[f64]) -> Option<Vec<f64>> {
    let start = initial.map(f64::ln);
    solve_at(lotka_volterra_in_logs(rates), 0.0, &start, times, &TOLERANCES)
}

/// d(ln x)/dt = α − βy, d(ln y)/dt = −γ + δx.
fn lotka_volterra_in_logs(rates: &[f64]) -> impl Fn(f64, &[f64], &mut [f64]) {
    let (alpha, beta, gamma, delta) = (rates[0], rates[1], rates[2], rates[3]);
    move |_, u, du| {
        du[0] = alpha - beta * u[1].exp();
        du[1] = -gamma + delta * u[0].exp();
    }
}

#[cfg(test)]
mod tests {
    use super::super::rk4::rk4;
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// A classic oscillating case, equilibrium (γ/δ, α/β) = (20, 10).
    const CLASSIC: [f64; 4] = [1.0, 0.1, 1.5, 0.075];

    fn draw(seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let g = HierLotkaVolterra.sample_globals(&mut rng);
        let l = HierLotkaVolterra.sample_locals(&g, &mut rng);
        (g, l)
    }

    /// The conserved quantity V = δx − γ ln x + βy − α ln y, from logs, and the size of its terms.
    fn invariant(rates: &[f64], u: &[f64]) -> (f64, f64) {
        let terms =
            [rates[3] * u[0].exp(), -rates[2] * u[0], rates[1] * u[1].exp(), -rates[0] * u[1]];
        (terms.iter().sum(), terms.iter().map(|t| t.abs()).sum())
    }

    #[test]
    fn the_solution_in_logs_matches_rk4_on_the_populations() {
        let times = observation_times();
        let logs = log_populations(&CLASSIC, INITIAL, &times).unwrap();
        let [a, b, c, d] = CLASSIC;
        let f = move |_: f64, p: &[f64], dp: &mut [f64]| {
            dp[0] = a * p[0] - b * p[0] * p[1];
            dp[1] = -c * p[1] + d * p[0] * p[1];
        };
        let want = rk4(f, &INITIAL, &times, 1e-3);
        for (u, w) in logs.iter().zip(&want) {
            assert!((u.exp() - w).abs() <= 1e-6 * w, "{} vs {w}", u.exp());
        }
    }

    #[test]
    fn the_invariant_is_conserved_along_trajectories() {
        let times: Vec<f64> = (0..=80).map(|k| 0.25 * k as f64).collect();
        let mut cases = vec![CLASSIC.to_vec()];
        cases.extend((0..40).map(|seed| draw(seed).1));
        let mut solved = 0;
        for rates in cases {
            // A prior draw fast enough to exhaust the step budget is the cap's business, below.
            let Some(logs) = log_populations(&rates, INITIAL, &times) else { continue };
            solved += 1;
            let (v0, scale) = invariant(&rates, &logs[..2]);
            for u in logs.chunks(2) {
                let (v, _) = invariant(&rates, u);
                assert!((v - v0).abs() <= 1e-6 * scale, "rates {rates:?}: V {v} vs {v0}");
            }
        }
        assert!(solved > 30, "{solved} of 41 solved");
    }

    #[test]
    fn a_trajectory_started_at_the_equilibrium_stays_there() {
        let [a, b, c, d] = CLASSIC;
        let logs = log_populations(&CLASSIC, [c / d, a / b], &observation_times()).unwrap();
        // The derivative vanishes up to rounding, so the solver takes steps longer than a cycle,
        // where Dormand–Prince is unstable: the rounding grows, but only to some multiple of the
        // 1e−10 tolerance before the error control shortens the steps.
        for u in logs.chunks(2) {
            assert!((u[0] - 20f64.ln()).abs() < 1e-8 && (u[1] - 10f64.ln()).abs() < 1e-8, "{u:?}");
        }
    }

    #[test]
    fn observations_list_prey_then_predators_with_log_sd_0_1() {
        // From (30, 1) the classic case's logs are known at each time; the noise is what is left.
        let logs = log_populations(&CLASSIC, INITIAL, &observation_times()).unwrap();
        let truth: Vec<f64> =
            logs.iter().step_by(2).chain(logs.iter().skip(1).step_by(2)).copied().collect();
        let mut rng = StdRng::seed_from_u64(7);
        let mut residuals = Vec::new();
        for _ in 0..4_000 {
            let y = HierLotkaVolterra.simulate_site(&[], &CLASSIC, None, &mut rng);
            residuals.extend(y.iter().zip(&truth).map(|(y, t)| y.ln() - t));
        }
        let n = residuals.len() as f64;
        let mean = residuals.iter().sum::<f64>() / n;
        let sd = (residuals.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        // 40 000 residuals: the mean's sd is 5e−4 and the sd's 3.5e−4.
        assert!(mean.abs() < 2.5e-3, "mean {mean}");
        assert!((sd - NOISE).abs() < 2e-3, "sd {sd}");
    }

    #[test]
    fn populations_are_clamped_before_the_noise() {
        // Fast prey growth (α = 1e4) is answered by a crash to ln x ≈ −26 000 at t = 5: the
        // observation sits at the floor, up to the noise.
        let crash = [10_131.0, 1.243, 2.503, 1.370];
        let logs = log_populations(&crash, INITIAL, &observation_times()).unwrap();
        assert!(logs[2] < -1e4, "{logs:?}");
        let y = HierLotkaVolterra.simulate_site(&[], &crash, None, &mut StdRng::seed_from_u64(0));
        assert!((y[1].ln() - LOG_FLOOR).abs() < 0.5, "{y:?}");
        // Every finite prior simulation lies within a few noise sd of the clamp's range.
        let mut rng = StdRng::seed_from_u64(1);
        for seed in 0..200 {
            let (_, l) = draw(seed);
            let y = HierLotkaVolterra.simulate_site(&[], &l, None, &mut rng);
            if y.iter().all(|v| v.is_finite()) {
                let outside =
                    y.iter().find(|v| !(LOG_FLOOR - 1.0..=LOG_CEILING + 1.0).contains(&v.ln()));
                assert!(outside.is_none(), "rates {l:?}: {y:?}");
            }
        }
    }

    #[test]
    fn rates_too_fast_to_solve_fail_instead_of_stalling() {
        // ω = √(αγ) = 1e4: 30 000 cycles before t = 20, beyond the step budget.
        let y = HierLotkaVolterra.simulate_site(
            &[],
            &[1e4, 1.0, 1e4, 1.0],
            None,
            &mut StdRng::seed_from_u64(0),
        );
        assert!(y.iter().all(|v| v.is_nan()), "{y:?}");
    }

    #[test]
    fn prior_draws_lie_in_their_supports_and_round_trip() {
        let model = HierLotkaVolterra;
        let names = model.parameter_names(1);
        assert_eq!(
            names[..8],
            [
                "mu_alpha",
                "mu_beta",
                "mu_gamma",
                "mu_delta",
                "sigma_alpha",
                "sigma_beta",
                "sigma_gamma",
                "sigma_delta"
            ]
        );
        assert_eq!(names[8..], ["alpha.0", "beta.0", "gamma.0", "delta.0"]);
        assert_eq!(model.observation_names(1).last().unwrap(), "y.0[9]");
        for seed in 0..200 {
            let (g, l) = draw(seed);
            assert!(g[4..].iter().chain(&l).all(|&p| p > 0.0), "{g:?} {l:?}");
            let params = [g, l].concat();
            let u = model.to_unconstrained(&params, 1);
            assert!(u.iter().all(|u| u.is_finite()), "{params:?}");
            for (b, x) in model.to_natural(&u, 1).iter().zip(&params) {
                assert!((b - x).abs() <= 1e-12 * x.abs().max(1.0), "{b} vs {x}");
            }
        }
    }
}
