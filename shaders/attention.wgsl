// attention.wgsl: flash-style multi-head self-attention over packed QKV, forward and backward.
//
// Layouts (D = heads · head_dim, hd = head_dim):
//   qkv  [B, N, 3D]  q, k, v of token t, head h, dim c at (b·N + t)·3D + {0, D, 2D} + h·hd + c
//   mask [B, N]      key-padding mask, 1 = keep (any nonzero keeps, as on the CPU)
//   out  [B, N, D]   softmax(scale · q·kᵀ, masked) · v
//   lse  [B, H, N]   natural log-sum-exp of the scaled, masked scores of each query row;
//                    -inf for a row whose keys are all masked (its out is 0)
//   dqkv [B, N, 3D]  the full gradient; masked keys get dk = dv = 0, dead rows dq = 0
//
// No N×N matrix is ever written. Every kernel runs workgroups of ROWS invocations, one row each
// (a query row in `attention_fwd` and `attention_dq`, a key row in `attention_dkv`), all of the
// same (batch, head), and walks the other side in tiles staged in workgroup memory:
//   attention_fwd  online softmax over key tiles: running max m, sum l and P·V in registers;
//   attention_dq   recomputes p = 2^(s − lse·log2 e) per key from the saved lse and sums
//                  dq = scale · Σ_j p (dout·v_j − Δ) k_j over key tiles;
//   attention_dkv  per key, over query tiles: dv = Σ_i p dout_i, dk = scale · Σ_i p (dp − Δ_i) q_i.
// Δ_i = dout_i · out_i is recomputed where it is needed (by the query's own thread in the dQ pass,
// by the staging thread of its row in the dK/dV pass) with the same function, so both passes see
// the same bits and no scratch buffer or extra pass is needed. Each sum runs in a fixed order
// with no atomics, so results are deterministic.
//
// Scores are kept in base 2: q (or k) is pre-multiplied by `qscale` = scale · log2 e, so every
// softmax exponential is an `exp2`; lse is converted back to the natural log on output
// (m · ln 2 + ln l), as the CPU backend does.
//
// Infinities never take part in arithmetic (WGSL lets implementations assume they do not occur):
// the running max starts at a finite -1e30, masked keys and dead rows are skipped by flags, and
// lse is bound as u32 so that -inf is written and recognised by its bit pattern.
//
// Head dims up to 4·MAX_HD4 = 64 are supported (rows are held as vec4 chunks, zero-padded past
// hd); the Rust side rejects wider heads. Workgroup memory: two tiles of TILE_VEC4 vec4s (rows of
// hd4 = ceil(hd/4) vec4s each, so a tile holds min(ROWS, TILE_VEC4 / hd4) rows: 64 rows up to
// hd 28, 60 at hd 32, 30 at hd 64) and three per-row scalars: 15 360 + 768 = 16 128 bytes, within
// WebGPU's default 16 KiB.

const ROWS: u32 = 64u;
const MAX_HD4: u32 = 16u;
const TILE_VEC4: u32 = 480u;
const LN2: f32 = 0.6931471805599453;
const LOG2E: f32 = 1.4426950408889634;
const NEG_INF_BITS: u32 = 0xff800000u;
// The running max before any key: finite, far below any real score.
const NO_MAX: f32 = -1e30;

struct Att {
    batch: u32, tokens: u32, heads: u32, head_dim: u32,
    has_mask: u32,
    scale: f32,
    // scale · log2 e: multiplies q · k into a base-2 score.
    qscale: f32,
}
@group(0) @binding(0) var<uniform> ap: Att;
@group(0) @binding(1) var<storage, read> att_qkv: array<f32>;
// A one-element placeholder when has_mask = 0 (then never read).
@group(0) @binding(2) var<storage, read> att_mask: array<f32>;

// Forward outputs.
@group(0) @binding(3) var<storage, read_write> fwd_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> fwd_lse: array<u32>;

