// common.cuh: included by every kernels/*.cu (the CUDA twin of shaders/common.wgsl).
//
// Conventions every entry point follows (kernels/README.md lists each one's launch):
// - `extern "C" __global__`, plain pointers and scalars, so the Rust side (cudarc's launch
//   builder) pushes the arguments in the order of the signature. f32 data, u32 indices and
//   sizes, masks as f32 (1 = keep, 0 = pad). Optional inputs are null pointers.
// - Element counts are below 2^31 (the Rust side checks), so u32 index arithmetic and the
//   grid-stride `i += stride` never wrap.
// - 1-D kernels use grid-stride loops: any grid size is correct; the README gives the one to use.
// - No float atomics anywhere. Reductions to a scalar or to columns run in a fixed order: each
//   block reduces a fixed slice, writes its partial, and the block that arrives last (an integer
//   ticket, `grid_last_block`) adds the partials in block order. The grid is chosen from the
//   shape alone, so the same inputs give the same bits run to run.
#pragma once

typedef unsigned int u32;
typedef unsigned long long u64;

#define FULL_MASK 0xffffffffu

// f32 constants, rounded as Rust's `std::f32::consts` are.
#define K_LOG2E 1.44269504088896340736f
#define K_LN2 0.693147180559945309417f
#define K_TAU 6.28318530717958647692f

// Grid-stride loop over `0..n` for a 1-D launch.
#define GRID_STRIDE(i, n)                                                                 \
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += gridDim.x * blockDim.x)

__device__ __forceinline__ u32 ceil_div(u32 a, u32 b) { return (a + b - 1) / b; }

// Butterfly sum over the 32 lanes of a warp. Every lane ends with the same bits: at each level
// a lane adds its partner's value to its own, and IEEE addition is commutative, so both
// partners hold `x + y`.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

// Sum over groups of `width` consecutive lanes (width a power of two, at most 32), every lane of
// a group ending with the same bits. All 32 lanes must call it (the shuffles name the full mask).
__device__ __forceinline__ float group_sum(float v, u32 width) {
    for (u32 o = width >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

// Sum of `v` over the whole block, returned to every thread. blockDim.x must be a multiple of
// 32. A fixed tree: a butterfly within each warp, then the warp totals (from shared `scratch`,
// 32 elements) in a butterfly again, so the result is the same bits in every thread and every
// run. Every thread of the block must call it.
template <typename T>
__device__ T block_sum(T v, T* scratch) {
    v = warp_sum(v);
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // a previous call may still be reading scratch
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    T t = lane < (blockDim.x >> 5) ? scratch[lane] : T(0);
    return warp_sum(t);
}

// Called by every thread of every block after the block has written its partial results to
// global memory: returns true (in all threads) in the one block that arrives last, which may
// then read every block's partials (through `__ldcg`, L2, never a stale L1 line). The ticket is
// an integer counter that is 0 before the launch; the last block puts it back to 0, so one
// ticket serves every such launch on a stream. Blocks must not return before calling it.
__device__ __forceinline__ bool grid_last_block(u32* ticket) {
    __shared__ bool last;
    __threadfence();  // publish this thread's partials before the block takes its ticket
    __syncthreads();
    if (threadIdx.x == 0) {
        const u32 blocks = gridDim.x * gridDim.y * gridDim.z;
        last = atomicAdd(ticket, 1u) == blocks - 1;
        if (last) *ticket = 0;  // every other block has taken its ticket already
    }
    __syncthreads();
    if (last) __threadfence();
    return last;
}

// Grid-wide sum of one f64 per block (`block_total`, valid in every thread): block b stores it
// in partials[b]; the last block adds partials[0..gridDim.x) in a fixed tree and returns true
// with the sum in `*total` (every thread). `scratch` is 32 doubles of shared memory. 1-D grids.
__device__ __forceinline__ bool grid_sum_last(double block_total, double* partials, u32* ticket,
                                              double* total, double* scratch) {
    if (threadIdx.x == 0) partials[blockIdx.x] = block_total;
    if (!grid_last_block(ticket)) return false;
    double v = 0.0;
    for (u32 b = threadIdx.x; b < gridDim.x; b += blockDim.x) v += __ldcg(partials + b);
    *total = block_sum(v, scratch);
    return true;
}

// A fixed slice of `0..n` per block for the scalar reductions: blocks own consecutive chunks
// of `chunk` elements (a multiple of blockDim.x), threads stride through their block's chunk.
__device__ __forceinline__ u32 reduction_chunk(u32 n) {
    return ceil_div(ceil_div(n, gridDim.x), blockDim.x) * blockDim.x;
}
