//! `hier-burgers`, the computational-fluid-dynamics task: ν ~ LogNormal(ln 0.05, 0.5) and
//! τ ~ HalfNormal(0.1) shared; per site A_s ~ U(0.5, 1.5), φ_s ~ U(0, 2π), the viscous Burgers
//! equation solved from u(x, 0) = A_s sin(2πx + φ_s) to t = 0.5 (`tasks/burgers.rs`), and eight
//! sensors at x_sj ~ U[0, 1) (the functional input) reading y_sj ~ N(u_s(x_sj, 0.5), τ). There is
//! no exact posterior.

use super::burgers::{cells_for, solve};
use super::{std_normal, uniform01, Bijection, HierarchicalModel, Variable};
use rand::{Rng, RngExt};
use std::f64::consts::TAU;

/// Median and log-scale standard deviation of the viscosity's prior.
const NU_MEDIAN: f64 = 0.05;
const NU_LOG_SD: f64 = 0.5;
/// Scale of the half-normal prior on the noise τ.
const TAU_SCALE: f64 = 0.1;
/// Support of the amplitude's uniform prior.
const AMP_LO: f64 = 0.5;
const AMP_HI: f64 = 1.5;
/// Time at which the sensors read the solution.
const END: f64 = 0.5;
/// Sensors per site.
const SENSORS: usize = 8;

/// Viscous Burgers observed at random sensors (docs/architecture.md#tasks, `hier-burgers`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HierBurgers;

impl HierarchicalModel for HierBurgers {
    fn name(&self) -> &str {
        "hier-burgers"
    }

    fn global_variables(&self) -> Vec<Variable> {
        vec![Variable::scalar("nu", Bijection::Log), Variable::scalar("tau", Bijection::Log)]
    }

    fn local_variables(&self) -> Vec<Variable> {
        vec![
            Variable::scalar("amp", Bijection::LogitAffine { lo: AMP_LO, hi: AMP_HI }),
            Variable::scalar("phase", Bijection::LogitAffine { lo: 0.0, hi: TAU }),
        ]
    }

    fn observation_variables(&self) -> Vec<Variable> {
        vec![Variable::new("y", SENSORS, Bijection::Identity)]
    }

    fn ragged_observations(&self) -> bool {
        true
    }

    fn functional_input_dim(&self) -> usize {
        1
    }

    fn functional_input_names(&self) -> Vec<String> {
        vec!["x".to_string()]
    }

    fn sample_functional_inputs(&self, rng: &mut dyn Rng) -> Option<Vec<f64>> {
        Some((0..SENSORS).map(|_| uniform01(rng)).collect())
    }

    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64> {
        let nu = NU_MEDIAN * (NU_LOG_SD * std_normal(rng)).exp();
        vec![nu, TAU_SCALE * std_normal(rng).abs()]
    }

    fn sample_locals(&self, _globals: &[f64], rng: &mut dyn Rng) -> Vec<f64> {
        vec![rng.random_range(AMP_LO..AMP_HI), rng.random_range(0.0..TAU)]
    }

    fn simulate_site(
        &self, globals: &[f64], locals: &[f64], inputs: Option<&[f64]>, rng: &mut dyn Rng,
    ) -> Vec<f64> {
        let sensors = inputs.expect("hier-burgers reads its sensor positions from the inputs");
        let (nu, tau) = (globals[0], globals[1]);
        let (amp, phase) = (locals[0], locals[1]);
        let solution = solve(nu, amp, phase, END, cells_for(nu, amp));
        sensors.iter().map(|&x| solution.at(x) + tau * std_normal(rng)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::simulate_dataset;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn prior_draws_lie_in_the_supports_and_round_trip() {
        let model = HierBurgers;
        let sites = 400;
        let data = simulate_dataset(&model, sites, &mut StdRng::seed_from_u64(1)).unwrap();
        let (nu, tau) = (data.params[0], data.params[1]);
        assert!(nu > 0.0 && tau > 0.0, "ν = {nu}, τ = {tau}");
        for locals in data.params[2..].chunks(2) {
            assert!((AMP_LO..AMP_HI).contains(&locals[0]), "amp {}", locals[0]);
            assert!((0.0..TAU).contains(&locals[1]), "phase {}", locals[1]);
        }
        let unconstrained = model.to_unconstrained(&data.params, sites);
        assert!(unconstrained.iter().all(|u| u.is_finite()));
        for (back, x) in model.to_natural(&unconstrained, sites).iter().zip(&data.params) {
            assert!((back - x).abs() <= 1e-12 * x.abs().max(1.0), "{x} → {back}");
        }
        let sensors = data.inputs.as_deref().unwrap();
        assert_eq!(sensors.len(), sites * SENSORS);
        assert!(sensors.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(data.is_finite());
    }

    #[test]
    fn globals_follow_their_priors() {
        // 4000 draws: the mean of ln ν within 5 standard errors of ln 0.05, E|τ| = 0.1·√(2/π)
        // within 5 standard errors (τ's sd is 0.1·√(1 − 2/π)).
        let mut rng = StdRng::seed_from_u64(2);
        let n = 4000;
        let draws: Vec<Vec<f64>> = (0..n).map(|_| HierBurgers.sample_globals(&mut rng)).collect();
        let log_nu = draws.iter().map(|g| g[0].ln()).sum::<f64>() / n as f64;
        let tau = draws.iter().map(|g| g[1]).sum::<f64>() / n as f64;
        let root_n = (n as f64).sqrt();
        assert!((log_nu - NU_MEDIAN.ln()).abs() < 5.0 * NU_LOG_SD / root_n, "mean ln ν {log_nu}");
        let (tau_mean, tau_sd) = (0.1 * (2.0 / std::f64::consts::PI).sqrt(), 0.0603);
        assert!((tau - tau_mean).abs() < 5.0 * tau_sd / root_n, "mean τ {tau}");
    }

    #[test]
    fn sensors_read_the_solution_plus_noise() {
        let (globals, locals) = ([0.03, 1e-9], [1.2, 4.0]);
        let sensors = [0.0, 0.1, 0.25, 0.5, 0.6, 0.75, 0.9, 0.999];
        let y = HierBurgers.simulate_site(
            &globals,
            &locals,
            Some(&sensors),
            &mut StdRng::seed_from_u64(3),
        );
        let solution = solve(0.03, 1.2, 4.0, END, cells_for(0.03, 1.2));
        for (&x, &value) in sensors.iter().zip(&y) {
            assert!((value - solution.at(x)).abs() < 1e-8, "x = {x}: {value}");
        }
    }

    #[test]
    fn a_seed_fixes_the_data_set() {
        let draw =
            |seed| simulate_dataset(&HierBurgers, 5, &mut StdRng::seed_from_u64(seed)).unwrap();
        assert_eq!(draw(4), draw(4));
        assert_ne!(draw(4).obs, draw(5).obs);
    }
}
