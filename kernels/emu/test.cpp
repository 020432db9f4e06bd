// Every kernel of kernels/*.cu run under the host emulation (cuda_emu.h) with the launch
// geometry of kernels/README.md: odd sizes, masks, tails, several tiles, split-K, broadcast
// strides, accumulate flags, multi-block reductions. Bit for bit (check_bits) against a
// reference that rounds as the contract or the kernel's documented order does; within a
// tolerance of an f64 reference (check) only where the backend chooses its own order (GEMM,
// attention, layer norm) or the device math library decides the last bits. Every launch is
// checked against the hardware limits (cuda_emu.h). Build and run with kernels/emu/run.sh.
#include "cuda_emu.h"
#include <cstdio>
#include <random>
#include <string>
#include "k/memory.cu"
#include "k/random.cu"
#include "k/matmul.cu"
#include "k/elementwise.cu"
#include "k/norm.cu"
#include "k/attention.cu"
#include "k/embedding.cu"
#include "k/flow.cu"
#include "k/ode.cu"
#include "k/optim.cu"
#include "k/loss.cu"
#include "order.h"

static std::mt19937 rng(42);
static std::vector<float> randv(size_t n, float lo = -1, float hi = 1) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}
static int failures = 0;
static void check(const std::string& what, const std::vector<float>& got, const std::vector<double>& want,
                  double atol = 1e-5, double rtol = 1e-4) {
    if (got.size() != want.size()) { printf("FAIL %s: size %zu vs %zu\n", what.c_str(), got.size(), want.size()); failures++; return; }
    double worst = 0; size_t wi = 0; bool bad = false;
    for (size_t i = 0; i < got.size(); ++i) {
        double g = got[i], w = want[i];
        bool ok = (std::isnan(w) && std::isnan(g)) || (std::isinf(w) && g == w) || std::fabs(g - w) <= atol + rtol * std::fabs(w);
        if (!ok) { bad = true; double e = std::fabs(g - w); if (!(e <= worst)) { worst = e; wi = i; } }
    }
    if (bad) { printf("FAIL %s: worst at %zu got %.9g want %.9g\n", what.c_str(), wi, got[wi], want[wi]); failures++; }
    else printf("ok   %s\n", what.c_str());
}
// Bit for bit (a NaN must be the same NaN, -0 is not +0), where the contract or the kernel's
// documented order fixes every rounding.
static void check_bits(const std::string& what, const std::vector<float>& got, const std::vector<float>& want) {
    if (got.size() != want.size()) { printf("FAIL %s: size %zu vs %zu\n", what.c_str(), got.size(), want.size()); failures++; return; }
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i)
        if (std::memcmp(&got[i], &want[i], 4) != 0 && bad++ == 0) first = i;
    if (bad) { printf("FAIL %s: %zu of %zu differ in their bits, first at %zu: got %.9g want %.9g\n", what.c_str(), bad, got.size(), first, got[first], want[first]); failures++; }
    else printf("ok   %s (bit for bit)\n", what.c_str());
}
static dim3e d1(unsigned x, unsigned y = 1, unsigned z = 1) { dim3e d; d.x = x; d.y = y; d.z = z; return d; }
static unsigned cdiv(unsigned a, unsigned b) { return (a + b - 1) / b; }
static u32 g_ticket = 0;
static std::vector<double> g_partd(1 << 20);
static std::vector<float> g_partf(1 << 20);

