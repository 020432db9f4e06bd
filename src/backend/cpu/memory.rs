//! memory: copies, fills, row gathers and scatters.
use crate::backend::CopyCols;
use crate::error::Result;

pub fn copy<T: Copy + Send + Sync>(src: &[T], dst: &mut [T]) {
    todo!()
}
pub fn copy_cols(p: &CopyCols, src: &[f32], dst: &mut [f32]) {
    todo!()
}
pub fn fill(dst: &mut [f32], value: f32) {
    todo!()
}
/// Errors (Error::Invalid) on an index past `src`.
pub fn gather_rows(src: &[f32], idx: &[u32], row_len: usize, dst: &mut [f32]) -> Result<()> {
    todo!()
}
/// Errors (Error::Invalid) on an index past `dst`.
pub fn scatter_rows(src: &[f32], idx: &[u32], row_len: usize, dst: &mut [f32]) -> Result<()> {
    todo!()
}
