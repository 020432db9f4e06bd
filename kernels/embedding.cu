// embedding.cu: the embedding family of the kernel contract (src/backend/mod.rs):
// embedding_fwd (a row lookup), embedding_bwd (deterministic scatter-add, no atomics),
// fourier_fwd and fourier_bwd (Fourier features of functional inputs, trainable frequencies).
#include "common.cuh"

// out[q, :] = table[ids[q], :] for n = ids_len · dim elements; an id past `table_rows` gives a
// row of 0 (the CPU backend reports it as an error; a kernel cannot).
extern "C" __global__ void embedding_fwd(const float* __restrict__ table,
                                         const u32* __restrict__ ids, float* __restrict__ out,
                                         u32 n, u32 dim, u32 table_rows) {
    GRID_STRIDE(i, n) {
        const u32 q = i / dim;
        const u32 row = ids[q];
        out[i] = row < table_rows ? table[row * dim + (i - q * dim)] : 0.0f;
    }
}

// dtable[r, :] (+)= Σ_{q: ids[q] = r} dout[q, :], with no atomics: one block per table row
// (grid-stride over rows), so each output element has one owner. The block's 8 warps split the
// ids into 8 consecutive runs; a warp reads 32 ids at a time, `__ballot_sync` marks those equal
// to r, and the lanes (one per column) add the marked rows of dout in increasing q. The eight run
// sums are then added in warp order: a fixed order, so the result is the same every run.
// Ids past the table are never equal to a row, so they are skipped. Rows no id names get 0.
// Cost: every block reads all ids (from L2), O(table_rows · ids) — right for the small tables of
// labels, positions and groups (≈ 100 rows), not meant for vocabularies.
extern "C" __global__ void __launch_bounds__(256)
    embedding_bwd(const float* __restrict__ dout, const u32* __restrict__ ids,
                  float* __restrict__ dtable, u32 n_ids, u32 dim, u32 table_rows,
                  u32 accumulate) {
    __shared__ float part[8][32];
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const u32 run = ceil_div(n_ids, 8);
    const u32 q_begin = min(n_ids, warp * run), q_end = min(n_ids, q_begin + run);
    for (u32 r = blockIdx.x; r < table_rows; r += gridDim.x) {
        for (u32 c0 = 0; c0 < dim; c0 += 32) {
            const u32 c = c0 + lane;
            float s = 0.0f;
            for (u32 q0 = q_begin; q0 < q_end; q0 += 32) {
                const u32 q = q0 + lane;
                u32 hits = __ballot_sync(FULL_MASK, q < q_end && ids[q] == r);
                while (hits) {  // the same mask in every lane: a uniform loop
                    const u32 k = __ffs(hits) - 1;
                    hits &= hits - 1;
                    if (c < dim) s += dout[(size_t)(q0 + k) * dim + c];
                }
            }
            part[warp][lane] = s;
            __syncthreads();
            if (warp == 0 && c < dim) {
                float t = part[0][lane];
#pragma unroll
                for (int w = 1; w < 8; ++w) t += part[w][lane];
                float* d = dtable + (size_t)r * dim + c;
                *d = accumulate ? *d + t : t;
            }
            __syncthreads();  // part is reused by the next column chunk or row
        }
    }
}

// z = 2π · Σ_i x[r, i] · freqs[i, j], formed with round-to-nearest operations in the CPU's order
// (no FMA): sin and cos amplify any difference in z by |z|.
__device__ __forceinline__ float fourier_phase(const float* __restrict__ xr,
                                               const float* __restrict__ freqs, u32 in_dim,
                                               u32 half, u32 j) {
    float dot = 0.0f;
    for (u32 i = 0; i < in_dim; ++i) dot = __fadd_rn(dot, __fmul_rn(xr[i], freqs[i * half + j]));
    return __fmul_rn(K_TAU, dot);
}

