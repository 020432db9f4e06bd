// memory.wgsl: fill, column-block copies and row gathers/scatters, one thread per element.
// (Plain copies are buffer-to-buffer copies recorded by the backend, no shader.)

struct Fill { n: u32, value: f32 }
@group(0) @binding(0) var<uniform> fill_p: Fill;
@group(0) @binding(1) var<storage, read_write> fill_out: array<f32>;

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i < fill_p.n) {
        fill_out[i] = fill_p.value;
    }
}

// dst[r, dst_offset + c] (+)= src[r, src_offset + c] for r < rows, c < width.
struct CopyCols {
    rows: u32, width: u32, src_stride: u32, src_offset: u32,
    dst_stride: u32, dst_offset: u32, accumulate: u32,
}
@group(0) @binding(0) var<uniform> cc: CopyCols;
@group(0) @binding(1) var<storage, read> cc_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> cc_dst: array<f32>;

@compute @workgroup_size(256)
fn copy_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i >= cc.rows * cc.width) {
        return;
    }
    let r = i / cc.width;
    let c = i % cc.width;
    let v = cc_src[r * cc.src_stride + cc.src_offset + c];
    let d = r * cc.dst_stride + cc.dst_offset + c;
    if (cc.accumulate != 0u) {
        cc_dst[d] += v;
    } else {
        cc_dst[d] = v;
    }
}

// Row moves through an index: gather dst[i, :] = src[idx[i], :]; scatter dst[idx[i], :] = src[i, :].
// `table_rows` bounds the indexed side: an index past it is skipped (its gathered row reads
// as 0), since a kernel cannot return an error; the CPU backend reports it instead.
struct Rows { n: u32, row_len: u32, table_rows: u32 }
@group(0) @binding(0) var<uniform> rp: Rows;
@group(0) @binding(1) var<storage, read> rows_src: array<f32>;
@group(0) @binding(2) var<storage, read> rows_idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> rows_dst: array<f32>;

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i >= rp.n) {
        return;
    }
    let row = rows_idx[i / rp.row_len];
    var v = 0.0;
    if (row < rp.table_rows) {
        v = rows_src[row * rp.row_len + i % rp.row_len];
    }
    rows_dst[i] = v;
}

@compute @workgroup_size(256)
fn scatter_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i >= rp.n) {
        return;
    }
    let row = rows_idx[i / rp.row_len];
    if (row < rp.table_rows) {
        rows_dst[row * rp.row_len + i % rp.row_len] = rows_src[i];
    }
}
