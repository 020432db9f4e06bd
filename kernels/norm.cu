// norm.cu: the norm family of the kernel contract (src/backend/mod.rs): layer_norm_fwd
// (optionally fused with the residual add) and layer_norm_bwd.
//
// One warp per row: the row's statistics are warp butterflies (f32, two-pass: the mean, then
// the squared deviations from it, as docs/architecture.md#kernel-contract asks), with no shared memory or barrier.
// A lane keeps its first LN_CACHE columns (c = lane + 32·j) in registers between the passes, so
// rows up to 256 wide (the benchmark's 64, the reference's 128) are read once; wider rows
// re-read the rest (L1 hits).
#include "common.cuh"

#define LN_CACHE 8
#define LN_WARPS 8

// h of column c of a row, read back past the register cache: the kept sum where there is one.
__device__ __forceinline__ float ln_h(const float* xr, const float* rr, const float* sr, u32 c) {
    return sr ? sr[c] : rr ? xr[c] + rr[c] : xr[c];
}

// h = x (+ residual), written to sum_out when there is a residual and sum_out is not null
// (inference passes null: nothing reads the sum there); y = (h - mean)·rstd·γ + β; mean and
// rstd saved per row. Block 256 threads = 8 rows; grid-stride over rows.
extern "C" __global__ void __launch_bounds__(256)
    layer_norm_fwd(const float* __restrict__ x, const float* __restrict__ residual,
                   const float* __restrict__ gamma, const float* __restrict__ beta,
                   float* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd,
                   float* __restrict__ sum_out, u32 rows, u32 cols, float eps) {
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float inv_cols = 1.0f / (float)cols;
    for (u32 row = blockIdx.x * LN_WARPS + warp; row < rows; row += gridDim.x * LN_WARPS) {
        const float* xr = x + (size_t)row * cols;
        const float* rr = residual ? residual + (size_t)row * cols : nullptr;
        float* sr = residual && sum_out ? sum_out + (size_t)row * cols : nullptr;
        float v[LN_CACHE];
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < LN_CACHE; ++j) {
            const u32 c = lane + 32 * j;
            float h = 0.0f;
            if (c < cols) {
                h = xr[c];
                if (rr) {
                    h += rr[c];
                    if (sr) sr[c] = h;
                }
            }
            v[j] = h;
            s += h;
        }
        for (u32 c = lane + 32 * LN_CACHE; c < cols; c += 32) {
            float h = xr[c];
            if (rr) {
                h += rr[c];
                if (sr) sr[c] = h;
            }
            s += h;
        }
        const float mu = warp_sum(s) * inv_cols;
        float q = 0.0f;
#pragma unroll
        for (int j = 0; j < LN_CACHE; ++j) {
            const float d = v[j] - mu;
            if (lane + 32 * j < cols) q += d * d;
        }
        // Columns past the cache: h again, from the sum this lane wrote itself above where it
        // kept one, else summed again (the same f32 sum).
        for (u32 c = lane + 32 * LN_CACHE; c < cols; c += 32) {
            const float d = ln_h(xr, rr, sr, c) - mu;
            q += d * d;
        }
        const float var = warp_sum(q) * inv_cols;
        const float rs = 1.0f / sqrtf(var + eps);
        float* yr = y + (size_t)row * cols;
#pragma unroll
        for (int j = 0; j < LN_CACHE; ++j) {
            const u32 c = lane + 32 * j;
            if (c < cols) yr[c] = (v[j] - mu) * rs * gamma[c] + beta[c];
        }
        for (u32 c = lane + 32 * LN_CACHE; c < cols; c += 32)
            yr[c] = (ln_h(xr, rr, sr, c) - mu) * rs * gamma[c] + beta[c];
        if (lane == 0) {
            mean[row] = mu;
            rstd[row] = rs;
        }
    }
}

