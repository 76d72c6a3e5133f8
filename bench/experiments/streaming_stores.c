/* Batch norm affine pass y = x*p + r: plain stores against AVX2 streaming stores.
   A measurement for bench/RESULTS.md (see streaming_stores.py), not part of fastopt. */
#include <immintrin.h>
#include <stdint.h>
#include <omp.h>
__attribute__((target("avx2")))
void affine_plain(const float *restrict x, float *restrict y, float p, float r, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * p + r;
}
__attribute__((target("avx2")))
void affine_nt(const float *restrict x, float *restrict y, float p, float r, int64_t n) {
    int nt = omp_get_max_threads();
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int64_t i0 = n * t / T, i1 = n * (t + 1) / T;
        int64_t i = i0;
        for (; i < i1 && ((uintptr_t)(y + i) & 31); i++) y[i] = x[i] * p + r;
        __m256 vp = _mm256_set1_ps(p), vr = _mm256_set1_ps(r);
        for (; i + 8 <= i1; i += 8) {
            __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vp), vr);
            _mm256_stream_ps(y + i, v);
        }
        for (; i < i1; i++) y[i] = x[i] * p + r;
        _mm_sfence();
    }
}
