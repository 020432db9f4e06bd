//! random: counter-based Philox4x32-10, see `Backend::normal_fill` for the exact stream.

/// One Philox4x32-10 block: 4 output words for `counter` under `key`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    todo!()
}
pub fn normal_fill(dst: &mut [f32], seed: u64, offset: u64) {
    todo!()
}
pub fn uniform_fill(dst: &mut [f32], seed: u64, offset: u64, lo: f32, hi: f32) {
    todo!()
}