// out[r, j] = sin z, out[r, half + j] = cos z; one thread per (r, j).
extern "C" __global__ void fourier_fwd(const float* __restrict__ x, const float* __restrict__ freqs,
                                       float* __restrict__ out, u32 rows, u32 in_dim, u32 half) {
    GRID_STRIDE(t, rows * half) {
        const u32 r = t / half, j = t - r * half;
        float s, c;
        sincosf(fourier_phase(x + (size_t)r * in_dim, freqs, in_dim, half, j), &s, &c);
        out[(size_t)r * 2 * half + j] = s;
        out[(size_t)r * 2 * half + half + j] = c;
    }
}

#define FOURIER_IN 4

// dfreqs[i, j] (+)= 2π Σ_r x[r, i] · (cos z_rj · dout[r, j] - sin z_rj · dout[r, half + j]).
// Grid (chunks, ceil(half / 32)), 256 threads: block (b, y) owns columns j = 32y + lane and the
// b-th of gridDim.x equal runs of rows; warp w takes rows w, w + 8, … of the run, forms the
// factor once per row and adds x[r, i] times it for FOURIER_IN inputs at a time (more inputs
// loop, recomputing the factor). Sums are f64, as on the CPU: the eight warp sums go to
// partials[b][i·half + j] in warp order, and the last block adds partials over b in order.
// partials holds gridDim.x · in_dim · half doubles.
extern "C" __global__ void __launch_bounds__(256)
    fourier_bwd(const float* __restrict__ x, const float* __restrict__ freqs,
                const float* __restrict__ dout, float* __restrict__ dfreqs,
                double* __restrict__ partials, u32* __restrict__ ticket, u32 rows, u32 in_dim,
                u32 half, u32 accumulate) {
    __shared__ double part[8][FOURIER_IN][32];
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const u32 j = blockIdx.y * 32 + lane;
    const u32 width = in_dim * half;
    const u32 chunk = ceil_div(rows, gridDim.x);
    const u32 r_begin = min(rows, blockIdx.x * chunk), r_end = min(rows, r_begin + chunk);
    for (u32 i0 = 0; i0 < in_dim; i0 += FOURIER_IN) {
        double acc[FOURIER_IN];
#pragma unroll
        for (int k = 0; k < FOURIER_IN; ++k) acc[k] = 0.0;
        if (j < half) {
            for (u32 r = r_begin + warp; r < r_end; r += 8) {
                const float* xr = x + (size_t)r * in_dim;
                float s, c;
                sincosf(fourier_phase(xr, freqs, in_dim, half, j), &s, &c);
                const float* d = dout + (size_t)r * 2 * half;
                // The factor as the CPU rounds it (no FMA).
                const float f = __fsub_rn(__fmul_rn(c, d[j]), __fmul_rn(s, d[half + j]));
#pragma unroll
                for (int k = 0; k < FOURIER_IN; ++k)
                    if (i0 + k < in_dim) acc[k] += (double)(xr[i0 + k] * f);
            }
        }
#pragma unroll
        for (int k = 0; k < FOURIER_IN; ++k) part[warp][k][lane] = acc[k];
        __syncthreads();
        if (warp == 0 && j < half) {
#pragma unroll
            for (int k = 0; k < FOURIER_IN; ++k) {
                if (i0 + k >= in_dim) break;
                double t = part[0][k][lane];
                for (int w = 1; w < 8; ++w) t += part[w][k][lane];
                partials[(size_t)blockIdx.x * width + (i0 + k) * half + j] = t;
            }
        }
        __syncthreads();
    }
    if (!grid_last_block(ticket)) return;
    for (u32 e = threadIdx.x; e < width; e += blockDim.x) {
        double t = 0.0;
        for (u32 b = 0; b < gridDim.x; ++b) t += __ldcg(partials + (size_t)b * width + e);
        t *= 6.283185307179586;  // 2π in f64, after the sum, as on the CPU
        dfreqs[e] = accumulate ? (float)((double)dfreqs[e] + t) : (float)t;
    }
}
