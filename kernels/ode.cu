// ode.cu: the ODE family of the kernel contract (src/backend/mod.rs): ode_stage (every Euler,
// RK4 and Dopri5 stage and combination as one fused launch), dopri5_error and dopri5_accept
// (per-sample step control on the device, so an adaptive solve never reads back).
//
// The coefficients travel by value in `OdeCoeffs` (8 floats, of which the first `stages` are
// used; Dopri5 needs 7). Stages with a zero coefficient are skipped, as on the CPU: a stage
// buffer that has not been written yet (NaN) must not leak in through 0 · NaN. Sums use
// round-to-nearest intrinsics in the CPU's order, so ode_stage matches the CPU bit for bit.
#include "common.cuh"

#define ODE_MAX_STAGES 8

// Rust side: #[repr(C)] struct OdeCoeffs { c: [f32; 8] } with `unsafe impl DeviceRepr`.
struct OdeCoeffs {
    float c[ODE_MAX_STAGES];
};

// Σ_j c_j · k[j·n + i] over the nonzero coefficients, in stage order.
__device__ __forceinline__ float stage_sum(const float* __restrict__ k, const OdeCoeffs& co,
                                           u32 stages, u32 n, u32 i) {
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < ODE_MAX_STAGES; ++j)
        if (j < stages && co.c[j] != 0.0f)
            acc = __fadd_rn(acc, __fmul_rn(co.c[j], k[(size_t)j * n + i]));
    return acc;
}

// out[i] = x[i] + h[i / per_sample] · Σ_j c_j · k[j·n + i], n = x.len().
extern "C" __global__ void ode_stage(const float* __restrict__ x, const float* __restrict__ k,
                                     const float* __restrict__ h, float* __restrict__ out,
                                     OdeCoeffs coeffs, u32 stages, u32 n, u32 per_sample) {
    GRID_STRIDE(i, n) {
        const float a = stage_sum(k, coeffs, stages, n, i);
        out[i] = __fadd_rn(x[i], __fmul_rn(h[i / per_sample], a));
    }
}

#define ODE_WARPS 8

// err[s] = |h_s| · sqrt(mean_i (e_i / (atol + rtol · max(|x_i|, |x_new_i|)))²) over the
// sample's elements, e_i = Σ_j c_j k[j, i]. One warp per sample (8 per block, grid-stride);
// the squares are summed in f64 as on the CPU, lanes strided then a warp butterfly.
extern "C" __global__ void __launch_bounds__(256)
    dopri5_error(const float* __restrict__ x, const float* __restrict__ x_new,
                 const float* __restrict__ k, const float* __restrict__ h,
                 float* __restrict__ err, OdeCoeffs coeffs, u32 stages, u32 n, u32 per_sample,
                 float rtol, float atol) {
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const u32 samples = n / per_sample;
    for (u32 s = blockIdx.x * ODE_WARPS + warp; s < samples; s += gridDim.x * ODE_WARPS) {
        double sum = 0.0;
        for (u32 e = lane; e < per_sample; e += 32) {
            const u32 i = s * per_sample + e;
            const float a = stage_sum(k, coeffs, stages, n, i);
            const float tol =
                __fadd_rn(atol, __fmul_rn(rtol, fmaxf(fabsf(x[i]), fabsf(x_new[i]))));
            const double r = (double)(a / tol);
            sum = __dadd_rn(sum, __dmul_rn(r, r));  // not fused into an FMA, as on the CPU
        }
        sum = warp_sum(sum);
        if (lane == 0)
            err[s] = (float)(fabs((double)h[s]) * sqrt(sum / (double)per_sample));
    }
}

// Per sample still integrating (h > 0): accept where err <= 1 (x = x_new, t += h, landing on
// t_end when within 1e-6·max(|t_end|, 1) of it); then h = h · clamp(0.9 · err^(-1/5), 0.2, 10)
// limited to t_end - t, and never negative. fmaxf/fminf skip a NaN operand, as Rust's max/min
// do: a NaN error is rejected and gets the smallest factor; err = 0 gives the largest.
// One warp per sample (8 per block, grid-stride): the lanes copy the accepted sample, lane 0
// updates t and h.
extern "C" __global__ void __launch_bounds__(256)
    dopri5_accept(float* __restrict__ x, const float* __restrict__ x_new,
                  const float* __restrict__ err, float* __restrict__ t, float* __restrict__ h,
                  u32 samples, u32 per_sample, float t_end) {
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float snap = 1e-6f * fmaxf(fabsf(t_end), 1.0f);
    for (u32 s = blockIdx.x * ODE_WARPS + warp; s < samples; s += gridDim.x * ODE_WARPS) {
        const float hs = h[s], ts = t[s], e = err[s];
        __syncwarp();  // every lane has read h[s] and t[s] before lane 0 rewrites them
        if (hs <= 0.0f) continue;  // finished (the same branch in every lane)
        const bool accept = e <= 1.0f;
        if (accept)
            for (u32 q = lane; q < per_sample; q += 32)
                x[s * per_sample + q] = x_new[s * per_sample + q];
        if (lane == 0) {
            float tn = ts;
            if (accept) {
                tn = ts + hs;
                if (t_end - tn <= snap) tn = t_end;
            }
            const float factor = fminf(fmaxf(0.9f * powf(e, -0.2f), 0.2f), 10.0f);
            t[s] = tn;
            h[s] = fmaxf(fminf(hs * factor, t_end - tn), 0.0f);
        }
    }
}
