// Part of test.cpp: the memory, elementwise, embedding, flow, ODE, optimiser and loss kernels.
// References are f32 in the CPU backend's order wherever the contract promises the CPU's bits
// (memory, elementwise, embedding, fm_prepare and fm_loss's dpred, ode_stage, adamw_step;
// docs/architecture.md#kernel-contract) or an order (embedding_bwd, "in order of i"), and the
// kernels' own documented order for the fixed-order reductions (order.h); check_bits then
// compares bit for bit. A tolerance remains only where the device math library decides the last
// bits (sincosf, expf, log1pf, powf), which the contract leaves to the backend.

static void test_memory() {
    auto src = randv(7 * 9), dst = randv(5 * 12);
    auto want = dst;
    for (int r = 0; r < 5; ++r) for (int c = 0; c < 4; ++c) want[r * 12 + 6 + c] += src[r * 9 + 3 + c];
    launch("copy_cols", d1(1), d1(256), 0, [&] { copy_cols(src.data(), dst.data(), 5, 4, 9, 3, 12, 6, 1); });
    check_bits("copy_cols accumulate", dst, want);
    std::vector<u32> idx = {3, 0, 9, 2};  // 9 is past the 4-row table
    std::vector<float> tab = randv(4 * 5), g(4 * 5, NAN), wg(20);
    for (int i = 0; i < 4; ++i) for (int c = 0; c < 5; ++c) wg[i * 5 + c] = idx[i] < 4 ? tab[idx[i] * 5 + c] : 0.0f;
    launch("gather_rows", d1(1), d1(256), 0, [&] { gather_rows(tab.data(), idx.data(), g.data(), 20, 5, 4); });
    check_bits("gather_rows", g, wg);
    std::vector<float> sc = randv(4 * 5), t2 = randv(4 * 5), ws = t2;
    for (int i = 0; i < 4; ++i) if (idx[i] < 4) for (int c = 0; c < 5; ++c) ws[idx[i] * 5 + c] = sc[i * 5 + c];
    launch("scatter_rows", d1(1), d1(256), 0, [&] { scatter_rows(sc.data(), idx.data(), t2.data(), 20, 5, 4); });
    check_bits("scatter_rows", t2, ws);
    std::vector<float> e(1000, NAN);
    launch("embedding_fwd", d1(2), d1(256), 0, [&] { embedding_fwd(tab.data(), idx.data(), e.data(), 20, 5, 4); });
    e.resize(20);
    check_bits("embedding_fwd", e, wg);
    std::vector<float> f(1000, NAN), wf(999, 7.0f);
    launch("fill", d1(2), d1(256), 0, [&] { fill(f.data(), 999, 7.0f); });
    f.resize(999);
    check_bits("fill (n = 999)", f, wf);
    auto b = randv(1000);
    std::vector<float> o(1000, NAN);
    launch("copy_words", d1(1), d1(256), 0, [&] { copy_words(reinterpret_cast<const u32*>(b.data()), reinterpret_cast<u32*>(o.data()), 1000); });
    check_bits("copy_words", o, b);
}

static void test_elementwise() {
    const u32 n = 1000;
    auto a = randv(n), b = randv(n), y = randv(n);
    a[3] = -0.0f;  // relu_fwd keeps a -0 (a select), which only a bit comparison sees
    std::vector<float> o(n), w(n);
    launch("add", d1(2), d1(256), 0, [&] { add(a.data(), b.data(), o.data(), n); });
    for (u32 i = 0; i < n; ++i) w[i] = a[i] + b[i];
    check_bits("add", o, w);
    for (u32 i = 0; i < n; ++i) w[i] = y[i] + 0.3f * a[i];  // a multiply, then an add: no FMA
    launch("axpy", d1(1), d1(256), 0, [&] { axpy(a.data(), y.data(), n, 0.3f); });
    check_bits("axpy", y, w);
    launch("scale", d1(1), d1(256), 0, [&] { scale(a.data(), o.data(), n, -1.5f); });
    for (u32 i = 0; i < n; ++i) w[i] = -1.5f * a[i];
    check_bits("scale", o, w);
    launch("relu_fwd", d1(3), d1(256), 0, [&] { relu_fwd(a.data(), o.data(), n); });
    for (u32 i = 0; i < n; ++i) w[i] = a[i] < 0 ? 0.0f : a[i];
    check_bits("relu_fwd", o, w);
    for (u32 acc : {0u, 1u}) {
        for (u32 i = 0; i < n; ++i) { const float g = a[i] > 0 ? b[i] : 0.0f; w[i] = acc ? y[i] + g : g; }
        launch("relu_bwd", d1(4), d1(256), 0, [&] { relu_bwd(a.data(), b.data(), y.data(), n, acc); });
        check_bits("relu_bwd accumulate " + std::to_string(acc), y, w);
    }
}

