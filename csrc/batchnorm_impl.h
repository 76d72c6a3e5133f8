/* Batch-norm kernels for one element type; batchnorm.c includes this file once per
 * type with REAL and TAG defined. fastopt/batchnorm.py composes them into the forward
 * and backward passes (statistics, then an affine pass), one window of channels at a
 * time: the caller points a, b and out at the window's first channel, `channels` is
 * the window's width and `stride` the full array's channel count (a row of the array
 * is stride * inner elements).
 *
 * Reductions accumulate in double over a blocking fixed by the shape alone (the
 * caller's rows x cols blocks), each block writing its own slot, so the result does
 * not depend on the number of threads.
 */

/* float64(v) - k, kept out of the reordered accumulations below. */
FO_INLINE double SFX(shifted)(REAL v, double k) { return (double)v - k; }

/* Four rows x[0..3][c0..c1) (row stride w) added into the block's partial sums:
   sum of u = x - ka and of u * (y - kb). `same` (a constant at each call, so the
   compiler drops the branch) means y is x and kb is ka: v is u, not loaded again. */
FO_INLINE void SFX(bn_rows4)(const REAL *restrict x, const REAL *restrict y,
                             const double *restrict ka, const double *restrict kb,
                             int64_t w, int64_t c0, int64_t c1, const int same,
                             double *restrict s1, double *restrict s2)
{
#pragma omp simd
    for (int64_t c = c0; c < c1; c++) {
        const double k = ka[c];
        const double u0 = SFX(shifted)(x[c], k), u1 = SFX(shifted)(x[w + c], k);
        const double u2 = SFX(shifted)(x[2 * w + c], k);
        const double u3 = SFX(shifted)(x[3 * w + c], k);
        double v0 = u0, v1 = u1, v2 = u2, v3 = u3;
        if (!same) {
            const double j = kb[c];
            v0 = SFX(shifted)(y[c], j);
            v1 = SFX(shifted)(y[w + c], j);
            v2 = SFX(shifted)(y[2 * w + c], j);
            v3 = SFX(shifted)(y[3 * w + c], j);
        }
        s1[c] += (u0 + u1) + (u2 + u3);
        s2[c] += (u0 * v0 + u1 * v1) + (u2 * v2 + u3 * v3);
    }
}

/* One long row of n values added into one channel's partial sums (an OpenMP simd
   reduction: the compiler may keep several partial sums, fixed by the compiled code,
   and so vectorise the float64 adds). `same` as in bn_rows4. */
FO_INLINE void SFX(bn_row_sums)(const REAL *restrict x, const REAL *restrict y, double kx,
                                double ky, int64_t n, const int same,
                                double *restrict s1, double *restrict s2)
{
    double sum1 = 0.0, sum2 = 0.0;
#pragma omp simd reduction(+ : sum1, sum2)
    for (int64_t i = 0; i < n; i++) {
        const double u = SFX(shifted)(x[i], kx);
        sum1 += u;
        sum2 += u * (same ? u : SFX(shifted)(y[i], ky));
    }
    *s1 += sum1;
    *s2 += sum2;
}

/* Two long rows of one channel (x0 and x1, with y0 and y1), each with its own sums,
   added into the channel's partial sums in row order: bn_row_sums on each row, but
   reading two memory streams with twice the independent adds (20-25% faster). */
FO_INLINE void SFX(bn_row_sums2)(const REAL *restrict x0, const REAL *restrict x1,
                                 const REAL *restrict y0, const REAL *restrict y1,
                                 double kx, double ky, int64_t n, const int same,
                                 double *restrict s1, double *restrict s2)
{
    double first1 = 0.0, first2 = 0.0, second1 = 0.0, second2 = 0.0;
#pragma omp simd reduction(+ : first1, first2, second1, second2)
    for (int64_t i = 0; i < n; i++) {
        const double u = SFX(shifted)(x0[i], kx), v = SFX(shifted)(x1[i], kx);
        first1 += u;
        first2 += u * (same ? u : SFX(shifted)(y0[i], ky));
        second1 += v;
        second2 += v * (same ? v : SFX(shifted)(y1[i], ky));
    }
    *s1 += first1;
    *s2 += first2;
    *s1 += second1;
    *s2 += second2;
}

