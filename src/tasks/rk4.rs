//! Classic fixed-step RK4, the reference the adaptive solver's tests compare against: at a step
//! far below the system's time scales it stands for the exact solution.

/// Integrates `dy/dt = f(t, y)` from `(0, y0)` at step `dt` and returns the state at each of
/// `times` (sorted, each a whole number of steps), concatenated.
pub(crate) fn rk4(
    f: impl Fn(f64, &[f64], &mut [f64]), y0: &[f64], times: &[f64], dt: f64,
) -> Vec<f64> {
    let n = y0.len();
    let mut y = y0.to_vec();
    let (mut k1, mut k2, mut k3, mut k4) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let shifted = |y: &[f64], k: &[f64], h: f64| -> Vec<f64> {
        y.iter().zip(k).map(|(y, k)| y + h * k).collect()
    };
    let (mut out, mut step) = (Vec::with_capacity(times.len() * n), 0usize);
    for &target in times {
        let steps = (target / dt).round() as usize;
        while step < steps {
            let t = step as f64 * dt;
            f(t, &y, &mut k1);
            f(t + dt / 2.0, &shifted(&y, &k1, dt / 2.0), &mut k2);
            f(t + dt / 2.0, &shifted(&y, &k2, dt / 2.0), &mut k3);
            f(t + dt, &shifted(&y, &k3, dt), &mut k4);
            for i in 0..n {
                y[i] += dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
            }
            step += 1;
        }
        out.extend_from_slice(&y);
    }
    out
}