// ids with repeats, some past the table; one block per row as the backend launches it, and a
// smaller grid (the kernel strides over rows).
static void test_embedding_bwd(u32 n, u32 dim, u32 rows, u32 grid, bool acc) {
    std::vector<u32> ids(n);
    for (auto& i : ids) i = rng() % (rows + 1);
    auto dout = randv((size_t)n * dim), dt = randv(rows * dim);
    const auto want = embedding_bwd_ref(dout, ids, dim, dt, acc);
    if (!acc) std::fill(dt.begin(), dt.end(), NAN);
    launch("embedding_bwd", d1(grid), d1(256), 0, [&] { embedding_bwd(dout.data(), ids.data(), dt.data(), n, dim, rows, acc); });
    char nm[100];
    snprintf(nm, sizeof nm, "embedding_bwd n%u dim%u rows%u grid%u acc%d", n, dim, rows, grid, acc);
    check_bits(nm, dt, want);
}

// The phases go through sincosf, whose last bits are the device library's: fourier_fwd within a
// tolerance of f64. fourier_bwd's documented f64 order is checked bit for bit with the host's
// sin and cos standing in for the device's (on a GPU it agrees to rounding only). The backend
// caps the grid's height at 65 535 column tiles; `tiles` below the number of tiles tests the
// kernel's loop over the rest.
static void test_fourier(u32 rows, u32 in_dim, u32 half, u32 tiles) {
    auto x = randv(rows * in_dim), fr = randv(in_dim * half), dout = randv(rows * 2 * half);
    std::vector<float> out(rows * 2 * half);
    std::vector<double> w(rows * 2 * half);
    for (u32 r = 0; r < rows; ++r) for (u32 j = 0; j < half; ++j) {
        double z = 0;
        for (u32 i = 0; i < in_dim; ++i) z += (double)x[r * in_dim + i] * fr[i * half + j];
        z *= 2 * M_PI;
        w[r * 2 * half + j] = std::sin(z); w[r * 2 * half + half + j] = std::cos(z);
    }
    std::string nm = " rows" + std::to_string(rows) + " in_dim" + std::to_string(in_dim) + " half" + std::to_string(half);
    launch("fourier_fwd", d1(cdiv(rows * half, 256)), d1(256), 0, [&] { fourier_fwd(x.data(), fr.data(), out.data(), rows, in_dim, half); });
    check("fourier_fwd" + nm, out, w, 1e-5, 1e-5);
    std::vector<float> df(in_dim * half, NAN);
    u32 chunks = std::clamp(cdiv(rows, 256), 1u, 256u);
    launch("fourier_bwd", d1(chunks, tiles), d1(256), 0, [&] { fourier_bwd(x.data(), fr.data(), dout.data(), df.data(), g_partd.data(), &g_ticket, rows, in_dim, half, 0); });
    check_bits("fourier_bwd" + nm + " tiles" + std::to_string(tiles) + " (host sin, cos)", df, fourier_bwd_ref(x, fr, dout, rows, in_dim, half, chunks));
}

