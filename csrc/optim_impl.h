/* Optimizer kernels for one element type. optim.c includes this file once per type,
 * with REAL (float or double) and TAG (f32 or f64) defined.
 *
 * The maths is torch.optim's (plus L1), written here independently of fastopt/_math.py (the
 * Numba kernels' source) and checked against the same NumPy reference. Every constant
 * comes from `h`, in REAL, so a float loop never widens to double. The structural
 * flags are compile-time constants in each variant below, so their branches vanish
 * and the element loop vectorises.
 */

/* g / scale (or g * (+-1) without a grad_scale), + wd * p, + l1 * sign(p). */
FO_INLINE REAL SFX(prepare_grad)(REAL p, REAL g, const REAL *h, const int scaled)
{
    const REAL zero = h[FO_ZERO];
    g = scaled ? g / h[FO_SCALE] : g * h[FO_SCALE];
    if (h[FO_WD] != zero)
        g = g + h[FO_WD] * p;
    if (h[FO_L1] != zero) {
        const REAL l1 = h[FO_L1];
        g = g + (p > zero ? l1 : (p < zero ? -l1 : zero * p)); /* sign(p): 0 at 0, NaN */
    }
    return g;
}

/* One chunk: n elements of param p, grad g and state slots s0..s2 (NULL if unused).
   rule, flag0, flag1, scaled are constants at every call site. */
