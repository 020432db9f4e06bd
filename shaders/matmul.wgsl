// matmul.wgsl: batched GEMM with transposes, alpha/beta and a bias(+ReLU) epilogue; column sums
// for the bias gradient.
//
// GEMM: each workgroup of 16×16 invocations owns a 64×64 tile of C and each invocation a 4×4
// block of it, kept in registers. A and B arrive in K steps of 16: 64×16 slices of op(A) and
// 16×64 of op(B) staged in workgroup memory, stored K-major as vec4s so the inner loop reads
// one vec4 of each per step and does 16 FMAs. Transposes only change which way a tile load
// walks memory (always the contiguous way across neighbouring invocations). The next K step is
// read from memory into registers while the current one is multiplied.
//
// The linear workgroup number runs over tiles of N, then tiles of M, then `batch · pieces`
// slices. `pieces` > 1 splits K (when C has too few tiles to fill a device): `gemm_split`
// writes each piece's product to scratch and `gemm_reduce` adds the pieces in order, so the
// result does not depend on scheduling.

const TILE: u32 = 64u;
const BK: u32 = 16u;
// vec4s per K row of a staged slice: 16 for the tile plus one of padding, which spreads the
// stores of one K step over the banks of workgroup memory.
const ROW4: u32 = 17u;

const TRANS_A: u32 = 1u;
const TRANS_B: u32 = 2u;
const READ_C: u32 = 4u; // beta != 0; with beta == 0 C is never read (it may hold NaN)
const BIAS: u32 = 8u;
const RELU: u32 = 16u;

struct GemmP {
    m: u32, n: u32, k: u32, batch: u32,
    tiles_m: u32, tiles_n: u32, groups: u32, flags: u32,
    stride_a: u32, stride_b: u32, stride_c: u32,
    alpha: f32, beta: f32,
    piece: u32, pieces: u32, // K per piece and pieces per batch (1: no split)
}
@group(0) @binding(0) var<uniform> p: GemmP;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
// gemm_split: partial products [batch · pieces, m, n].
@group(0) @binding(3) var<storage, read_write> part_out: array<f32>;
// gemm_reduce reads them back and writes C.
@group(0) @binding(1) var<storage, read> part_in: array<f32>;
@group(0) @binding(2) var<storage, read> red_bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> red_c: array<f32>;

var<workgroup> a_tile: array<vec4<f32>, 272>; // [BK][ROW4]: a_tile[l][i4] = op(A)[4·i4.., l]
var<workgroup> b_tile: array<vec4<f32>, 272>; // [BK][ROW4]: b_tile[l][j4] = op(B)[l, 4·j4..]

// Where one tile lives: its batch, first row and column of C, and its range of K.
struct Tile { batch: u32, slice: u32, row0: u32, col0: u32, k0: u32, k1: u32 }

fn tile_of(g: u32) -> Tile {
    let per_slice = p.tiles_m * p.tiles_n;
    let slice = g / per_slice;
    let r = g % per_slice;
    let piece = slice % p.pieces;
    let k0 = piece * p.piece;
    return Tile(slice / p.pieces, slice, (r / p.tiles_n) * TILE, (r % p.tiles_n) * TILE,
                k0, min(p.k, k0 + p.piece));
}

// Invocation `t` loads four elements of a 64-long side of a slice, at K index `l` and
// positions 4·q..4·q+3. When that side is contiguous in memory, neighbouring invocations take
// neighbouring q; otherwise neighbouring l. The four loads are scalar: a vec4 binding would
// need 16-byte aligned starts, which batch strides and odd leading dimensions do not give.
fn slot(t: u32, contiguous: bool) -> vec2<u32> { // (q, l)
    if (contiguous) {
        return vec2(t % 16u, t / 16u);
    }
    return vec2(t / 16u, t % 16u);
}

// Rows 4q.. of op(A) at K index k0 + l, zero outside the matrix or the piece.
fn load_a(t: Tile, s: vec2<u32>, k0: u32) -> vec4<f32> {
    let ta = (p.flags & TRANS_A) != 0u;
    let l = k0 + s.y;
    var v = vec4(0.0);
    if (l < t.k1) {
        let base = t.batch * p.stride_a;
        for (var e = 0u; e < 4u; e++) {
            let i = t.row0 + 4u * s.x + e;
            if (i < p.m) {
                v[e] = a[base + select(i * p.k + l, l * p.m + i, ta)];
            }
        }
    }
    return v;
}

// Columns 4q.. of op(B) at K index k0 + l, zero outside the matrix or the piece.
fn load_b(t: Tile, s: vec2<u32>, k0: u32) -> vec4<f32> {
    let tb = (p.flags & TRANS_B) != 0u;
    let l = k0 + s.y;
    var v = vec4(0.0);
    if (l < t.k1) {
        let base = t.batch * p.stride_b;
        for (var e = 0u; e < 4u; e++) {
            let j = t.col0 + 4u * s.x + e;
            if (j < p.n) {
                v[e] = b[base + select(l * p.n + j, j * p.k + l, tb)];
            }
        }
    }
    return v;
}

