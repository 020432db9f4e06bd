//! Adaptive Dormand–Prince 5(4) for the small ODE systems inside the task simulators: the
//! fifth-order solution is propagated, the embedded fourth-order one estimates the error, and the
//! last stage is the next step's first (FSAL). Steps are shortened to land exactly on the
//! requested output times, so no interpolant is needed.

/// Error control and a work limit for [`solve_at`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Tolerances {
    /// Relative tolerance, per component, against the larger of |y| before and after the step.
    pub rtol: f64,
    /// Absolute tolerance, in the units of the state: it governs components near zero.
    pub atol: f64,
    /// Attempted steps (accepted or rejected) before giving up: a stiff or diverging system
    /// fails quickly instead of hanging its caller.
    pub max_steps: usize,
}

/// Safety factor on the optimal step, so that the next step is usually accepted.
const SAFETY: f64 = 0.9;
/// Bounds on the ratio of consecutive step sizes.
const MIN_GROWTH: f64 = 0.2;
const MAX_GROWTH: f64 = 10.0;

// The Dormand–Prince tableau: nodes, stage weights, the fifth-order weights (which are also the
// last stage's row, hence FSAL), and the fifth- minus fourth-order weights.
const C: [f64; 5] = [1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0];
const A2: [f64; 1] = [1.0 / 5.0];
const A3: [f64; 2] = [3.0 / 40.0, 9.0 / 40.0];
const A4: [f64; 3] = [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0];
const A5: [f64; 4] = [19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0];
const A6: [f64; 5] =
    [9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0];
const B: [f64; 6] =
    [35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0];
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// Integrates `dy/dt = f(t, y)` from `(t0, y0)` and returns the state at each of `times`
/// (sorted, none before `t0`), concatenated: `times.len() × y0.len()` values. `f(t, y, dy)` writes
/// the derivative into `dy`. `None` when the step budget runs out, the step size underflows, or
/// the state stops being finite.
///
/// # Panics
/// When `times` is not sorted or starts before `t0`.
pub(crate) fn solve_at<F>(
    mut f: F, t0: f64, y0: &[f64], times: &[f64], tol: &Tolerances,
) -> Option<Vec<f64>>
where
    F: FnMut(f64, &[f64], &mut [f64]),
{
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "output times must be sorted");
    assert!(times.first().is_none_or(|&t| t >= t0), "output times must not precede t0");
    let n = y0.len();
    let mut out = Vec::with_capacity(times.len() * n);
    let mut y = y0.to_vec();
    let mut y_new = vec![0.0; n];
    let mut stage = vec![0.0; n];
    let mut k: [Vec<f64>; 7] = std::array::from_fn(|_| vec![0.0; n]);
    f(t0, &y, &mut k[0]);
    let mut h = initial_step(&mut f, t0, &y, &k[0], &mut stage, &mut y_new, tol);
    let (mut t, mut steps, mut rejected) = (t0, 0, false);
    for &target in times {
        while t < target {
            steps += 1;
            if steps > tol.max_steps {
                return None;
            }
            // Stretch a step that would stop just short of the target onto it, rather than leave
            // a sliver for the next one.
            let reaches = t + 1.01 * h >= target;
            let h_try = if reaches { target - t } else { h };
            if h_try <= 4.0 * f64::EPSILON * t.abs() {
                return None;
            }
            let err = step(&mut f, t, h_try, &y, &mut k, &mut stage, &mut y_new, tol);
            if err <= 1.0 {
                let growth = (SAFETY * err.powf(-0.2)).clamp(MIN_GROWTH, MAX_GROWTH);
                let next = h_try * if rejected { growth.min(1.0) } else { growth };
                // A step cut short by the target says nothing against the step proposed before.
                h = if reaches { next.max(h) } else { next };
                t = if reaches { target } else { t + h_try };
                std::mem::swap(&mut y, &mut y_new);
                k.swap(0, 6);
                rejected = false;
            } else {
                // NaN errors (a non-finite stage) shrink the step as much as allowed.
                let shrink = if err.is_finite() { SAFETY * err.powf(-0.2) } else { MIN_GROWTH };
                h = h_try * shrink.clamp(MIN_GROWTH, 1.0);
                rejected = true;
            }
        }
        out.extend_from_slice(&y);
    }
    Some(out)
}