// Backward inputs and output.
@group(0) @binding(3) var<storage, read> bwd_out: array<f32>;
@group(0) @binding(4) var<storage, read> bwd_lse: array<u32>;
@group(0) @binding(5) var<storage, read> bwd_dout: array<f32>;
@group(0) @binding(6) var<storage, read_write> bwd_dqkv: array<f32>;

// Staged tiles: row r, chunk c at r · hd4 + c.
var<workgroup> ta: array<vec4<f32>, TILE_VEC4>;
var<workgroup> tb: array<vec4<f32>, TILE_VEC4>;
// Per staged row: keep flag (key tiles); lse · log2 e, Δ and live flag (query tiles).
var<workgroup> tc: array<f32, ROWS>;
var<workgroup> td: array<f32, ROWS>;
var<workgroup> te: array<f32, ROWS>;

// Where one workgroup works: batch b, head h, rows first .. first + ROWS.
struct Place {
    b: u32, h: u32, first: u32, valid: bool,
    n: u32, hd: u32, hd4: u32, d: u32,
    // Rows per staged tile.
    tile: u32,
}

fn place(wid: vec3<u32>, nwg: vec3<u32>) -> Place {
    var p: Place;
    p.n = ap.tokens;
    p.hd = ap.head_dim;
    p.hd4 = (p.hd + 3u) / 4u;
    p.d = ap.heads * p.hd;
    p.tile = min(ROWS, TILE_VEC4 / p.hd4);
    // Never 0: nothing is dispatched without tokens.
    let blocks = (p.n + ROWS - 1u) / ROWS;
    let g = group_index(wid, nwg);
    let bh = g / blocks;
    // Past the last (batch, head) only when a 2-D dispatch rounds the count up.
    p.valid = bh < ap.batch * ap.heads;
    p.b = bh / ap.heads;
    p.h = bh % ap.heads;
    p.first = (g % blocks) * ROWS;
    return p;
}

// Index in qkv of (token t, part 0/1/2, this head, dim 0).
fn qkv_at(p: Place, t: u32, part: u32) -> u32 {
    return (p.b * p.n + t) * 3u * p.d + part * p.d + p.h * p.hd;
}

// Index in out / dout of (token t, this head, dim 0).
fn row_at(p: Place, t: u32) -> u32 {
    return (p.b * p.n + t) * p.d + p.h * p.hd;
}

// Chunk c of a head row of qkv starting at `at`, zero past hd.
fn qkv4(at: u32, c: u32, hd: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let e = 4u * c + k;
        if (e < hd) {
            v[k] = att_qkv[at + e];
        }
    }
    return v;
}

fn dout4(at: u32, c: u32, hd: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let e = 4u * c + k;
        if (e < hd) {
            v[k] = bwd_dout[at + e];
        }
    }
    return v;
}

fn out4(at: u32, c: u32, hd: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let e = 4u * c + k;
        if (e < hd) {
            v[k] = bwd_out[at + e];
        }
    }
    return v;
}

fn kept(p: Place, t: u32) -> bool {
    return ap.has_mask == 0u || att_mask[p.b * p.n + t] != 0.0;
}

// Δ of query row t: Σ_c dout · out, in chunk order (both backward passes call this).
fn delta(p: Place, t: u32) -> f32 {
    let at = row_at(p, t);
    var s = 0.0;
    for (var c = 0u; c < p.hd4; c++) {
        s += dot(dout4(at, c, p.hd), out4(at, c, p.hd));
    }
    return s;
}

// Stages `count` keys from t0: K in ta, V in tb, keep flags in tc.
fn stage_keys(p: Place, t0: u32, count: u32, lid: u32) {
    for (var i = lid; i < count * p.hd4; i += ROWS) {
        let r = i / p.hd4;
        let c = i % p.hd4;
        let at = qkv_at(p, t0 + r, 1u);
        ta[i] = qkv4(at, c, p.hd);
        tb[i] = qkv4(at + p.d, c, p.hd);
    }
    for (var r = lid; r < count; r += ROWS) {
        tc[r] = select(0.0, 1.0, kept(p, t0 + r));
    }
}