/* Partial sums of one (row block, channel block) item. */
FO_CLONES void SFX(fo_bn_item)(const REAL *restrict a, const REAL *restrict b,
                               const double *restrict ka, const double *restrict kb,
                               int64_t o0, int64_t o1, int64_t c0, int64_t c1,
                               int64_t stride, int64_t inner,
                               double *restrict s1, double *restrict s2)
{
    const int same = a == b && ka == kb; /* the forward pass: sums of u and u^2 */
    if (inner == 1) { /* (rows, C): add rows into the block's partial sums, four rows
                         per pass so that the sums are loaded and stored once per four */
        int64_t o = o0;
        for (; o + 4 <= o1; o += 4) {
            const REAL *x = a + o * stride, *y = b + o * stride;
            if (same)
                SFX(bn_rows4)(x, x, ka, ka, stride, c0, c1, 1, s1, s2);
            else
                SFX(bn_rows4)(x, y, ka, kb, stride, c0, c1, 0, s1, s2);
        }
        for (; o < o1; o++) {
            const REAL *restrict x = a + o * stride;
            const REAL *restrict y = b + o * stride;
#pragma omp simd
            for (int64_t c = c0; c < c1; c++) {
                const double u = SFX(shifted)(x[c], ka[c]);
                s1[c] += u;
                s2[c] += u * SFX(shifted)(y[c], kb[c]);
            }
        }
        return;
    }
    int64_t o = o0;
    for (; o + 2 <= o1; o += 2) /* rows two at a time, then an odd last one */
        for (int64_t c = c0; c < c1; c++) {
            const int64_t at = (o * stride + c) * inner, next = at + stride * inner;
            if (same)
                SFX(bn_row_sums2)(a + at, a + next, a + at, a + next, ka[c], ka[c], inner,
                                  1, s1 + c, s2 + c);
            else
                SFX(bn_row_sums2)(a + at, a + next, b + at, b + next, ka[c], kb[c], inner,
                                  0, s1 + c, s2 + c);
        }
    for (; o < o1; o++)
        for (int64_t c = c0; c < c1; c++) {
            const int64_t at = (o * stride + c) * inner;
            if (same)
                SFX(bn_row_sums)(a + at, a + at, ka[c], ka[c], inner, 1, s1 + c, s2 + c);
            else
                SFX(bn_row_sums)(a + at, b + at, ka[c], kb[c], inner, 0, s1 + c, s2 + c);
        }
}

void SFX(fo_bn_sums)(const REAL *a, const REAL *b, const double *ka, const double *kb,
                     int64_t outer, int64_t channels, int64_t stride, int64_t inner,
                     int64_t rows, int64_t cols, double *s1, double *s2)
{
    const int64_t n_col_blocks = (channels + cols - 1) / cols;
    const int64_t n_row_blocks = (outer + rows - 1) / rows;
#pragma omp parallel for schedule(static) if (outer * channels * inner >= FO_PARALLEL_MIN_ELEMENTS)
    for (int64_t item = 0; item < n_row_blocks * n_col_blocks; item++) {
        const int64_t rb = item / n_col_blocks;
        const int64_t c0 = (item % n_col_blocks) * cols;
        const int64_t o1 = rb * rows + rows < outer ? rb * rows + rows : outer;
        const int64_t c1 = c0 + cols < channels ? c0 + cols : channels;
        SFX(fo_bn_item)(a, b, ka, kb, rb * rows, o1, c0, c1, stride, inner,
                        s1 + rb * channels, s2 + rb * channels);
    }
    /* Totals into row 0, adding the row blocks in block order whatever the width (as
       fastopt/backends/_tables.py's bn_totals does for the other backends). */
    for (int64_t rb = 1; rb < n_row_blocks; rb++)
        for (int64_t c = 0; c < channels; c++) {
            s1[c] += s1[rb * channels + c];
            s2[c] += s2[rb * channels + c];
        }
}