FO_INLINE void SFX(run_chunk)(const int rule, const int flag0, const int flag1,
                              const int scaled, REAL *restrict p, const REAL *restrict g,
                              REAL *restrict s0, REAL *restrict s1, REAL *restrict s2,
                              const int64_t n, const REAL *restrict hyper)
{
    REAL h[FO_HYPER_LEN];
    for (int k = 0; k < FO_HYPER_LEN; k++)
        h[k] = hyper[k];
    const REAL zero = h[FO_ZERO];

    for (int64_t i = 0; i < n; i++) {
        REAL pi = p[i];
        if (rule == FO_RULE_SGD) {
            REAL gi = SFX(prepare_grad)(pi, g[i], h, scaled);
            if (flag0) { /* momentum */
                const REAL momentum = h[FO_SGD_MOMENTUM];
                REAL buf = h[FO_SGD_FIRST] != zero
                               ? gi : momentum * s0[i] + h[FO_SGD_DAMPENED] * gi;
                s0[i] = buf;
                gi = flag1 ? gi + momentum * buf : buf; /* flag1: nesterov */
            }
            p[i] = pi - h[FO_SGD_LR] * gi;
        } else if (rule == FO_RULE_RMSPROP) {
            const REAL gi = SFX(prepare_grad)(pi, g[i], h, scaled);
            const REAL alpha = h[FO_RMS_ALPHA], one_minus_alpha = h[FO_RMS_ONE_MINUS_ALPHA];
            const REAL square_avg = alpha * s0[i] + one_minus_alpha * gi * gi;
            REAL avg;
            s0[i] = square_avg;
            if (flag0) { /* centered */
                const REAL grad_avg = alpha * s1[i] + one_minus_alpha * gi;
                s1[i] = grad_avg;
                avg = sqrt(square_avg - grad_avg * grad_avg) + h[FO_RMS_EPS];
            } else {
                avg = sqrt(square_avg) + h[FO_RMS_EPS];
            }
            if (flag1) { /* momentum */
                const REAL buf = h[FO_RMS_MOMENTUM] * s2[i] + gi / avg;
                s2[i] = buf;
                p[i] = pi - h[FO_RMS_LR] * buf;
            } else {
                p[i] = pi - h[FO_RMS_LR] * gi / avg;
            }
        } else if (rule == FO_RULE_ADAM) {
            pi = pi * h[FO_ADAM_DECAY]; /* AdamW's 1 - lr*wd; exactly 1 for Adam */
            const REAL gi = SFX(prepare_grad)(pi, g[i], h, scaled);
            const REAL exp_avg = h[FO_ADAM_BETA1] * s0[i] + h[FO_ADAM_ONE_MINUS_BETA1] * gi;
            const REAL exp_avg_sq =
                h[FO_ADAM_BETA2] * s1[i] + h[FO_ADAM_ONE_MINUS_BETA2] * gi * gi;
            REAL second = exp_avg_sq;
            s0[i] = exp_avg;
            s1[i] = exp_avg_sq;
            if (flag0) { /* amsgrad; as torch.maximum, a NaN wins */
                const REAL old = s2[i];
                second = old >= exp_avg_sq ? old : exp_avg_sq;
                s2[i] = second;
            }
            const REAL denom = sqrt(second) / h[FO_ADAM_BC2_SQRT] + h[FO_ADAM_EPS];
            p[i] = pi - h[FO_ADAM_STEP_SIZE] * exp_avg / denom;
        } else if (rule == FO_RULE_ADAGRAD) {
            const REAL gi = SFX(prepare_grad)(pi, g[i], h, scaled);
            const REAL state_sum = s0[i] + gi * gi;
            s0[i] = state_sum;
            p[i] = pi - h[FO_ADAGRAD_CLR] * gi / (sqrt(state_sum) + h[FO_ADAGRAD_EPS]);
        } else if (rule == FO_RULE_VELOCITY) { /* v = mu*v - lr*g ; p += v */
            const REAL gi = SFX(prepare_grad)(pi, g[i], h, scaled);
            const REAL momentum = h[FO_VEL_MOMENTUM], lr = h[FO_VEL_LR];
            const REAL velocity = momentum * s0[i] - lr * gi;
            s0[i] = velocity;
            p[i] = flag0 ? pi + (momentum * velocity - lr * gi) : pi + velocity; /* nesterov */
        } else if (rule == FO_RULE_RMSPROP_SQ) {
            const REAL gi = SFX(prepare_grad)(pi, g[i], h, scaled);
            const REAL cache = h[FO_RMS_ALPHA] * s0[i] + h[FO_RMS_ONE_MINUS_ALPHA] * (gi * gi);
            s0[i] = cache;
            p[i] = pi - h[FO_RMS_LR] * gi / (sqrt(cache) + h[FO_RMS_EPS]);
        } else { /* FO_RULE_ADAM_SQ */
            const REAL gi = SFX(prepare_grad)(pi, g[i], h, scaled);
            const REAL m = h[FO_ADAM_BETA1] * s0[i] + h[FO_ADAM_ONE_MINUS_BETA1] * gi;
            const REAL v = h[FO_ADAM_BETA2] * s1[i] + h[FO_ADAM_ONE_MINUS_BETA2] * (gi * gi);
            s0[i] = m;
            s1[i] = v;
            if (flag0) /* corrected moments (cs231n, nnfs) */
                p[i] = pi - h[FO_ADAM_SQ_LR] * (m / h[FO_ADAM_SQ_BC1]) /
                                (sqrt(v / h[FO_ADAM_SQ_BC2]) + h[FO_ADAM_SQ_EPS]);
            else /* scikit-learn: lr_t in FO_ADAM_SQ_LR */
                p[i] = pi - h[FO_ADAM_SQ_LR] * m / (sqrt(v) + h[FO_ADAM_SQ_EPS]);
        }
    }
}

typedef void (*SFX(chunk_fn))(REAL *restrict, const REAL *restrict, REAL *restrict,
                              REAL *restrict, REAL *restrict, int64_t,
                              const REAL *restrict);

/* The compiled variants: (rule, flag0, flag1, scaled). Flags a rule does not use
   are always 0, so those combinations are not built. */