static void test_flow() {
    const u32 S = 7, per = 13, n = S * per;
    const float sigma_min = 1e-3f, keep = 1.0f - sigma_min;
    auto x0 = randv(n), x1 = randv(n), t = randv(S, 0, 1);
    std::vector<float> xt(n), u(n), wx(n), wu(n);
    for (u32 i = 0; i < n; ++i) {
        const float ts = t[i / per], a = 1.0f - keep * ts;
        wx[i] = a * x0[i] + ts * x1[i];
        wu[i] = x1[i] - keep * x0[i];
    }
    launch("fm_prepare", d1(1), d1(256), 0, [&] { fm_prepare(x0.data(), x1.data(), t.data(), xt.data(), u.data(), n, per, sigma_min); });
    check_bits("fm_prepare xt", xt, wx); check_bits("fm_prepare u", u, wu);
    for (bool m : {false, true}) for (u32 n : {0u, 5u, 40000u}) {
        auto p = randv(n), y = randv(n), mk = randv(n, 0, 1);
        for (auto& v : mk) v = v < 0.3f ? 0.0f : 1.0f;
        const u32 G = std::clamp(cdiv(n, 16384), 1u, 16u);
        const double weight = m ? block_strided_ref(0, n, [&](u32 i) { return (double)mk[i]; }) : n;
        const double inv = 1.0 / std::max(weight, 1.0);
        const float gs = (float)(2.0 * inv);
        std::vector<float> loss(1, NAN), dp(n), wd(n);
        for (u32 i = 0; i < n; ++i) wd[i] = m ? (gs * mk[i]) * (p[i] - y[i]) : gs * (p[i] - y[i]);
        const double total = grid_sum_ref(n, G, [&](u32 i) {
            const float d = p[i] - y[i];
            return (double)(m ? (mk[i] * d) * d : d * d);
        });
        launch("fm_loss", d1(G), d1(256), 0, [&] { fm_loss(p.data(), y.data(), m ? mk.data() : nullptr, loss.data(), dp.data(), g_partd.data(), &g_ticket, n); });
        std::string nm = "fm_loss n" + std::to_string(n) + (m ? " mask" : "") + " G" + std::to_string(G);
        check_bits(nm + " loss", loss, {(float)(total * inv)}); check_bits(nm + " dpred", dp, wd);
    }
}

static void test_ode() {
    const u32 S = 9, per = 37, n = S * per, stages = 7;
    auto x = randv(n), k = randv(stages * n), h = randv(S, 0.01f, 0.2f), xn = randv(n);
    k[3 * n + 5] = NAN;  // stage 3 has coefficient 0: must be skipped
    OdeCoeffs co{};
    const float cs[7] = {0.1f, -0.2f, 0.3f, 0.0f, 0.5f, 0.25f, -0.125f};
    for (int j = 0; j < 7; ++j) co.c[j] = cs[j];
    auto combo = [&](u32 i) { float a = 0.0f; for (u32 j = 0; j < stages; ++j) if (cs[j] != 0) a += cs[j] * k[j * n + i]; return a; };
    std::vector<float> out(n), w(n), we(S);
    for (u32 i = 0; i < n; ++i) w[i] = x[i] + h[i / per] * combo(i);
    launch("ode_stage", d1(2), d1(256), 0, [&] { ode_stage(x.data(), k.data(), h.data(), out.data(), co, stages, n, per); });
    check_bits("ode_stage", out, w);
    // dopri5_error: lanes stride over the sample in f64, then the warp butterfly.
    for (u32 s = 0; s < S; ++s) {
        std::array<double, 32> lanes{};
        for (u32 e = 0; e < per; ++e) {
            const u32 i = s * per + e;
            const float tol = 1e-3f + 1e-3f * std::fmax(std::fabs(x[i]), std::fabs(xn[i]));
            const double r = (double)(combo(i) / tol);
            lanes[e % 32] += r * r;
        }
        we[s] = (float)(std::fabs((double)h[s]) * std::sqrt(butterfly_ref(lanes) / (double)per));
    }
    std::vector<float> err(S);
    launch("dopri5_error", d1(cdiv(S, 8)), d1(256), 0, [&] { dopri5_error(x.data(), xn.data(), k.data(), h.data(), err.data(), co, stages, n, per, 1e-3f, 1e-3f); });
    check_bits("dopri5_error", err, we);
    // accept: err values chosen around 1, h with one finished sample. The step factor goes
    // through powf (the device's: a tolerance for h); x and t are bit for bit.
    std::vector<float> e2 = {0.5f, 2.0f, 0.0f, NAN, 1.0f, 0.9f, 3.0f, 0.1f, 0.2f}, t(S, 0.5f), hh(S, 0.1f);
    hh[6] = 0.0f; t[7] = 0.95f;
    auto xa = x, wx = x;
    std::vector<float> wt(S);
    std::vector<double> wh(S);
    for (u32 s = 0; s < S; ++s) {
        float hs = hh[s], ts = t[s], ee = e2[s]; wt[s] = ts; wh[s] = hs; if (hs <= 0) continue;
        if (ee <= 1) { for (u32 q = 0; q < per; ++q) wx[s * per + q] = xn[s * per + q]; ts = ts + hs; if (1.0f - ts <= 1e-6f) ts = 1.0f; }
        float f = std::fmin(std::fmax(0.9f * std::pow(ee, -0.2f), 0.2f), 10.0f);
        wt[s] = ts; wh[s] = std::fmax(std::fmin(hs * f, 1.0f - ts), 0.0f);
    }
    launch("dopri5_accept", d1(2), d1(256), 0, [&] { dopri5_accept(xa.data(), xn.data(), e2.data(), t.data(), hh.data(), S, per, 1.0f); });
    check_bits("dopri5_accept x", xa, wx); check_bits("dopri5_accept t", t, wt); check("dopri5_accept h", hh, wh, 1e-7, 1e-5);
}

