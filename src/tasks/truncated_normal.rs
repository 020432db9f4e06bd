//! Normal locals truncated to a box, drawn one dimension at a time: the site prior of
//! `hier-gaussian-mixture` and `hier-two-moons`.

use super::special::truncated_standard_normal;
use super::uniform01;
use rand::Rng;

/// One draw per dimension from N(mean_j, sd_j) truncated to (lo, hi).
///
/// The inverse-CDF sampler stays exact when the box lies far in a tail (a mean near one bound
/// with a large sd, or a small sd), where rejection would loop. Draws are kept strictly inside
/// the open interval so that the logit-affine bijection of the locals stays finite.
pub(super) fn truncated_normal_box(
    mean: &[f64], sd: &[f64], lo: f64, hi: f64, rng: &mut dyn Rng,
) -> Vec<f64> {
    let inside = (lo.next_up(), hi.next_down());
    mean.iter()
        .zip(sd)
        .map(|(&m, &s)| {
            let z = truncated_standard_normal((lo - m) / s, (hi - m) / s, uniform01(rng));
            (m + s * z).clamp(inside.0, inside.1)
        })
        .collect()
}