// ---- gemm ----
static void test_gemm(u32 batch, u32 M, u32 N, u32 K, bool ta, bool tb, float alpha, float beta, u32 epi,
                      bool bcast_b, int big, u32 splits) {
    u32 sa = M * K, sb = bcast_b ? 0 : K * N, sc = M * N + 3;
    auto A = randv((size_t)(batch - 1) * sa + M * K), B = randv((size_t)(batch > 1 && !bcast_b ? batch - 1 : 0) * K * N + K * N);
    auto bias = randv(N);
    std::vector<float> C = randv((size_t)(batch - 1) * sc + M * N);
    if (beta == 0) std::fill(C.begin(), C.end(), NAN);
    std::vector<double> want(C.begin(), C.end());
    for (u32 b = 0; b < batch; ++b)
        for (u32 i = 0; i < M; ++i)
            for (u32 j = 0; j < N; ++j) {
                double s = 0;
                for (u32 k = 0; k < K; ++k) {
                    double a = ta ? A[b * sa + k * M + i] : A[b * sa + i * K + k];
                    double bb = tb ? B[b * sb + j * K + k] : B[b * sb + k * N + j];
                    s += a * bb;
                }
                double v = alpha * s + (beta != 0 ? beta * (double)C[b * sc + i * N + j] : 0.0);
                if (epi) { v += bias[j]; if (epi == 2 && v < 0) v = 0; }
                want[b * sc + i * N + j] = v;
            }
    std::vector<float> ws((size_t)batch * splits * M * N);
    u32 BM = big == 1 ? 128 : 64;
    dim3e grid = d1(cdiv(N, BM), cdiv(M, BM), batch * splits);
    auto cp = C;
    launch(big == 2 ? "gemm_tf32_64x64" : big ? "gemm_f32_128x128" : "gemm_f32_64x64", grid, d1(big == 2 ? 128 : 256), 0, [&] {
        if (big == 2) gemm_tf32_64x64(A.data(), B.data(), epi ? bias.data() : nullptr, cp.data(), ws.data(), M, N, K, ta, tb, alpha, beta, sa, sb, sc, epi, splits);
        else if (big) gemm_f32_128x128(A.data(), B.data(), epi ? bias.data() : nullptr, cp.data(), ws.data(), M, N, K, ta, tb, alpha, beta, sa, sb, sc, epi, splits);
        else gemm_f32_64x64(A.data(), B.data(), epi ? bias.data() : nullptr, cp.data(), ws.data(), M, N, K, ta, tb, alpha, beta, sa, sb, sc, epi, splits);
    });
    if (splits > 1)
        launch("gemm_splitk_reduce", d1(cdiv(batch * M * N, 256)), d1(256), 0, [&] { gemm_splitk_reduce(ws.data(), epi ? bias.data() : nullptr, cp.data(), M, N, batch, splits, beta, sc, epi); });
    // the gaps between batches of C must be untouched
    for (u32 b = 0; b + 1 < batch; ++b) for (u32 q = M * N; q < sc; ++q) want[b * sc + q] = C[b * sc + q];
    char name[200];
    snprintf(name, sizeof name, "gemm %s b%u %ux%ux%u ta%d tb%d a%.1f b%.1f epi%u bc%d split%u", big == 2 ? "tf32" : big ? "128" : "64", batch, M, N, K, ta, tb, alpha, beta, epi, bcast_b, splits);
    if (big == 2) check(name, cp, want, 2e-2, 5e-3); else check(name, cp, want, 1e-4, 1e-4);
}

static void test_bias_grad(u32 rows, u32 cols, bool acc) {
    auto dy = randv(rows * cols); auto db = randv(cols);
    u32 chunks = std::clamp(cdiv(rows, 128), 1u, 1024u);
    const auto want = bias_grad_ref(dy, rows, cols, chunks, db, acc);
    launch("bias_grad", d1(cdiv(cols, 32), chunks), d1(256), 0, [&] { bias_grad(dy.data(), db.data(), g_partf.data(), &g_ticket, rows, cols, acc); });
    check_bits("bias_grad " + std::to_string(rows) + "x" + std::to_string(cols), db, want);
    if (g_ticket != 0) { printf("FAIL ticket not reset\n"); failures++; }
}