// The 4×4 block of op(A)·op(B) over the tile's K range for invocation (tx, ty): rows
// row0 + 4·ty.., columns col0 + 4·tx.., one vec4 of columns per row.
fn product(t: Tile, lid: u32) -> array<vec4<f32>, 4> {
    let tx = lid % 16u;
    let ty = lid / 16u;
    let sa = slot(lid, (p.flags & TRANS_A) != 0u);
    let sb = slot(lid, (p.flags & TRANS_B) == 0u);
    var acc0 = vec4(0.0);
    var acc1 = vec4(0.0);
    var acc2 = vec4(0.0);
    var acc3 = vec4(0.0);
    var next_a = load_a(t, sa, t.k0);
    var next_b = load_b(t, sb, t.k0);
    for (var k0 = t.k0; k0 < t.k1; k0 += BK) {
        workgroupBarrier(); // the previous step is done with the tiles
        a_tile[sa.y * ROW4 + sa.x] = next_a;
        b_tile[sb.y * ROW4 + sb.x] = next_b;
        workgroupBarrier();
        next_a = load_a(t, sa, k0 + BK);
        next_b = load_b(t, sb, k0 + BK);
        for (var l = 0u; l < BK; l++) {
            let av = a_tile[l * ROW4 + ty];
            let bv = b_tile[l * ROW4 + tx];
            acc0 = fma(vec4(av.x), bv, acc0);
            acc1 = fma(vec4(av.y), bv, acc1);
            acc2 = fma(vec4(av.z), bv, acc2);
            acc3 = fma(vec4(av.w), bv, acc3);
        }
    }
    return array(acc0, acc1, acc2, acc3);
}

// alpha·acc + beta·old, plus the bias, then ReLU (a select, so NaN stays NaN).
fn finish(acc: f32, old: f32, bias_j: f32) -> f32 {
    var v = p.alpha * acc;
    if ((p.flags & READ_C) != 0u) {
        v += p.beta * old;
    }
    v += bias_j;
    if ((p.flags & RELU) != 0u) {
        v = select(v, 0.0, v < 0.0);
    }
    return v;
}

@compute @workgroup_size(256)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    if (g >= p.groups) {
        return;
    }
    let t = tile_of(g);
    var acc = product(t, lid);
    let c0 = t.batch * p.stride_c;
    for (var r = 0u; r < 4u; r++) {
        let i = t.row0 + 4u * (lid / 16u) + r;
        for (var e = 0u; e < 4u; e++) {
            let j = t.col0 + 4u * (lid % 16u) + e;
            if (i < p.m && j < p.n) {
                let o = c0 + i * p.n + j;
                var old = 0.0;
                if ((p.flags & READ_C) != 0u) {
                    old = c[o];
                }
                var bj = 0.0;
                if ((p.flags & BIAS) != 0u) {
                    bj = bias[j];
                }
                c[o] = finish(acc[r][e], old, bj);
            }
        }
    }
}

@compute @workgroup_size(256)
fn gemm_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    if (g >= p.groups) {
        return;
    }
    let t = tile_of(g);
    var acc = product(t, lid);
    let s0 = t.slice * p.m * p.n;
    for (var r = 0u; r < 4u; r++) {
        let i = t.row0 + 4u * (lid / 16u) + r;
        for (var e = 0u; e < 4u; e++) {
            let j = t.col0 + 4u * (lid % 16u) + e;
            if (i < p.m && j < p.n) {
                part_out[s0 + i * p.n + j] = acc[r][e];
            }
        }
    }
}

// One invocation per element of C: the pieces summed in order, then the epilogue.
@compute @workgroup_size(256)
fn gemm_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let x = thread_index(wid, nwg, lid);
    let mn = p.m * p.n;
    if (x >= p.batch * mn) {
        return;
    }
    let bi = x / mn;
    let ij = x % mn;
    var acc = 0.0;
    for (var s = 0u; s < p.pieces; s++) {
        acc += part_in[(bi * p.pieces + s) * mn + ij];
    }
    let o = bi * p.stride_c + ij;
    var old = 0.0;
    if ((p.flags & READ_C) != 0u) {
        old = red_c[o];
    }
    var bj = 0.0;
    if ((p.flags & BIAS) != 0u) {
        bj = red_bias[ij % p.n];
    }
    red_c[o] = finish(acc, old, bj);
}

// Column sums of src [rows, cols]: workgroup (column block, chunk) sums CHUNK rows of 64
// columns into dst[chunk, ·], with 4 invocations per column taking every 4th row and a tree
// over the 4 in workgroup memory. Applied until one chunk is left (fixed order throughout);
// `accumulate` adds into dst instead of overwriting it.
const CHUNK: u32 = 256u;

struct ColSums { rows: u32, cols: u32, col_blocks: u32, groups: u32, accumulate: u32 }
@group(0) @binding(0) var<uniform> cs: ColSums;
@group(0) @binding(1) var<storage, read> cs_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> cs_dst: array<f32>;

var<workgroup> lanes: array<f32, 256>;

@compute @workgroup_size(256)
fn col_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    if (g >= cs.groups) {
        return;
    }
    let col = (g % cs.col_blocks) * 64u + lid % 64u;
    let chunk = g / cs.col_blocks;
    let end = min(cs.rows, (chunk + 1u) * CHUNK);
    var s = 0.0;
    if (col < cs.cols) {
        for (var r = chunk * CHUNK + lid / 64u; r < end; r += 4u) {
            s += cs_src[r * cs.cols + col];
        }
    }
    lanes[lid] = s;
    workgroupBarrier();
    if (lid < 128u) {
        lanes[lid] += lanes[lid + 128u];
    }
    workgroupBarrier();
    if (lid < 64u && col < cs.cols) {
        let total = lanes[lid] + lanes[lid + 64u];
        let o = chunk * cs.cols + col;
        if (cs.accumulate != 0u) {
            cs_dst[o] += total;
        } else {
            cs_dst[o] = total;
        }
    }
}