/// One Dormand–Prince step of size `h` from `(t, y)` with `k[0] = f(t, y)`: writes the
/// fifth-order solution to `y_new` and its derivative to `k[6]`, and returns the scaled RMS error
/// estimate (accept when ≤ 1; NaN when a stage is not finite).
#[allow(clippy::too_many_arguments)]
fn step<F>(
    f: &mut F, t: f64, h: f64, y: &[f64], k: &mut [Vec<f64>; 7], stage: &mut [f64],
    y_new: &mut [f64], tol: &Tolerances,
) -> f64
where
    F: FnMut(f64, &[f64], &mut [f64]),
{
    let rows: [&[f64]; 5] = [&A2, &A3, &A4, &A5, &A6];
    for (s, (row, c)) in rows.iter().zip(C).enumerate() {
        for (i, value) in stage.iter_mut().enumerate() {
            *value = y[i] + h * row.iter().zip(k.iter()).map(|(a, ks)| a * ks[i]).sum::<f64>();
        }
        f(t + c * h, stage, &mut k[s + 1]);
    }
    for (i, value) in y_new.iter_mut().enumerate() {
        *value = y[i] + h * B.iter().zip(k.iter()).map(|(b, ks)| b * ks[i]).sum::<f64>();
    }
    f(t + h, y_new, &mut k[6]);
    let mut sum = 0.0;
    for i in 0..y.len() {
        let e = h * E.iter().zip(k.iter()).map(|(e, ks)| e * ks[i]).sum::<f64>();
        let scale = tol.atol + tol.rtol * y[i].abs().max(y_new[i].abs());
        sum += (e / scale).powi(2);
    }
    // A non-finite new state must not be accepted even if its error estimate happens to be.
    if y_new.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    (sum / y.len() as f64).sqrt()
}

/// Hairer, Nørsett and Wanner's starting step: small enough that an Euler step changes the state
/// by about 1 % of its scale and the derivative by about the tolerance to the 1/5.
fn initial_step<F>(
    f: &mut F, t0: f64, y0: &[f64], f0: &[f64], y1: &mut [f64], f1: &mut [f64], tol: &Tolerances,
) -> f64
where
    F: FnMut(f64, &[f64], &mut [f64]),
{
    let scale: Vec<f64> = y0.iter().map(|y| tol.atol + tol.rtol * y.abs()).collect();
    let norm = |v: &mut dyn Iterator<Item = f64>| {
        let squares: f64 = v.zip(&scale).map(|(x, s)| (x / s).powi(2)).sum();
        (squares / y0.len() as f64).sqrt()
    };
    let d0 = norm(&mut y0.iter().copied());
    let d1 = norm(&mut f0.iter().copied());
    let h0 = if d0 < 1e-5 || d1 < 1e-5 { 1e-6 } else { 0.01 * d0 / d1 };
    for ((y1, y), d) in y1.iter_mut().zip(y0).zip(f0) {
        *y1 = y + h0 * d;
    }
    f(t0 + h0, y1, f1);
    let d2 = norm(&mut f1.iter().zip(f0).map(|(a, b)| a - b)) / h0;
    let h1 =
        if d1.max(d2) <= 1e-15 { (h0 * 1e-3).max(1e-6) } else { (0.01 / d1.max(d2)).powf(0.2) };
    (100.0 * h0).min(h1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIGHT: Tolerances = Tolerances { rtol: 1e-10, atol: 1e-12, max_steps: 100_000 };

    #[test]
    fn exponential_decay_matches_the_closed_form() {
        let times = [0.0, 0.5, 1.0, 3.0, 3.0, 10.0];
        let y = solve_at(|_, y, dy| dy[0] = -0.7 * y[0], 0.0, &[2.0], &times, &TIGHT).unwrap();
        assert_eq!(y[0], 2.0, "a time equal to t0 returns the initial state");
        for (&t, &got) in times.iter().zip(&y) {
            let want = 2.0 * (-0.7 * t).exp();
            assert!((got - want).abs() <= 1e-9 * want, "t = {t}: {got} vs {want}");
        }
    }

    #[test]
    fn harmonic_oscillator_keeps_phase_over_many_periods() {
        // x'' = −ω² x from (1, 0): x = cos ωt, v = −ω sin ωt; 16 periods at ω = 2.
        let omega = 2.0;
        let f = |_: f64, y: &[f64], dy: &mut [f64]| {
            dy[0] = y[1];
            dy[1] = -omega * omega * y[0];
        };
        let times: Vec<f64> = (1..=8).map(|i| 2.0 * std::f64::consts::PI * i as f64).collect();
        let y = solve_at(f, 0.0, &[1.0, 0.0], &times, &TIGHT).unwrap();
        for (i, &t) in times.iter().enumerate() {
            let (x, v) = (y[2 * i], y[2 * i + 1]);
            // The global error grows about linearly with the number of steps, from local errors
            // of order rtol.
            assert!((x - (omega * t).cos()).abs() < 1e-8, "x({t}) = {x}");
            assert!((v + omega * (omega * t).sin()).abs() < 2e-8, "v({t}) = {v}");
        }
    }

    #[test]
    fn a_blow_up_fails_instead_of_hanging() {
        // y' = y² from 1 leaves every bound at t = 1.
        let tol = Tolerances { rtol: 1e-8, atol: 1e-8, max_steps: 10_000 };
        assert!(solve_at(|_, y, dy| dy[0] = y[0] * y[0], 0.0, &[1.0], &[2.0], &tol).is_none());
    }

    #[test]
    fn a_stiff_system_exhausts_the_step_budget() {
        // λ = −1e6 forces steps of about 3e−6 for stability: far more than 1 000 to reach t = 1.
        let tol = Tolerances { rtol: 1e-6, atol: 1e-9, max_steps: 1_000 };
        let f = |_: f64, y: &[f64], dy: &mut [f64]| dy[0] = -1e6 * (y[0] - 1.0);
        assert!(solve_at(f, 0.0, &[0.0], &[1.0], &tol).is_none());
    }
}