static void test_optim_loss() {
    for (u32 n : {0u, 300u, 70001u}) {
        auto x = randv(n);
        const u32 G = std::clamp(cdiv(n, 8192), 1u, 64u);
        std::vector<float> out(1, 2.5f);
        const double sq = grid_sum_ref(n, G, [&](u32 i) { return (double)(x[i] * x[i]); });
        launch("sum_squares", d1(G), d1(256), 0, [&] { sum_squares(x.data(), out.data(), g_partd.data(), &g_ticket, n, 1); });
        check_bits("sum_squares accumulate n" + std::to_string(n) + " G" + std::to_string(G), out, {(float)(2.5 + sq)});
        const double s = grid_sum_ref(n, G, [&](u32 i) { return (double)x[i]; });
        launch("reduce_sum", d1(G), d1(256), 0, [&] { reduce_sum(x.data(), out.data(), g_partd.data(), &g_ticket, n, 0.5f); });
        check_bits("reduce_sum n" + std::to_string(n), out, {(float)(s * 0.5)});
        // expf and log1pf are the device's: a tolerance.
        auto z = randv(n, -6, 6), y = randv(n, 0, 1);
        std::vector<float> l(1), dz(n);
        double wl = 0;
        std::vector<double> wdz(n);
        double inv = 1.0 / std::max(n, 1u);
        for (u32 i = 0; i < n; ++i) { double zz = z[i]; wl += std::max(zz, 0.0) - zz * y[i] + std::log1p(std::exp(-std::fabs(zz))); wdz[i] = (1 / (1 + std::exp(-zz)) - y[i]) * inv; }
        launch("bce_with_logits", d1(G), d1(256), 0, [&] { bce_with_logits(z.data(), y.data(), l.data(), dz.data(), g_partd.data(), &g_ticket, n); });
        check("bce loss n" + std::to_string(n), l, {wl * inv}, 1e-6, 1e-5); check("bce dz n" + std::to_string(n), dz, wdz, 1e-7, 1e-5);
    }
    // adamw_step as the CPU computes it (src/backend/cpu/optim.rs), clipped by 2 / sqrt(9).
    const u32 n = 777;
    auto p = randv(n), g = randv(n), m = randv(n), v = randv(n, 0, 1);
    float ns = 9.0f;
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
    const u32 step = 3;
    const double bc1 = 1 - std::pow((double)b1, step), bc2 = 1 - std::pow((double)b2, step);
    const float lr_hat = (float)(lr / bc1), isb = (float)(1 / std::sqrt(bc2)), decay = 1 - lr * wd;
    const float clip = 2.0f / std::sqrt(ns), c1 = 1 - b1, c2 = 1 - b2;
    std::vector<float> wp(n), wm(n), wv(n);
    for (u32 i = 0; i < n; ++i) {
        const float gg = g[i] * clip;
        wm[i] = b1 * m[i] + c1 * gg;
        wv[i] = b2 * v[i] + c2 * (gg * gg);
        wp[i] = p[i] * decay - lr_hat * wm[i] / (std::sqrt(wv[i]) * isb + eps);
    }
    launch("adamw_step", d1(4), d1(256), 0, [&] { adamw_step(p.data(), g.data(), m.data(), v.data(), &ns, n, lr_hat, isb, decay, b1, b2, eps, 2.0f); });
    check_bits("adamw p", p, wp); check_bits("adamw m", m, wm); check_bits("adamw v", v, wv);
}

static void test_families() {
    test_memory();
    test_elementwise();
    test_embedding_bwd(1000, 37, 13, 13, true);
    test_embedding_bwd(1000, 37, 13, 5, false);
    test_embedding_bwd(300, 300, 4, 4, false);  // two column chunks
    test_embedding_bwd(0, 8, 3, 3, true);
    test_fourier(300, 1, 40, 2);
    test_fourier(300, 6, 70, 3);
    test_fourier(700, 5, 70, 2);  // fewer column tiles than columns need, three row chunks
    test_flow();
    test_ode();
    test_optim_loss();
    if (g_ticket != 0) { printf("FAIL ticket left at %u\n", g_ticket); failures++; }
}
