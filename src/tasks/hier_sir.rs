//! `hier-sir`: an SIR epidemic per site in a population of a million, observed through binomial
//! surveys of 1 000 people at ten days. Global: recovery rate γ ~ LogNormal(ln 0.125, 0.2).
//! Local: transmission rate β ~ LogNormal(ln 0.4, 0.5). A survey counts the infectious among
//! 1 000 people, y_k ~ Binomial(1 000, I(t_k)/N) at t_k = 0, 17, …, 153; the counts are kept as
//! they are (whole numbers in 0..=1 000, identity bijection). No exact posterior.

use super::dopri::{solve_at, Tolerances};
use super::{std_normal, Bijection, HierarchicalModel, Variable};
use rand::{Rng, RngExt};
use rand_distr::Binomial;

const POPULATION: f64 = 1e6;
/// (S, I, R) at day 0: one infectious person.
const INITIAL: [f64; 3] = [POPULATION - 1.0, 1.0, 0.0];
/// Observation days 0, 17, …, 153.
const DAYS: usize = 10;
const INTERVAL: f64 = 17.0;
/// People surveyed at each observation day.
const SURVEYED: u64 = 1_000;
/// LogNormal priors, as (median, log-sd).
const GAMMA: (f64, f64) = (0.125, 0.2);
const BETA: (f64, f64) = (0.4, 0.5);
/// A survey resolves I to about N / 1 000 = 1 000 people; these tolerances keep the solver's error
/// below a thousandth of a person (checked against fine RK4), so it never competes with the
/// binomial noise. atol, in people, must be tiny too: the epidemic starts from one person, and a
/// relative error made then is carried, as a shift in time, all the way to the peak (atol 1e−6
/// costs a hundredth of a person there).
const TOLERANCES: Tolerances = Tolerances { rtol: 1e-10, atol: 1e-10, max_steps: 100_000 };

/// The SIR task (docs/architecture.md#tasks, `hier-sir`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HierSir;

fn log_normal((median, sd): (f64, f64), rng: &mut dyn Rng) -> f64 {
    median * (sd * std_normal(rng)).exp()
}

impl HierarchicalModel for HierSir {
    fn name(&self) -> &str {
        "hier-sir"
    }

    fn global_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("gamma", Bijection::Log)]
    }

    fn local_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("beta", Bijection::Log)]
    }

    fn observation_variables(&self) -> Vec<Variable> {
        vec![Variable::new("y", DAYS, Bijection::Identity)]
    }

    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64> {
        vec![log_normal(GAMMA, rng)]
    }

    fn sample_locals(&self, _globals: &[f64], rng: &mut dyn Rng) -> Vec<f64> {
        vec![log_normal(BETA, rng)]
    }

    fn simulate_site(
        &self, globals: &[f64], locals: &[f64], _inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        let Some(infectious) = infectious_at_observation_days(globals[0], locals[0]) else {
            return vec![f64::NAN; DAYS];
        };
        infectious
            .iter()
            .map(|&i| {
                // The solver may leave I a rounding below zero once the epidemic is over.
                let p = (i / POPULATION).clamp(0.0, 1.0);
                let survey = Binomial::new(SURVEYED, p).expect("probability in [0, 1]");
                rng.sample(survey) as f64
            })
            .collect()
    }
}

fn observation_days() -> [f64; DAYS] {
    std::array::from_fn(|k| INTERVAL * k as f64)
}

/// I at each observation day, or `None` when the solver fails (a non-finite rate, say).
fn infectious_at_observation_days(gamma: f64, beta: f64) -> Option<Vec<f64>> {
    let states = solve_at(sir(gamma, beta), 0.0, &INITIAL, &observation_days(), &TOLERANCES)?;
    Some(states.chunks(INITIAL.len()).map(|state| state[1]).collect())
}

