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

// dtable[r, :] (+)= Σ_{q: ids[q] = r} dout[q, :], each element summed in order of q, one f32
// add at a time from dtable[r, c] (accumulate) or 0, as the contract and the CPU backend do: a
// sequential sum is one chain of dependent adds per element, so the parallelism is over rows and
// columns. One block per table row (grid-stride over rows), no atomics: each output element has
// one owner, thread t for column c0 + t of each chunk of 256 columns. The block walks the ids
// 256 at a time: every thread tests one id, `__ballot_sync` and the warps' counts rank the
// matches in order of q into `pos`, then each column's thread adds those rows of dout in that
// order (its reads of one row are coalesced with its neighbours'). Ids past the table match no
// row and are skipped. Cost: every block reads all ids (from L2) once per column chunk,
// O(table_rows · ids) — right for the small tables of labels, positions and groups (≈ 100 rows),
// not meant for vocabularies.
#define EMB_THREADS 256

extern "C" __global__ void __launch_bounds__(EMB_THREADS)
    embedding_bwd(const float* __restrict__ dout, const u32* __restrict__ ids,
                  float* __restrict__ dtable, u32 n_ids, u32 dim, u32 table_rows,
                  u32 accumulate) {
    __shared__ u32 pos[EMB_THREADS];         // positions q of this pass's matches, in order
    __shared__ u32 counts[EMB_THREADS / 32];  // matches per warp in this pass
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (u32 r = blockIdx.x; r < table_rows; r += gridDim.x) {
        for (u32 c0 = 0; c0 < dim; c0 += EMB_THREADS) {
            const u32 c = c0 + threadIdx.x;
            float* d = dtable + (size_t)r * dim + c;
            float s = accumulate && c < dim ? *d : 0.0f;
            for (u32 q0 = 0; q0 < n_ids; q0 += EMB_THREADS) {
                const u32 q = q0 + threadIdx.x;
                const bool hit = q < n_ids && ids[q] == r;
                const u32 mask = __ballot_sync(FULL_MASK, hit);
                if (lane == 0) counts[warp] = __popc(mask);
                __syncthreads();
                u32 before = 0, matched = 0;
                for (u32 w = 0; w < EMB_THREADS / 32; ++w) {
                    before += w < warp ? counts[w] : 0;
                    matched += counts[w];
                }
                if (hit) pos[before + __popc(mask & ((1u << lane) - 1))] = q;
                __syncthreads();
                if (c < dim)
                    for (u32 k = 0; k < matched; ++k) s += dout[(size_t)pos[k] * dim + c];
                __syncthreads();  // pos and counts are rewritten by the next pass
            }
            if (c < dim) *d = s;
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
// Grid (chunks, tiles), 256 threads: block (b, y) owns the column tiles y, y + gridDim.y, … of
// 32 columns each (j = 32·tile + lane; the grid's height is capped at 65 535, so a wide `half`
// loops) and the b-th of gridDim.x equal runs of rows; warp w takes rows w, w + 8, … of the
// run, forms the factor once per row and adds x[r, i] times it for FOURIER_IN inputs at a time
// (more inputs loop, recomputing the factor). Sums are f64, as on the CPU: the eight warp sums go to
// partials[b][i·half + j] in warp order, and the last block adds partials over b in order.
// partials holds gridDim.x · in_dim · half doubles.
extern "C" __global__ void __launch_bounds__(256)
    fourier_bwd(const float* __restrict__ x, const float* __restrict__ freqs,
                const float* __restrict__ dout, float* __restrict__ dfreqs,
                double* __restrict__ partials, u32* __restrict__ ticket, u32 rows, u32 in_dim,
                u32 half, u32 accumulate) {
    __shared__ double part[8][FOURIER_IN][32];
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const u32 width = in_dim * half;
    const u32 chunk = ceil_div(rows, gridDim.x);
    const u32 r_begin = min(rows, blockIdx.x * chunk), r_end = min(rows, r_begin + chunk);
    // The same trip count in every thread of the block, so the barriers inside are uniform.
    for (u32 tile = blockIdx.y; tile * 32 < half; tile += gridDim.y) {
        const u32 j = tile * 32 + lane;
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
    }
    if (!grid_last_block(ticket)) return;
    for (u32 e = threadIdx.x; e < width; e += blockDim.x) {
        double t = 0.0;
        for (u32 b = 0; b < gridDim.x; ++b) t += __ldcg(partials + (size_t)b * width + e);
        t *= 6.283185307179586;  // 2π in f64, after the sum, as on the CPU
        dfreqs[e] = accumulate ? (float)((double)dfreqs[e] + t) : (float)t;
    }
}
