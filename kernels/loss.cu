// loss.cu: the loss and reduction family of the kernel contract (src/backend/mod.rs):
// bce_with_logits (mean binary cross-entropy with logits and its gradient, one launch) and
// reduce_sum (sum or mean to a device scalar). Both reduce in f64 like the CPU, in a fixed order:
// block b sums its chunk, the last block adds the block sums in order (grid_sum_last).
// partials: gridDim.x doubles.
#include "common.cuh"

// loss[0] = mean(max(z, 0) - z·y + ln(1 + e^-|z|)), dz = (σ(z) - y) / n. e^-|z| never
// overflows, and σ(z) is formed from it on either side of 0.
extern "C" __global__ void __launch_bounds__(256)
    bce_with_logits(const float* __restrict__ logits, const float* __restrict__ targets,
                    float* __restrict__ loss, float* __restrict__ dlogits,
                    double* __restrict__ partials, u32* __restrict__ ticket, u32 n) {
    __shared__ double scratch[32];
    const double inv_n = 1.0 / (double)max(n, 1u);
    const float grad_scale = (float)inv_n;
    const u32 chunk = reduction_chunk(n);
    const u32 begin = min(n, blockIdx.x * chunk), end = min(n, begin + chunk);
    double acc = 0.0;
    for (u32 i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const float z = logits[i], y = targets[i];
        const float e = expf(-fabsf(z));
        const float sig = z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        dlogits[i] = __fmul_rn(sig - y, grad_scale);
        const double z64 = (double)z, y64 = (double)y;
        acc += fmax(z64, 0.0) - z64 * y64 + (double)log1pf(e);
    }
    double total;
    if (grid_sum_last(block_sum(acc, scratch), partials, ticket, &total, scratch) &&
        threadIdx.x == 0)
        loss[0] = (float)(total * inv_n);
}

// out[0] = scale · Σ x (f64 sum, then the scale, then rounded to f32).
extern "C" __global__ void __launch_bounds__(256)
    reduce_sum(const float* __restrict__ x, float* __restrict__ out,
               double* __restrict__ partials, u32* __restrict__ ticket, u32 n, float scale) {
    __shared__ double scratch[32];
    const u32 chunk = reduction_chunk(n);
    const u32 begin = min(n, blockIdx.x * chunk), end = min(n, begin + chunk);
    double acc = 0.0;
    for (u32 i = begin + threadIdx.x; i < end; i += blockDim.x) acc += (double)x[i];
    double total;
    if (grid_sum_last(block_sum(acc, scratch), partials, ticket, &total, scratch) &&
        threadIdx.x == 0)
        out[0] = (float)(total * (double)scale);
}
