//! Parameter initialisation on the host (construction is not the hot loop).

use rand::{Rng, RngExt};
use rand_distr::StandardNormal;

/// Standard deviation of a standard normal truncated to [-2, 2]; dividing by it restores unit
/// variance after truncation.
const TRUNCATED_STD: f64 = 0.879_625_661_034_239_8;

/// LeCun normal: a normal truncated at two standard deviations, with variance `1 / fan_in`
/// after truncation (as `jax.nn.initializers.lecun_normal`), so activations keep their scale.
pub fn lecun_normal<R: Rng + ?Sized>(rng: &mut R, fan_in: usize, n: usize) -> Vec<f32> {
    let std = 1.0 / (fan_in.max(1) as f64).sqrt() / TRUNCATED_STD;
    (0..n)
        .map(|_| loop {
            let z: f64 = rng.sample(StandardNormal);
            if z.abs() <= 2.0 {
                break (z * std) as f32;
            }
        })
        .collect()
}

/// Plain standard normals (embedding tables, Fourier frequencies).
pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.sample::<f32, _>(StandardNormal)).collect()
}
