/* Optimizer kernels for one element type. optim.c includes this file once per type,
 * with REAL (float or double) and TAG (f32 or f64) defined.
 *
 * The per-element maths of each rule is its body in rules/NAME.h, a C transliteration
 * of the rule's `update` in fastopt/rules/NAME.py, checked against the same NumPy
 * reference (bit for bit: same operations in the same order, no FMA contraction). The
 * scalar indices and the table of variants come from fo_rules.h, generated from the
 * rule declarations.
 */

/* g / scale (or g * (+-1) without a grad_scale), + wd * p, + l1 * sign(p); the decay
   terms only in the `decayed` variants. */
FO_INLINE REAL SFX(prepare_grad)(REAL p, REAL g, const REAL *h, const int scaled,
                                 const int decayed)
{
    const REAL zero = h[FO_ZERO];
    g = scaled ? g / h[FO_SCALE] : g * h[FO_SCALE];
    if (decayed) {
        if (h[FO_WEIGHT_DECAY] != zero)
            g = g + h[FO_WEIGHT_DECAY] * p;
        if (h[FO_L1] != zero) {
            const REAL l1 = h[FO_L1];
            g = g + (p > zero ? l1 : (p < zero ? -l1 : zero * p)); /* sign(p): 0 at 0, NaN */
        }
    }
    return g;
}

/* torch's lerp(a, b, weight): a + weight*(b - a) when small (|weight| < 0.5), else
   b - (b - a)*complement (fastopt.rules._spec.lerp_element). */
FO_INLINE REAL SFX(lerp)(REAL a, REAL b, REAL weight, REAL complement, int small)
{
    const REAL d = b - a;
    return small ? a + weight * d : b - d * complement;
}

/* Each rule's body, csrc/rules/NAME.h: FO_ELEMENT(NAME) { ... } returns the new param
   from the (decayed) param p and the prepared gradient g, and writes element i of the
   state slots it uses. f0 and f1 are the rule's structural flags. */
#define FO_ELEMENT(rule)                                                             \
    FO_INLINE REAL SFX(rule##_element)(const int f0, const int f1, const REAL p,     \
                                       const REAL g, REAL *restrict s0,              \
                                       REAL *restrict s1, REAL *restrict s2,         \
                                       const int64_t i, const REAL *restrict h)
#include "fo_rule_bodies.h"
#undef FO_ELEMENT

typedef void (*SFX(chunk_fn))(REAL *restrict, const REAL *restrict, REAL *restrict,
                              REAL *restrict, REAL *restrict, int64_t,
                              const REAL *restrict);

/* One function per compiled variant (fo_rules.h lists them): the flags are constants
   in each, so their branches vanish and the element loop vectorises. Every constant
   comes from `h`, in REAL, so a float loop never widens to double. */
#define FO_DEFINE_VARIANT(index, rule, f0, f1, sc, dec)                                \
    FO_CLONES void SFX(fo_chunk_##rule##_##f0##f1##sc##dec)(                          \
        REAL *restrict p, const REAL *restrict g, REAL *restrict s0,                  \
        REAL *restrict s1, REAL *restrict s2, int64_t n, const REAL *restrict hyper)  \
    {                                                                                 \
        REAL h[FO_HYPER_LEN];                                                         \
        for (int k = 0; k < FO_HYPER_LEN; k++)                                        \
            h[k] = hyper[k];                                                          \
        for (int64_t i = 0; i < n; i++) {                                             \
            const REAL pi = dec ? p[i] * h[FO_DECAY] : p[i];                          \
            p[i] = SFX(rule##_element)(f0, f1, pi,                                    \
                                       SFX(prepare_grad)(pi, g[i], h, sc, dec),       \
                                       s0, s1, s2, i, h);                             \
        }                                                                             \
    }
FO_VARIANTS(FO_DEFINE_VARIANT)

#define FO_TABLE_ENTRY(index, rule, f0, f1, sc, dec) \
    [index] = SFX(fo_chunk_##rule##_##f0##f1##sc##dec),
static const SFX(chunk_fn) SFX(variants)[FO_N_VARIANTS] = {FO_VARIANTS(FO_TABLE_ENTRY)};
#undef FO_DEFINE_VARIANT
#undef FO_TABLE_ENTRY

int SFX(fo_has_variant)(int variant)
{
    return variant >= 0 && variant < FO_N_VARIANTS && SFX(variants)[variant] != NULL;
}

int SFX(fo_optim)(int variant, const int64_t *addresses, const char *const *grads,
                  const int64_t *chunks, int64_t n_chunks, const REAL *hyper, int threads)
{
    if (!SFX(fo_has_variant)(variant))
        return -1; /* an unknown rule or flags: an error, never another rule */
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
        chunk(FO_PTR(REAL, a[0]) + start, (const REAL *)grads[row[0]] + start,
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