/* out = x * p + y * q + r over one contiguous row of n elements (y NULL: no y term). */
FO_CLONES void SFX(fo_bn_row)(const REAL *restrict x, const REAL *restrict y, REAL p,
                              REAL q, REAL r, REAL *restrict out, int64_t n)
{
    if (y)
        for (int64_t i = 0; i < n; i++)
            out[i] = (x[i] * p + y[i] * q) + r;
    else
        for (int64_t i = 0; i < n; i++)
            out[i] = x[i] * p + r;
}

/* Channels-last rows: out[c] = x[c] * p[c] + y[c] * q[c] + r[c]. */
FO_CLONES void SFX(fo_bn_row_cl)(const REAL *restrict x, const REAL *restrict y,
                                 const REAL *restrict p, const REAL *restrict q,
                                 const REAL *restrict r, REAL *restrict out, int64_t n)
{
    if (y)
        for (int64_t c = 0; c < n; c++)
            out[c] = (x[c] * p[c] + y[c] * q[c]) + r[c];
    else
        for (int64_t c = 0; c < n; c++)
            out[c] = x[c] * p[c] + r[c];
}

void SFX(fo_bn_affine)(const REAL *a, const REAL *b, const REAL *p, const REAL *q,
                       const REAL *r, REAL *out, int64_t outer, int64_t channels,
                       int64_t stride, int64_t inner)
{
    if (inner == 1) {
#pragma omp parallel for schedule(static) if (outer * channels >= FO_PARALLEL_MIN_ELEMENTS)
        for (int64_t o = 0; o < outer; o++)
            SFX(fo_bn_row_cl)(a + o * stride, b ? b + o * stride : NULL, p, q, r,
                              out + o * stride, channels);
        return;
    }
#pragma omp parallel for schedule(static) if (outer * channels * inner >= FO_PARALLEL_MIN_ELEMENTS)
    for (int64_t oc = 0; oc < outer * channels; oc++) {
        const int64_t c = oc % channels;
        const int64_t at = (oc / channels * stride + c) * inner;
        SFX(fo_bn_row)(a + at, b ? b + at : NULL, p[c], b ? q[c] : 0, r[c], out + at, inner);
    }
}

/* Batch norm's per-channel maths (fastopt/_bn_math.py) and its passes over one window
   (fastopt/_bn_passes.py), transliterated: float64, the same operations in the same
   order (no FMA contraction), so the statistics and coefficients have the bits of the
   NumPy and Numba versions, and a window costs one call from Python rather than a
   dozen NumPy calls on per-channel vectors. */

/* np.maximum(v, 0.0): NaN stays NaN, and -0.0 is kept. */
FO_INLINE double SFX(bn_nonnegative)(double v) { return (v >= 0.0 || v != v) ? v : 0.0; }

/* Zeroed partial sums for fo_bn_sums (two blocks of n_row_blocks * channels doubles),
   or NULL. */
static double *SFX(bn_partials)(int64_t outer, int64_t rows, int64_t channels)
{
    const int64_t n_row_blocks = (outer + rows - 1) / rows;
    return calloc((size_t)(2 * n_row_blocks * channels + 1), sizeof(double));
}

