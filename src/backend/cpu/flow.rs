//! flow: flow-matching interpolation and the masked MSE loss.
pub fn fm_prepare(
    x0: &[f32],
    x1: &[f32],
    t: &[f32],
    per_sample: usize,
    sigma_min: f32,
    xt: &mut [f32],
    u: &mut [f32],
) {
    todo!()
}
pub fn fm_loss(
    pred: &[f32],
    target: &[f32],
    mask: Option<&[f32]>,
    loss: &mut [f32],
    dpred: &mut [f32],
) {
    todo!()
}