@compute @workgroup_size(64)
fn attention_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let p = place(wid, nwg);
    if (!p.valid) {
        return;
    }
    let i = p.first + lid;
    let in_range = i < p.n;
    var q: array<vec4<f32>, MAX_HD4>;
    var o: array<vec4<f32>, MAX_HD4>;
    if (in_range) {
        let at = qkv_at(p, i, 0u);
        for (var c = 0u; c < p.hd4; c++) {
            q[c] = ap.qscale * qkv4(at, c, p.hd);
            o[c] = vec4<f32>(0.0);
        }
    }
    // Online softmax in base 2: m the running max, l = Σ 2^(s − m), o = Σ 2^(s − m) v.
    var m = NO_MAX;
    var l = 0.0;
    for (var t0 = 0u; t0 < p.n; t0 += p.tile) {
        let count = min(p.tile, p.n - t0);
        stage_keys(p, t0, count, lid);
        workgroupBarrier();
        if (in_range) {
            for (var j = 0u; j < count; j++) {
                if (tc[j] == 0.0) {
                    continue;
                }
                let row = j * p.hd4;
                var s = 0.0;
                for (var c = 0u; c < p.hd4; c++) {
                    s += dot(q[c], ta[row + c]);
                }
                // One exponential per key: the smaller of (s, m) relative to the larger. A new
                // maximum rescales what was summed (by 2^(m − s)) and enters with weight 1.
                // Before the first key l and o are 0, so the rescale factor is irrelevant.
                let up = s > m;
                let e = exp2(-abs(s - m));
                let a = select(1.0, e, up);
                let w = select(e, 1.0, up);
                l = l * a + w;
                for (var c = 0u; c < p.hd4; c++) {
                    o[c] = o[c] * a + w * tb[row + c];
                }
                m = max(m, s);
            }
        }
        workgroupBarrier();
    }
    if (in_range) {
        let at = row_at(p, i);
        // l ≥ 1 once a key was kept; l = 0 means all keys are masked: out 0, lse -inf.
        let inv = select(0.0, 1.0 / l, l > 0.0);
        for (var c = 0u; c < p.hd4; c++) {
            let v = o[c] * inv;
            for (var k = 0u; k < 4u; k++) {
                let e = 4u * c + k;
                if (e < p.hd) {
                    fwd_out[at + e] = v[k];
                }
            }
        }
        var bits = NEG_INF_BITS;
        if (l > 0.0) {
            bits = bitcast<u32>(m * LN2 + log(l));
        }
        fwd_lse[(p.b * ap.heads + p.h) * p.n + i] = bits;
    }
}

@compute @workgroup_size(64)
fn attention_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let p = place(wid, nwg);
    if (!p.valid) {
        return;
    }
    let i = p.first + lid;
    let in_range = i < p.n;
    var q: array<vec4<f32>, MAX_HD4>;
    var g: array<vec4<f32>, MAX_HD4>;
    var dq: array<vec4<f32>, MAX_HD4>;
    // A live row has at least one kept key (finite lse); a dead one contributes nothing.
    var live = false;
    var lse2 = 0.0;
    var di = 0.0;
    if (in_range) {
        let bits = bwd_lse[(p.b * ap.heads + p.h) * p.n + i];
        live = bits != NEG_INF_BITS;
        if (live) {
            lse2 = bitcast<f32>(bits) * LOG2E;
            di = delta(p, i);
        }
        let at = qkv_at(p, i, 0u);
        let ga = row_at(p, i);
        for (var c = 0u; c < p.hd4; c++) {
            q[c] = ap.qscale * qkv4(at, c, p.hd);
            g[c] = dout4(ga, c, p.hd);
            dq[c] = vec4<f32>(0.0);
        }
    }
    for (var t0 = 0u; t0 < p.n; t0 += p.tile) {
        let count = min(p.tile, p.n - t0);
        stage_keys(p, t0, count, lid);
        workgroupBarrier();
        if (live) {
            for (var j = 0u; j < count; j++) {
                if (tc[j] == 0.0) {
                    continue;
                }
                let row = j * p.hd4;
                var s = 0.0;
                var dp = 0.0;
                for (var c = 0u; c < p.hd4; c++) {
                    s += dot(q[c], ta[row + c]);
                    dp += dot(g[c], tb[row + c]);
                }
                let ds = exp2(s - lse2) * (dp - di);
                for (var c = 0u; c < p.hd4; c++) {
                    dq[c] += ds * ta[row + c];
                }
            }
        }
        workgroupBarrier();
    }
    if (in_range) {
        let at = qkv_at(p, i, 0u);
        for (var c = 0u; c < p.hd4; c++) {
            let v = ap.scale * dq[c];
            for (var k = 0u; k < 4u; k++) {
                let e = 4u * c + k;
                if (e < p.hd) {
                    bwd_dqkv[at + e] = v[k];
                }
            }
        }
    }
}