static void test_layer_norm(u32 rows, u32 cols, bool res, bool acc) {
    auto x = randv(rows * cols), r = randv(rows * cols), gm = randv(cols), bt = randv(cols), dy = randv(rows * cols);
    std::vector<float> y(rows * cols), mean(rows), rstd(rows), sum(rows * cols, NAN);
    std::vector<double> wy(rows * cols), wm(rows), wr(rows), wh(rows * cols);
    for (u32 i = 0; i < rows; ++i) {
        double m = 0, v = 0;
        for (u32 c = 0; c < cols; ++c) { wh[i * cols + c] = (double)x[i * cols + c] + (res ? r[i * cols + c] : 0.0f); m += wh[i * cols + c]; }
        m /= cols;
        for (u32 c = 0; c < cols; ++c) v += (wh[i * cols + c] - m) * (wh[i * cols + c] - m);
        v /= cols; double rs = 1 / std::sqrt(v + 1e-5);
        wm[i] = m; wr[i] = rs;
        for (u32 c = 0; c < cols; ++c) wy[i * cols + c] = (wh[i * cols + c] - m) * rs * gm[c] + bt[c];
    }
    launch("layer_norm_fwd", d1(cdiv(rows, 8)), d1(256), 0, [&] { layer_norm_fwd(x.data(), res ? r.data() : nullptr, gm.data(), bt.data(), y.data(), mean.data(), rstd.data(), res ? sum.data() : nullptr, rows, cols, 1e-5f); });
    std::string nm = "layer_norm " + std::to_string(rows) + "x" + std::to_string(cols) + (res ? " res" : "");
    check(nm + " y", y, wy); check(nm + " mean", mean, wm); check(nm + " rstd", rstd, wr, 1e-5, 1e-4);
    if (res) check(nm + " sum", sum, wh);
    if (res) {
        // Inference keeps no sum (null sum_out): the same outputs, bit for bit.
        std::vector<float> y2(rows * cols, NAN), mean2(rows, NAN), rstd2(rows, NAN);
        launch("layer_norm_fwd", d1(cdiv(rows, 8)), d1(256), 0, [&] { layer_norm_fwd(x.data(), r.data(), gm.data(), bt.data(), y2.data(), mean2.data(), rstd2.data(), nullptr, rows, cols, 1e-5f); });
        check_bits(nm + " no sum: y", y2, y); check_bits(nm + " no sum: mean", mean2, mean); check_bits(nm + " no sum: rstd", rstd2, rstd);
    }
    // backward from the fwd's saved stats, h = x + r
    std::vector<float> h(rows * cols); for (size_t i = 0; i < h.size(); ++i) h[i] = (float)wh[i];
    std::vector<float> dh(rows * cols), dg = randv(cols), dbb = randv(cols);
    std::vector<double> wdh(rows * cols), wdg(cols), wdb(cols);
    for (u32 c = 0; c < cols; ++c) { wdg[c] = acc ? dg[c] : 0; wdb[c] = acc ? dbb[c] : 0; }
    for (u32 i = 0; i < rows; ++i) {
        double gmn = 0, gxm = 0;
        for (u32 c = 0; c < cols; ++c) { double xh = (h[i * cols + c] - (double)mean[i]) * rstd[i]; double g = (double)dy[i * cols + c] * gm[c]; gmn += g; gxm += g * xh; }
        gmn /= cols; gxm /= cols;
        for (u32 c = 0; c < cols; ++c) { double xh = (h[i * cols + c] - (double)mean[i]) * rstd[i]; double g = (double)dy[i * cols + c] * gm[c];
            wdh[i * cols + c] = rstd[i] * (g - gmn - xh * gxm); wdg[c] += dy[i * cols + c] * xh; wdb[c] += dy[i * cols + c]; }
    }
    u32 W = 8; while (W > 1 && W * 2 * cols * 4 > 49152) W /= 2;
    u32 chunks = std::clamp(cdiv(rows, 64), 1u, 1024u);
    launch("layer_norm_bwd", d1(chunks), d1(32 * W), W * 2 * cols * 4, [&] { layer_norm_bwd(h.data(), dy.data(), gm.data(), mean.data(), rstd.data(), dh.data(), dg.data(), dbb.data(), g_partf.data(), &g_ticket, rows, cols, acc); });
    check(nm + " dh", dh, wdh, 1e-4, 1e-4); check(nm + " dgamma", dg, wdg, 1e-4, 1e-4); check(nm + " dbeta", dbb, wdb, 1e-4, 1e-4);
}

