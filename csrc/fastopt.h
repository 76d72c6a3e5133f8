/* fastopt C kernels: the declarations shared by the C sources and the cffi builder.
 *
 * This file is read by cffi's cdef parser as well as by the C compiler, so it holds
 * plain declarations and integer #defines only.
 *
 * Optimizer kernels walk a chunk table: `chunks` is an (n_chunks, 3) int64 row-major
 * table of (tensor, start, stop) element ranges, and `addresses` an (n_tensors, 5)
 * int64 table of data addresses (param, grad, state slot 0, 1, 2; 0 where unused).
 * `hyper` holds the rule's scalars in the array's type, laid out as fo_rules.h says
 * (generated from fastopt/rules/). `variant` is an index into the table of compiled
 * variants, fastopt.rules._spec.Rule.variant(flags).
 */

/* Work below this many elements (4 chunks of fastopt.backends._tables.CHUNK) runs on
   the calling thread: waking the thread pool costs more than it saves there. */
#define FO_PARALLEL_MIN_CHUNKS 4
#define FO_PARALLEL_MIN_ELEMENTS 131072

/* One optimizer step over every chunk on `threads` threads (serial when 1); thread k
   runs the k-th of `threads` equal runs of rows (static schedule), so the caller
   balances the table for that count. `addresses` holds each tensor's param and state
   addresses (its grad column is not read: tensor t's grad is grads[t], so that the
   table can be built once and this step's grads passed as they are). Returns 0, or -1
   for an unknown variant. */
int fo_has_variant_f32(int variant);
int fo_has_variant_f64(int variant);
int fo_optim_f32(int variant, const int64_t *addresses, const char *const *grads,
                 const int64_t *chunks, int64_t n_chunks, const float *hyper, int threads);
int fo_optim_f64(int variant, const int64_t *addresses, const char *const *grads,
                 const int64_t *chunks, int64_t n_chunks, const double *hyper, int threads);

/* One step over float params with blockwise 8-bit state (fastopt/quant.py):
   `addresses` has 8 columns (param, grad (unread), the slots' uint8 codes, the slots' float
   absmax, one per block) and chunks start on block boundaries; `signed_slots` says per
   slot which codebook it uses; `maps` holds the signed then the unsigned codebook (256
   floats each) and `buckets` their encoder tables (FO_QUANT_BUCKETS int32 each,
   fastopt.quant.encoder_tables). Returns 0, or -1 for an unknown variant. */
int fo_optim8_f32(int variant, const int64_t *addresses, const char *const *grads,
                  const int64_t *chunks, int64_t n_chunks, const float *hyper, int threads,
                  const unsigned char *signed_slots, const float *maps,
                  const int32_t *buckets);

/* Blockwise codes of float values[:n] (fastopt.quant.quantize_blockwise): codes[:n]
   and absmax[:ceil(n / 256)], with the signed or the unsigned encoder table of
   `buckets` (laid out as in fo_optim8_f32), on the encoder fo_optim8_f32 runs when
   `wide` is 1 (AVX-512 where the CPU has it), on the portable one when 0. */
void fo_quantize_blocks_f32(const float *values, int64_t n, uint8_t *codes, float *absmax,
                            int is_signed, const int32_t *buckets, int wide);

/* Reductions over the chunks of 1-D arrays (`addresses` has one column here):
   out[c] = float64 sum of squares of chunk c / 1 if chunk c is all finite, else 0. */
void fo_sumsq_f32(const int64_t *addresses, const int64_t *chunks, int64_t n_chunks,
                  double *out);
void fo_sumsq_f64(const int64_t *addresses, const int64_t *chunks, int64_t n_chunks,
                  double *out);
void fo_finite_f32(const int64_t *addresses, const int64_t *chunks, int64_t n_chunks,
                   unsigned char *out);
void fo_finite_f64(const int64_t *addresses, const int64_t *chunks, int64_t n_chunks,
                   unsigned char *out);