/// The right-hand side of the SIR system.
fn sir(gamma: f64, beta: f64) -> impl Fn(f64, &[f64], &mut [f64]) {
    move |_, y, dy| {
        let infection = beta * y[0] * y[1] / POPULATION;
        let recovery = gamma * y[1];
        dy[0] = -infection;
        dy[1] = infection - recovery;
        dy[2] = recovery;
    }
}

#[cfg(test)]
mod tests {
    use super::super::rk4::rk4;
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn draw(seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let g = HierSir.sample_globals(&mut rng);
        let l = HierSir.sample_locals(&g, &mut rng);
        (g, l)
    }

    #[test]
    fn adaptive_solution_matches_fine_rk4_to_a_thousandth_of_a_person() {
        // Prior draws, plus the fastest epidemic the prior makes plausible (β 5 sd above its
        // median against the slowest recovery) and one that dies out at once. At that β,
        // RK4 at dt = 0.01 is itself 3e−3 people off at the peak (it converges, 16-fold per
        // halving, onto the adaptive solution), hence dt = 0.005.
        let mut cases: Vec<(f64, f64)> = (0..32).map(draw).map(|(g, l)| (g[0], l[0])).collect();
        cases.extend([(0.125 * (-0.6f64).exp(), 0.4 * 2.5f64.exp()), (0.2, 0.05)]);
        for (gamma, beta) in cases {
            let got = infectious_at_observation_days(gamma, beta).unwrap();
            let want = rk4(sir(gamma, beta), &INITIAL, &observation_days(), 0.005);
            for (a, b) in got.iter().zip(want.chunks(3).map(|s| s[1])) {
                assert!((a - b).abs() < 1e-3, "γ {gamma}, β {beta}: I {a} vs {b}");
            }
        }
    }

    #[test]
    fn an_epidemic_peaks_when_beta_exceeds_gamma_and_dies_out_otherwise() {
        // R0 = β/γ = 8: most of the population is infected at once around the peak.
        let peak = infectious_at_observation_days(0.125, 1.0).unwrap();
        assert!(peak.iter().any(|&i| i > 0.3 * POPULATION), "{peak:?}");
        // R0 = 0.4: the single case recovers without passing the infection on.
        let out = infectious_at_observation_days(0.125, 0.05).unwrap();
        assert!(out.windows(2).all(|w| w[1] < w[0]) && out[DAYS - 1] < 1e-3, "{out:?}");
    }

    #[test]
    fn observations_are_counts_of_the_surveyed_and_seeded() {
        let mut seen_positive = false;
        for seed in 0..100 {
            let (g, l) = draw(seed);
            let y = HierSir.simulate_site(&g, &l, None, &mut StdRng::seed_from_u64(seed));
            assert_eq!(y.len(), DAYS);
            for &count in &y {
                assert!((0.0..=1_000.0).contains(&count) && count.fract() == 0.0, "{y:?}");
            }
            seen_positive |= y.iter().any(|&c| c > 0.0);
            let again = HierSir.simulate_site(&g, &l, None, &mut StdRng::seed_from_u64(seed));
            assert_eq!(y, again);
        }
        assert!(seen_positive, "some prior epidemic is visible in the surveys");
    }

    #[test]
    fn prior_draws_are_positive_and_round_trip() {
        assert_eq!(HierSir.parameter_names(2), ["gamma", "beta.0", "beta.1"]);
        let names: Vec<String> = (0..DAYS).map(|k| format!("y.0[{k}]")).collect();
        assert_eq!(HierSir.observation_names(1), names);
        for seed in 0..200 {
            let (g, l) = draw(seed);
            let params = [g, l].concat();
            assert!(params.iter().all(|&p| p > 0.0 && p.is_finite()), "{params:?}");
            let back = HierSir.to_natural(&HierSir.to_unconstrained(&params, 1), 1);
            for (b, x) in back.iter().zip(&params) {
                assert!((b - x).abs() <= 1e-12 * x, "{b} vs {x}");
            }
        }
    }
}