@compute @workgroup_size(64)
fn attention_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let p = place(wid, nwg);
    if (!p.valid) {
        return;
    }
    let j = p.first + lid;
    let in_range = j < p.n;
    // A masked key gets no gradient.
    let live = in_range && kept(p, j);
    var k: array<vec4<f32>, MAX_HD4>;
    var v: array<vec4<f32>, MAX_HD4>;
    var dk: array<vec4<f32>, MAX_HD4>;
    var dv: array<vec4<f32>, MAX_HD4>;
    if (in_range) {
        let at = qkv_at(p, j, 1u);
        for (var c = 0u; c < p.hd4; c++) {
            k[c] = ap.qscale * qkv4(at, c, p.hd);
            v[c] = qkv4(at + p.d, c, p.hd);
            dk[c] = vec4<f32>(0.0);
            dv[c] = vec4<f32>(0.0);
        }
    }
    for (var t0 = 0u; t0 < p.n; t0 += p.tile) {
        let count = min(p.tile, p.n - t0);
        // Query tile: q in ta, dout in tb, lse · log2 e in tc, Δ in td, live flag in te.
        for (var x = lid; x < count * p.hd4; x += ROWS) {
            let r = x / p.hd4;
            let c = x % p.hd4;
            ta[x] = qkv4(qkv_at(p, t0 + r, 0u), c, p.hd);
            tb[x] = dout4(row_at(p, t0 + r), c, p.hd);
        }
        for (var r = lid; r < count; r += ROWS) {
            let bits = bwd_lse[(p.b * ap.heads + p.h) * p.n + t0 + r];
            let row_live = bits != NEG_INF_BITS;
            tc[r] = 0.0;
            td[r] = 0.0;
            te[r] = select(0.0, 1.0, row_live);
            if (row_live) {
                tc[r] = bitcast<f32>(bits) * LOG2E;
                td[r] = delta(p, t0 + r);
            }
        }
        workgroupBarrier();
        if (live) {
            for (var r = 0u; r < count; r++) {
                if (te[r] == 0.0) {
                    continue;
                }
                let row = r * p.hd4;
                var s = 0.0;
                var dp = 0.0;
                for (var c = 0u; c < p.hd4; c++) {
                    s += dot(ta[row + c], k[c]);
                    dp += dot(tb[row + c], v[c]);
                }
                let pr = exp2(s - tc[r]);
                let ds = pr * (dp - td[r]);
                for (var c = 0u; c < p.hd4; c++) {
                    dk[c] += ds * ta[row + c];
                    dv[c] += pr * tb[row + c];
                }
            }
        }
        workgroupBarrier();
    }
    if (in_range) {
        let at = qkv_at(p, j, 1u);
        for (var c = 0u; c < p.hd4; c++) {
            // Zeros for a masked key (its accumulators were never touched).
            let gk = ap.scale * dk[c];
            let gv = dv[c];
            for (var x = 0u; x < 4u; x++) {
                let e = 4u * c + x;
                if (e < p.hd) {
                    bwd_dqkv[at + e] = gk[x];
                    bwd_dqkv[at + p.d + e] = gv[x];
                }
            }
        }
    }
}