#define FO_VARIANTS(X)                                                            \
    X(0, 0, 0, 0) X(0, 0, 0, 1) X(0, 0, 1, 0) X(0, 0, 1, 1)                      \
    X(0, 1, 0, 0) X(0, 1, 0, 1) X(0, 1, 1, 0) X(0, 1, 1, 1)                      \
    X(1, 0, 0, 0) X(1, 0, 0, 1) X(1, 0, 1, 0) X(1, 0, 1, 1)                      \
    X(1, 1, 0, 0) X(1, 1, 0, 1) X(1, 1, 1, 0) X(1, 1, 1, 1)                      \
    X(2, 0, 0, 0) X(2, 0, 0, 1) X(2, 1, 0, 0) X(2, 1, 0, 1)                      \
    X(3, 0, 0, 0) X(3, 0, 0, 1)                                                  \
    X(4, 0, 0, 0) X(4, 0, 0, 1) X(4, 1, 0, 0) X(4, 1, 0, 1)                      \
    X(5, 0, 0, 0) X(5, 0, 0, 1)                                                  \
    X(6, 0, 0, 0) X(6, 0, 0, 1) X(6, 1, 0, 0) X(6, 1, 0, 1)

#define FO_DEFINE_VARIANT(rule, f0, f1, sc)                                      \
    FO_CLONES void SFX(fo_chunk_##rule##f0##f1##sc)(                             \
        REAL *restrict p, const REAL *restrict g, REAL *restrict s0,             \
        REAL *restrict s1, REAL *restrict s2, int64_t n, const REAL *restrict h) \
    {                                                                            \
        SFX(run_chunk)(rule, f0, f1, sc, p, g, s0, s1, s2, n, h);                \
    }
FO_VARIANTS(FO_DEFINE_VARIANT)

#define FO_TABLE_ENTRY(rule, f0, f1, sc) \
    [(rule) * 8 + (f0) * 4 + (f1) * 2 + (sc)] = SFX(fo_chunk_##rule##f0##f1##sc),
static const SFX(chunk_fn) SFX(variants)[FO_N_VARIANTS] = {FO_VARIANTS(FO_TABLE_ENTRY)};
#undef FO_VARIANTS
#undef FO_DEFINE_VARIANT
#undef FO_TABLE_ENTRY

int SFX(fo_optim)(int variant, const int64_t *addresses, const int64_t *chunks,
                  int64_t n_chunks, const REAL *hyper, int threads)
{
    if (variant < 0 || variant >= FO_N_VARIANTS || !SFX(variants)[variant])
        return -1;
    const SFX(chunk_fn) chunk = SFX(variants)[variant];
    (void)threads; /* unused in a serial build */

#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t *row = chunks + 3 * c;
        const int64_t *a = addresses + 5 * row[0];
        const int64_t start = row[1];
        REAL *slot[3];
        for (int k = 0; k < 3; k++)
            slot[k] = a[2 + k] ? FO_PTR(REAL, a[2 + k]) + start : NULL;
        chunk(FO_PTR(REAL, a[0]) + start, FO_PTR(const REAL, a[1]) + start,
              slot[0], slot[1], slot[2], row[2] - start, hyper);
    }
    return 0;
}

/* Float64 sum of squares per chunk; four accumulators in a fixed order. */
FO_CLONES void SFX(fo_sumsq_chunk)(const REAL *restrict x, int64_t n, double *out)
{
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            acc[k] += (double)x[i + k] * (double)x[i + k];
    for (; i < n; i++)
        acc[0] += (double)x[i] * (double)x[i];
    *out = (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

void SFX(fo_sumsq)(const int64_t *addresses, const int64_t *chunks, int64_t n_chunks,
                   double *out)
{
#pragma omp parallel for schedule(static) if (n_chunks >= FO_PARALLEL_MIN_CHUNKS)
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t *row = chunks + 3 * c;
        SFX(fo_sumsq_chunk)(FO_PTR(const REAL, addresses[row[0]]) + row[1],
                            row[2] - row[1], out + c);
    }
}

void SFX(fo_finite)(const int64_t *addresses, const int64_t *chunks, int64_t n_chunks,
                    unsigned char *out)
{
#pragma omp parallel for schedule(static) if (n_chunks >= FO_PARALLEL_MIN_CHUNKS)
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t *row = chunks + 3 * c;
        const REAL *x = FO_PTR(const REAL, addresses[row[0]]) + row[1];
        const int64_t n = row[2] - row[1];
        REAL acc = 0;
        for (int64_t i = 0; i < n; i++)
            acc += x[i] - x[i]; /* stays 0 while finite; NaN after an Inf or NaN */
        out[c] = acc == 0;
    }
}