// ---- attention ----
static void test_attention(u32 B, u32 N, u32 H, u32 hd, bool use_mask) {
    const u32 D = H * hd;
    auto qkv = randv((size_t)B * N * 3 * D, -1.5f, 1.5f), dout = randv((size_t)B * N * D);
    std::vector<float> mask(B * N, 1.0f);
    if (use_mask) { for (u32 t = N / 2; t < N; ++t) mask[t] = 0; if (B > 1) for (u32 t = 0; t < N; ++t) mask[N + t] = 0; }
    const float scale = 1.0f / std::sqrt((float)hd);
    std::vector<double> wout(B * N * D), wlse(B * H * N), wd(B * N * 3 * D, 0.0);
    for (u32 b = 0; b < B; ++b) for (u32 h = 0; h < H; ++h) {
        auto Q = [&](u32 t, u32 c) { return (double)qkv[((size_t)b * N + t) * 3 * D + h * hd + c]; };
        auto Kk = [&](u32 t, u32 c) { return (double)qkv[((size_t)b * N + t) * 3 * D + D + h * hd + c]; };
        auto V = [&](u32 t, u32 c) { return (double)qkv[((size_t)b * N + t) * 3 * D + 2 * D + h * hd + c]; };
        std::vector<double> P(N * N, 0.0);
        for (u32 i = 0; i < N; ++i) {
            double mx = -INFINITY; std::vector<double> s(N);
            for (u32 j = 0; j < N; ++j) { double d = 0; for (u32 c = 0; c < hd; ++c) d += Q(i, c) * Kk(j, c); s[j] = scale * d; if (mask[b * N + j] != 0) mx = std::max(mx, s[j]); }
            if (mx == -INFINITY) { for (u32 c = 0; c < hd; ++c) wout[((size_t)b * N + i) * D + h * hd + c] = 0; wlse[(b * H + h) * N + i] = -INFINITY; continue; }
            double l = 0; for (u32 j = 0; j < N; ++j) if (mask[b * N + j] != 0) l += std::exp(s[j] - mx);
            wlse[(b * H + h) * N + i] = mx + std::log(l);
            for (u32 j = 0; j < N; ++j) P[i * N + j] = mask[b * N + j] != 0 ? std::exp(s[j] - mx) / l : 0;
            for (u32 c = 0; c < hd; ++c) { double o = 0; for (u32 j = 0; j < N; ++j) o += P[i * N + j] * V(j, c); wout[((size_t)b * N + i) * D + h * hd + c] = o; }
        }
        // backward
        auto G = [&](u32 t, u32 c) { return (double)dout[((size_t)b * N + t) * D + h * hd + c]; };
        for (u32 i = 0; i < N; ++i) {
            double di = 0; for (u32 j = 0; j < N; ++j) { double dp = 0; for (u32 c = 0; c < hd; ++c) dp += G(i, c) * V(j, c); di += P[i * N + j] * dp; }
            for (u32 j = 0; j < N; ++j) {
                double dp = 0; for (u32 c = 0; c < hd; ++c) dp += G(i, c) * V(j, c);
                double ds = P[i * N + j] * (dp - di);
                for (u32 c = 0; c < hd; ++c) {
                    wd[((size_t)b * N + i) * 3 * D + h * hd + c] += scale * ds * Kk(j, c);
                    wd[((size_t)b * N + j) * 3 * D + D + h * hd + c] += scale * ds * Q(i, c);
                    wd[((size_t)b * N + j) * 3 * D + 2 * D + h * hd + c] += P[i * N + j] * G(i, c);
                }
            }
        }
    }
    const u32 P_ = hd <= 4 ? 4 : 8;
    u32 g = 1; while (g * P_ < hd) g *= 2;
    const u32 T = 128, rows = T / g, tiles = cdiv(N, rows), pitch = g * P_;
    const u32 kt = std::min(64u, 12288u / (2 * pitch + 2));
    std::vector<float> out(B * N * D, NAN), lse(B * H * N, NAN), delta(B * H * N, NAN), dqkv(B * N * 3 * D, NAN);
    const float* mp = use_mask ? mask.data() : nullptr;
    launch(P_ == 4 ? "attention_fwd_p4" : "attention_fwd_p8", d1(B * H * tiles), d1(T), (2 * kt * pitch + kt) * 4, [&] {
        if (P_ == 4) attention_fwd_p4(qkv.data(), mp, out.data(), lse.data(), N, H, hd, scale, g, kt);
        else attention_fwd_p8(qkv.data(), mp, out.data(), lse.data(), N, H, hd, scale, g, kt);
    });
    launch("attention_bwd_prep", d1(cdiv(B * N * H, 256)), d1(256), 0, [&] { attention_bwd_prep(out.data(), dout.data(), delta.data(), B, N, H, hd); });
    launch(P_ == 4 ? "attention_bwd_p4" : "attention_bwd_p8", d1(2 * B * H * tiles), d1(T), (2 * kt * pitch + 2 * kt) * 4, [&] {
        if (P_ == 4) attention_bwd_p4(qkv.data(), mp, lse.data(), delta.data(), dout.data(), dqkv.data(), N, H, hd, scale, g, kt);
        else attention_bwd_p8(qkv.data(), mp, lse.data(), delta.data(), dout.data(), dqkv.data(), N, H, hd, scale, g, kt);
    });
    char nm[100]; snprintf(nm, sizeof nm, "attention B%u N%u H%u hd%u mask%d (g%u kt%u)", B, N, H, hd, use_mask, g, kt);
    check(std::string(nm) + " out", out, wout, 1e-5, 1e-4);
    check(std::string(nm) + " lse", lse, wlse, 1e-5, 1e-5);
    check(std::string(nm) + " dqkv", dqkv, wd, 1e-5, 1e-4);
}

