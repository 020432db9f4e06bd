// Minimal host emulation of the CUDA features the kernels use: one std::thread per CUDA thread,
// blocks run one after another, std::barrier for __syncthreads / warp collectives. Every launch
// is first checked against the limits a real launch must meet (launch_error below).
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>
using std::max;
using std::min;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
struct uint3e { unsigned x = 0, y = 0, z = 0; };
struct dim3e { unsigned x = 1, y = 1, z = 1; };
inline thread_local uint3e threadIdx, blockIdx;
inline dim3e blockDim, gridDim;
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline float2 make_float2(float a, float b) { return {a, b}; }
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
template <class T> inline T __ldcg(const T* p) { return *p; }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline void sincosf_(float x, float* s, float* c) { *s = sinf(x); *c = cosf(x); }
#define sincosf sincosf_

inline std::barrier<>* g_block_bar;
inline std::vector<std::unique_ptr<std::barrier<>>> g_warp_bar;
inline uint64_t g_slots[32][32];
inline std::vector<float4> g_dyn_smem;

inline void __syncthreads() { g_block_bar->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { g_warp_bar[threadIdx.x / 32]->arrive_and_wait(); }
template <class T> inline T __shfl_xor_sync(unsigned, T v, unsigned o) {
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    g_slots[w][l] = bits;
    g_warp_bar[w]->arrive_and_wait();
    uint64_t other = g_slots[w][l ^ o];
    g_warp_bar[w]->arrive_and_wait();
    T r;
    std::memcpy(&r, &other, sizeof(T));
    return r;
}
inline unsigned __ballot_sync(unsigned, bool p) {
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    g_slots[w][l] = p;
    g_warp_bar[w]->arrive_and_wait();
    unsigned m = 0;
    for (int i = 0; i < 32; ++i) m |= (g_slots[w][i] ? 1u : 0u) << i;
    g_warp_bar[w]->arrive_and_wait();
    return m;
}

// What ptxas and the source say about one kernel: the __launch_bounds__ thread count (0 where
// there is none), and the registers per thread and static shared bytes that ptxas -v reports
// (the most over the target architectures). run.sh writes the table from the sources and
// kernels/emu/ptxas-usage.tsv.
struct KernelLimits {
    const char* name;
    unsigned max_threads, regs, static_smem;
};
inline const KernelLimits g_kernel_limits[] = {
#include "limits.inc"
};

// Kernels that opt in to more dynamic shared memory when loaded, and how much (the backend's
// table, src/backend/cuda/limits.rs `OPT_IN`): their dynamic bytes may reach that amount,
// whatever their static bytes.
struct SmemOptIn {
    const char* name;
    size_t dyn_bytes;
};
inline const SmemOptIn g_smem_opt_in[] = {{"layer_norm_bwd", 48 * 1024}};

// Why a real launch of kernel `k` with this geometry and dynamic shared memory would fail, or ""
// when it would not. Limits of every target (sm_80 to sm_90): 1024 threads per block, grid y
// and z at most 65 535, static plus dynamic shared memory at most 48 KiB unless the kernel opts
// in (then its dynamic bytes up to the opted-in amount), and the block's registers (allocated
// per warp in units of 256) within the 65 536 of an SM.
inline std::string launch_error(const KernelLimits& k, dim3e grid, dim3e block, size_t dyn_smem) {
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    size_t opt_in = 0;
    for (const SmemOptIn& o : g_smem_opt_in)
        if (std::strcmp(o.name, k.name) == 0) opt_in = o.dyn_bytes;
    char why[200] = "";
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0)
        snprintf(why, sizeof why, "empty grid or block");
    else if (threads > 1024 || block.z > 64)
        snprintf(why, sizeof why, "%llu threads per block (at most 1024)", threads);
    else if (k.max_threads && threads > k.max_threads)
        snprintf(why, sizeof why, "%llu threads, past __launch_bounds__(%u)", threads, k.max_threads);
    else if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
        snprintf(why, sizeof why, "grid (%u, %u, %u): y and z at most 65535", grid.x, grid.y, grid.z);
    else if (opt_in ? dyn_smem > opt_in : k.static_smem + dyn_smem > 48 * 1024)
        snprintf(why, sizeof why, "%u static + %zu dynamic bytes of shared memory (at most %zu)",
                 k.static_smem, dyn_smem, opt_in ? opt_in : (size_t)48 * 1024);
    else if ((threads + 31) / 32 * ((k.regs * 32 + 255) / 256 * 256) > 65536)
        snprintf(why, sizeof why, "%u registers x %llu threads (at most 65536 per SM)", k.regs, threads);
    return why;
}

inline int g_launch_errors = 0;
// Blocks run one after another, first to last or, when set, last to first: a GPU runs them in
// any order, so a result must not depend on which block of a reduction arrives last.
inline bool g_blocks_reversed = false;

// Runs `f` as kernel `name` over the grid, blocks one after another; a launch a GPU would
// refuse is reported (and counted in g_launch_errors) and not run.
template <class F>
void launch(const char* name, dim3e grid, dim3e block, size_t smem_bytes, F f) {
    const KernelLimits* k = nullptr;
    for (const auto& e : g_kernel_limits)
        if (std::string(e.name) == name) k = &e;
    const std::string why = k ? launch_error(*k, grid, block, smem_bytes)
                              : "no ptxas record for this kernel (kernels/emu/ptxas-usage.tsv)";
    if (!why.empty()) {
        printf("FAIL launch %s: %s\n", name, why.c_str());
        g_launch_errors++;
        return;
    }
    gridDim = grid;
    blockDim = block;
    g_dyn_smem.assign(smem_bytes / 16 + 1, float4{NAN, NAN, NAN, NAN});
    const unsigned nt = block.x;
    const unsigned long long blocks = (unsigned long long)grid.x * grid.y * grid.z;
    for (unsigned long long n = 0; n < blocks; ++n) {
        const unsigned long long b = g_blocks_reversed ? blocks - 1 - n : n;
        const unsigned x = b % grid.x, y = b / grid.x % grid.y, z = b / grid.x / grid.y;
        std::barrier<> bar(nt);
        g_block_bar = &bar;
        g_warp_bar.clear();
        for (unsigned w = 0; w < (nt + 31) / 32; ++w)
            g_warp_bar.emplace_back(new std::barrier<>(std::min(32u, nt - 32 * w)));
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < nt; ++t)
            ts.emplace_back([&, t] {
                threadIdx = {t, 0, 0};
                blockIdx = {x, y, z};
                f();
                bar.arrive_and_drop();
                g_warp_bar[t / 32]->arrive_and_drop();
            });
        for (auto& th : ts) th.join();
    }
}