int SFX(fo_bn_forward)(const REAL *x, const double *shift, double *mean, double *var,
                       double *invstd, const REAL *gamma, const REAL *beta, double eps,
                       int64_t n, int training, REAL *y, int64_t outer, int64_t channels,
                       int64_t stride, int64_t inner, int64_t rows, int64_t cols)
{
    double *s1 = NULL;
    REAL *coef = malloc((size_t)(2 * channels + 1) * sizeof(REAL));
    if (training)
        s1 = SFX(bn_partials)(outer, rows, channels);
    if (!coef || (training && !s1)) {
        free(coef);
        free(s1);
        return -1;
    }
    if (training) {
        double *s2 = s1 + (outer + rows - 1) / rows * channels;
        SFX(fo_bn_sums)(x, x, shift, shift, outer, channels, stride, inner, rows, cols,
                        s1, s2);
        for (int64_t c = 0; c < channels; c++) { /* forward_statistics */
            const double centred = s1[c] / (double)n;
            mean[c] = shift[c] + centred;
            var[c] = SFX(bn_nonnegative)(s2[c] / (double)n - centred * centred);
        }
    }
    for (int64_t c = 0; c < channels; c++) { /* forward_coefficients */
        invstd[c] = 1.0 / sqrt(var[c] + eps);
        const double alpha = (double)gamma[c] * invstd[c];
        coef[c] = (REAL)alpha;
        coef[channels + c] = (REAL)((double)beta[c] - mean[c] * alpha);
    }
    SFX(fo_bn_affine)(x, NULL, coef, NULL, coef + channels, y, outer, channels, stride,
                      inner);
    free(coef);
    free(s1);
    return 0;
}

int SFX(fo_bn_backward)(const REAL *dy, const REAL *x, const double *mean,
                        const double *invstd, const REAL *gamma, int64_t n, int training,
                        REAL *dx, double *dgamma, double *dbeta, int64_t outer,
                        int64_t channels, int64_t stride, int64_t inner, int64_t rows,
                        int64_t cols)
{
    double *s1 = SFX(bn_partials)(outer, rows, channels);
    double *zeros = calloc((size_t)(channels + 1), sizeof(double));
    REAL *coef = malloc((size_t)(3 * channels + 1) * sizeof(REAL));
    if (!s1 || !zeros || !coef) {
        free(s1);
        free(zeros);
        free(coef);
        return -1;
    }
    double *s2 = s1 + (outer + rows - 1) / rows * channels;
    SFX(fo_bn_sums)(dy, x, zeros, mean, outer, channels, stride, inner, rows, cols, s1, s2);
    for (int64_t c = 0; c < channels; c++) { /* backward_coefficients */
        const double sum_dy_xc = s2[c];
        dbeta[c] = s1[c];
        dgamma[c] = invstd[c] * sum_dy_xc;
        const double scale = (double)gamma[c] * invstd[c];
        const double slope = -scale * invstd[c] * invstd[c] * sum_dy_xc / (double)n;
        coef[c] = (REAL)scale;
        coef[channels + c] = (REAL)slope;
        /* inference: dx = dy * scale + 0 (the statistics were constants) */
        coef[2 * channels + c] = training ? (REAL)(-scale * s1[c] / (double)n - slope * mean[c])
                                          : (REAL)0;
    }
    SFX(fo_bn_affine)(dy, training ? x : NULL, coef, coef + channels, coef + 2 * channels, dx,
                      outer, channels, stride, inner);
    free(s1);
    free(zeros);
    free(coef);
    return 0;
}

/* running = (1 - momentum) * running + momentum * statistic, in float64, stored in the
   array's type; the variance's statistic unbiased, var * n / (n - 1). */
void SFX(fo_bn_running_update)(REAL *running_mean, REAL *running_var, const double *mean,
                               const double *var, double momentum, int64_t n,
                               int64_t channels)
{
    const double keep = 1.0 - momentum;
    for (int64_t c = 0; c < channels; c++) {
        running_mean[c] = (REAL)(keep * (double)running_mean[c] + momentum * mean[c]);
        running_var[c] = (REAL)(keep * (double)running_var[c]
                                + momentum * var[c] * (double)n / (double)(n - 1));
    }
}
