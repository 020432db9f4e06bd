//! attention: multi-head self-attention over packed QKV with a key-padding mask.
use crate::backend::Attention;

pub fn attention_fwd(
    p: &Attention,
    qkv: &[f32],
    mask: Option<&[f32]>,
    out: &mut [f32],
    lse: &mut [f32],
) {
    todo!()
}
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    p: &Attention,
    qkv: &[f32],
    mask: Option<&[f32]>,
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    dqkv: &mut [f32],
) {
    todo!()
}