// dh = rstd·(dy·γ - mean(dy·γ) - x̂·mean(dy·γ·x̂)) per row, x̂ = (h - mean)·rstd; and
// dγ (+)= Σ_rows dy·x̂, dβ (+)= Σ_rows dy, deterministic in two stages:
// - block b owns the b-th of gridDim.x equal runs of rows; warp w does rows w, w + W, … of it
//   (W = blockDim.x / 32) and adds its terms into its own slice of shared memory,
//   acc[w][0..cols) for dγ and acc[w][cols..2·cols) for dβ (a lane only touches its own
//   columns, so there are no races); the W slices are then added in warp order into
//   partials[b][0..2·cols);
// - the last block to finish adds partials over b in order and writes dγ, dβ.
// Dynamic shared memory: W · 2 · cols floats. partials: gridDim.x · 2 · cols floats.
extern "C" __global__ void __launch_bounds__(256)
    layer_norm_bwd(const float* __restrict__ h, const float* __restrict__ dy,
                   const float* __restrict__ gamma, const float* __restrict__ mean,
                   const float* __restrict__ rstd, float* __restrict__ dh,
                   float* __restrict__ dgamma, float* __restrict__ dbeta,
                   float* __restrict__ partials, u32* __restrict__ ticket, u32 rows, u32 cols,
                   u32 accumulate) {
    extern __shared__ float acc[];
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const u32 width = 2 * cols;
    for (u32 j = threadIdx.x; j < warps * width; j += blockDim.x) acc[j] = 0.0f;
    __syncthreads();

    float* pg = acc + warp * width;  // this warp's dγ sums; its dβ sums follow at + cols
    const float inv_cols = 1.0f / (float)cols;
    const u32 chunk = ceil_div(rows, gridDim.x);
    const u32 r_begin = min(rows, blockIdx.x * chunk), r_end = min(rows, r_begin + chunk);
    for (u32 row = r_begin + warp; row < r_end; row += warps) {
        const float* hr = h + (size_t)row * cols;
        const float* dyr = dy + (size_t)row * cols;
        const float mu = mean[row], rs = rstd[row];
        float xh[LN_CACHE], gy[LN_CACHE], d[LN_CACHE];
        float sg = 0.0f, sgx = 0.0f;
#pragma unroll
        for (int j = 0; j < LN_CACHE; ++j) {
            const u32 c = lane + 32 * j;
            xh[j] = 0.0f;
            gy[j] = 0.0f;
            d[j] = 0.0f;
            if (c < cols) {
                d[j] = dyr[c];
                gy[j] = d[j] * gamma[c];
                xh[j] = (hr[c] - mu) * rs;
                sg += gy[j];
                sgx += gy[j] * xh[j];
            }
        }
        for (u32 c = lane + 32 * LN_CACHE; c < cols; c += 32) {
            const float g = dyr[c] * gamma[c], x = (hr[c] - mu) * rs;
            sg += g;
            sgx += g * x;
        }
        const float g_mean = warp_sum(sg) * inv_cols, gx_mean = warp_sum(sgx) * inv_cols;
        float* dhr = dh + (size_t)row * cols;
#pragma unroll
        for (int j = 0; j < LN_CACHE; ++j) {
            const u32 c = lane + 32 * j;
            if (c < cols) {
                dhr[c] = rs * (gy[j] - g_mean - xh[j] * gx_mean);
                pg[c] += d[j] * xh[j];
                pg[cols + c] += d[j];
            }
        }
        for (u32 c = lane + 32 * LN_CACHE; c < cols; c += 32) {
            const float dv = dyr[c], g = dv * gamma[c], x = (hr[c] - mu) * rs;
            dhr[c] = rs * (g - g_mean - x * gx_mean);
            pg[c] += dv * x;
            pg[cols + c] += dv;
        }
    }
    __syncthreads();
    for (u32 j = threadIdx.x; j < width; j += blockDim.x) {
        float t = acc[j];
        for (u32 w = 1; w < warps; ++w) t += acc[w * width + j];
        partials[blockIdx.x * width + j] = t;
    }
    if (!grid_last_block(ticket)) return;
    for (u32 j = threadIdx.x; j < width; j += blockDim.x) {
        float t = 0.0f;
        for (u32 b = 0; b < gridDim.x; ++b) t += __ldcg(partials + b * width + j);
        float* out = j < cols ? dgamma + j : dbeta + (j - cols);
        *out = accumulate ? *out + t : t;
    }
}