// ---- philox ----
static void test_random() {
    struct { uint4 c; u32 k0, k1; uint4 w; } kat[] = {
        {{0, 0, 0, 0}, 0, 0, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{~0u, ~0u, ~0u, ~0u}, ~0u, ~0u, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, 0xa4093822, 0x299f31d0, {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    bool ok = true;
    for (auto& k : kat) { uint4 r = philox4x32_10(k.c, k.k0, k.k1); ok &= r.x == k.w.x && r.y == k.w.y && r.z == k.w.z && r.w == k.w.w; }
    printf("%s philox known answers\n", ok ? "ok  " : "FAIL"); failures += !ok;
    // the stream: n = 11 (partial block), offset near 2^64 to carry
    const u32 n = 11; const u64 seed = 0x123456789abcdefULL, offset = ~0ULL - 1;
    std::vector<float> nf(n), uf(n);
    launch("normal_fill", d1(1), d1(256), 0, [&] { normal_fill(nf.data(), n, seed, offset); });
    launch("uniform_fill", d1(1), d1(256), 0, [&] { uniform_fill(uf.data(), n, seed, offset, -2.0f, 3.0f); });
    std::vector<double> wn(n);
    std::vector<float> wu(n);
    for (u32 blk = 0; blk * 4 < n; ++blk) {
        unsigned __int128 ctr = (unsigned __int128)offset + blk;
        uint4 w = philox4x32_10(make_uint4((u32)ctr, (u32)(ctr >> 32), (u32)(ctr >> 64), 0), (u32)seed, (u32)(seed >> 32));
        u32 ws[4] = {w.x, w.y, w.z, w.w}; float u[4];
        for (int q = 0; q < 4; ++q) u[q] = ((float)(ws[q] >> 8) + 0.5f) * (1.0f / 16777216.0f);
        for (int q = 0; q < 4 && blk * 4 + q < n; ++q) {
            wu[blk * 4 + q] = -2.0f + 5.0f * u[q];
            int p = q & ~1; double r = std::sqrt(-2.0 * std::log((double)u[p])); double t = 2 * M_PI * u[p + 1];
            wn[blk * 4 + q] = (q & 1) ? r * std::sin(t) : r * std::cos(t);
        }
    }
    check_bits("uniform_fill (carry, partial block)", uf, wu);
    // Box-Muller's logf and sincosf are the device's: the contract allows a few ulp.
    check("normal_fill (carry, partial block)", nf, wn, 1e-5, 1e-5);
}


#include "families.h"

// launch_error refuses each limit it knows, and only past it (records as ptxas might report).
static void test_launch_limits() {
    const KernelLimits plain{"plain", 0, 32, 0}, bounded{"bounded", 256, 32, 1024}, heavy{"heavy", 0, 65, 16};
    struct { const KernelLimits& k; dim3e grid, block; size_t smem; bool ok; const char* what; } cases[] = {
        {plain, d1(1), d1(1024), 0, true, "1024 threads"},
        {plain, d1(1), d1(1025), 0, false, "1025 threads"},
        {bounded, d1(1), d1(512), 0, false, "512 threads past __launch_bounds__(256)"},
        {plain, d1(0x7fffffffu, 65535, 65535), d1(32), 0, true, "largest grid"},
        {plain, d1(1, 65536), d1(32), 0, false, "grid y 65536"},
        {plain, d1(1, 1, 65536), d1(32), 0, false, "grid z 65536"},
        {bounded, d1(1), d1(256), 48 * 1024 - 1024, true, "static + dynamic = 48 KiB"},
        {bounded, d1(1), d1(256), 48 * 1024 - 1023, false, "static + dynamic past 48 KiB"},
        {heavy, d1(1), d1(1024), 0, false, "65 registers (72 per thread allocated) x 1024 threads"},
        {heavy, d1(1), d1(896), 0, true, "65 registers x 896 threads"},
    };
    for (const auto& c : cases) {
        const bool ok = launch_error(c.k, c.grid, c.block, c.smem).empty();
        printf("%s launch limits: %s %s\n", ok == c.ok ? "ok  " : "FAIL", c.what, c.ok ? "accepted" : "refused");
        failures += ok != c.ok;
    }
}

int main() {
    test_launch_limits();
    test_families();
    test_gemm(1, 33, 70, 17, false, false, 1, 0, 0, false, 2, 1);
    test_gemm(2, 130, 70, 40, true, true, 0.5f, 1.5f, 2, true, 2, 1);
    test_gemm(1, 64, 40, 500, true, false, 1, 0, 1, false, 2, 3);
    test_gemm(1, 7, 9, 33, false, true, 1, 0.5f, 2, false, 2, 1);
    test_gemm(1, 5, 4, 0, true, false, 1, 0.5f, 1, false, 2, 1);
    test_random();
    test_gemm(1, 7, 5, 3, false, false, 1, 0, 0, false, false, 1);
    test_gemm(1, 33, 70, 17, true, false, 0.5f, 0, 1, false, false, 1);
    test_gemm(1, 33, 70, 17, false, true, 1, 1.5f, 2, false, false, 1);
    test_gemm(3, 65, 33, 40, true, true, 1, 0.5f, 1, true, false, 1);
    test_gemm(2, 130, 129, 20, false, true, 2, 0, 2, false, true, 1);
    test_gemm(2, 131, 140, 9, true, false, 1, 1, 0, true, true, 1);
    test_gemm(1, 64, 64, 1000, true, false, 1, 0, 0, false, false, 4);
    test_gemm(2, 20, 9, 300, false, false, 1, 0.5f, 2, false, false, 3);
    test_gemm(1, 9, 130, 301, true, true, 1, 0, 1, false, true, 5);
    test_gemm(1, 5, 4, 0, false, false, 1, 0.5f, 1, false, false, 1);
    test_bias_grad(1, 5, false); test_bias_grad(300, 70, true); test_bias_grad(1000, 33, false);
    test_layer_norm(1, 5, false, false); test_layer_norm(33, 64, true, true); test_layer_norm(70, 300, true, false); test_layer_norm(9, 129, false, true);
    // 768 columns fill the 48 KiB of dynamic shared memory, which with the static bytes needs
    // the opt-in (the launch check refuses it otherwise).
    test_layer_norm(3, 768, true, true);
    test_attention(2, 1, 2, 4, false);
    test_attention(2, 7, 3, 4, true);
    test_attention(2, 33, 2, 3, true);
    test_attention(2, 33, 2, 8, true);
    test_attention(2, 70, 2, 4, true);   // two key tiles, one query tile
    test_attention(2, 40, 2, 32, true);  // g = 4
    test_attention(1, 21, 1, 20, true);  // g = 4 with padding dims
    test_attention(1, 9, 1, 100, false); // g = 16, kt < N? 
    // Again with the blocks in reverse order: the bit-exact results must not move when another
    // block of a reduction arrives last and adds the partials.
    g_blocks_reversed = true;
    printf("-- blocks in reverse order\n");
    test_families();
    test_bias_grad(300, 70, true); test_bias_grad(1000, 33, false);
    failures += g_launch_errors;
    printf("%d failures\n", failures);
    return failures != 0;
}