/* Batch norm over a window of `channels` channels of C-contiguous (outer, stride,
   inner) arrays: a, b and out point at the window's first channel, and c below counts
   from there.
   bn_sums: per (row block, channel), float64 partial sums of (a - ka[c]) into
   s1[block * channels + c] and of (a - ka[c]) * (b - kb[c]) into s2, over blocks of
   `rows` outer rows and `cols` channels; s1 and s2 start zeroed. On return the
   first row of each (s1[c], s2[c]) holds the totals: the blocks added in block order.
   bn_affine: out = a * p[c] + b * q[c] + r[c] in the array's type (b may be NULL:
   then out = a * p[c] + r[c]). */
void fo_bn_sums_f32(const float *a, const float *b, const double *ka, const double *kb,
                    int64_t outer, int64_t channels, int64_t stride, int64_t inner,
                    int64_t rows, int64_t cols, double *s1, double *s2);
void fo_bn_sums_f64(const double *a, const double *b, const double *ka, const double *kb,
                    int64_t outer, int64_t channels, int64_t stride, int64_t inner,
                    int64_t rows, int64_t cols, double *s1, double *s2);
void fo_bn_affine_f32(const float *a, const float *b, const float *p, const float *q,
                      const float *r, float *out, int64_t outer, int64_t channels,
                      int64_t stride, int64_t inner);
void fo_bn_affine_f64(const double *a, const double *b, const double *p, const double *q,
                      const double *r, double *out, int64_t outer, int64_t channels,
                      int64_t stride, int64_t inner);

/* Batch norm's passes over one window (fastopt/_bn_passes.py, with the per-channel maths
   of fastopt/_bn_math.py in float64), for the arrays as bn_sums takes them; rows and
   cols are bn_sums' blocking.
   bn_forward: in training, mean and var from the sums of x - shift; then invstd and
   y = x * alpha + offset. Otherwise mean and var are read (and shift unused).
   bn_backward: dbeta = sum(dy), dgamma = invstd * sum(dy * (x - mean)), and dx.
   Both return 0, or -1 when scratch memory could not be had (nothing written then
   but, in training, mean and var).
   bn_running_update: the running statistics, in place (float64 arithmetic). */
int fo_bn_forward_f32(const float *x, const double *shift, double *mean, double *var,
                      double *invstd, const float *gamma, const float *beta, double eps,
                      int64_t n, int training, float *y, int64_t outer, int64_t channels,
                      int64_t stride, int64_t inner, int64_t rows, int64_t cols);
int fo_bn_forward_f64(const double *x, const double *shift, double *mean, double *var,
                      double *invstd, const double *gamma, const double *beta, double eps,
                      int64_t n, int training, double *y, int64_t outer, int64_t channels,
                      int64_t stride, int64_t inner, int64_t rows, int64_t cols);
int fo_bn_backward_f32(const float *dy, const float *x, const double *mean,
                       const double *invstd, const float *gamma, int64_t n, int training,
                       float *dx, double *dgamma, double *dbeta, int64_t outer,
                       int64_t channels, int64_t stride, int64_t inner, int64_t rows,
                       int64_t cols);
int fo_bn_backward_f64(const double *dy, const double *x, const double *mean,
                       const double *invstd, const double *gamma, int64_t n, int training,
                       double *dx, double *dgamma, double *dbeta, int64_t outer,
                       int64_t channels, int64_t stride, int64_t inner, int64_t rows,
                       int64_t cols);
void fo_bn_running_update_f32(float *running_mean, float *running_var, const double *mean,
                              const double *var, double momentum, int64_t n,
                              int64_t channels);
void fo_bn_running_update_f64(double *running_mean, double *running_var, const double *mean,
                              const double *var, double momentum, int64_t n,
                              int64_t channels);

/* Build facts: the number of OpenMP threads a parallel region gets (1 when built
   without OpenMP), and whether the build has OpenMP. */
int fo_max_threads(void);
void fo_set_max_threads(int n);  /* omp_set_num_threads: 1 in a forked child */
int fo_has_openmp(void);
