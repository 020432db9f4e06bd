//! The nn layers as whole graphs, with gradients checked for every parameter.

use tfmpe::nn::{Embedding, EncoderBlock, Linear, TransformerConfig};
use tfmpe::tape::{ParamStore, Tape, Var};
use tfmpe::{Device, Result};

use crate::common::{padding_mask, rng};
use crate::{gradcheck, Input};

/// The smallest distance of a pre-activation of the block's MLP from ReLU's kink.
fn relu_margin(tape: &mut Tape, block: &EncoderBlock, x: &Input, mask: &[f32]) -> f32 {
    tape.reset();
    let (b, n) = (x.shape[0], x.shape[1]);
    let xv = tape.input(&x.data, &x.shape).unwrap();
    let m = tape.input(mask, &[b, n]).unwrap();
    let a = block.attn.forward(tape, xv, Some(m)).unwrap();
    let mut h = block.norm1.forward(tape, a, Some(xv)).unwrap();
    let mut margin = f32::INFINITY;
    for layer in &block.ff {
        let z = layer.forward(tape, h).unwrap();
        let zs = tape.to_vec(z).unwrap();
        margin = zs.iter().fold(margin, |m, z| m.min(z.abs()));
        h = tape.relu(z).unwrap();
    }
    margin
}

#[test]
fn encoder_block_with_padding_mask() {
    let config = TransformerConfig { width: 4, layers: 1, heads: 2, n_ff: 2 };
    let (batch, tokens) = (2, 3);
    // Redraw the weights until every MLP pre-activation is 0.1 away from ReLU's kink, so that
    // no finite difference (each moves a pre-activation by O(ε) = O(0.01)) crosses it.
    let (mut tape, block, x, mask) = (0..1000)
        .map(|seed| {
            let mut r = rng(1000 + seed);
            let mut store = ParamStore::new(&Device::cpu());
            let block = EncoderBlock::new(&mut store, "block", &config, &mut r).unwrap();
            let x = Input::normal(&mut r, &[batch, tokens, config.width]);
            let mask = padding_mask(&mut r, batch, tokens);
            (Tape::new(store), block, x, mask)
        })
        .find_map(|(mut tape, block, x, mask)| {
            (relu_margin(&mut tape, &block, &x, &mask) > 0.1).then_some((tape, block, x, mask))
        })
        .expect("a seed with all pre-activations away from the kink");
    assert!(mask.contains(&0.0), "the case must include padding");
    gradcheck("encoder block", &mut tape, &[x], |t, v| {
        let m = t.input(&mask, &[batch, tokens])?;
        block.forward(t, v[0], Some(m))
    });
}

#[test]
fn parameters_used_twice_accumulate() {
    let mut r = rng(2000);
    let mut store = ParamStore::new(&Device::cpu());
    let emb = Embedding::new(&mut store, "emb", 5, 3, &mut r).unwrap();
    let lin = Linear::new(&mut store, "lin", 3, 3, true, &mut r).unwrap();
    let mut tape = Tape::new(store);
    let build = |t: &mut Tape, _: &[Var]| -> Result<Var> {
        let a_ids = t.input_u32(&[0, 4, 2, 4], &[4])?;
        let b_ids = t.input_u32(&[1, 4, 4, 3], &[4])?;
        let a = emb.forward(t, a_ids)?;
        let b = emb.forward(t, b_ids)?;
        let h = lin.forward(t, a)?;
        let h = lin.forward(t, h)?;
        t.add(h, b)
    };
    gradcheck("shared embedding and linear", &mut tape, &[], build);
}
