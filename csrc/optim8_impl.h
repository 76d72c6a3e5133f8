/* Optimizer kernels over float params with blockwise 8-bit state (fastopt/quant.py).
 * optim.c includes this file once, after the float instance of optim_impl.h, whose
 * table of compiled variants it reuses: per block of FO_QUANT_BLOCK elements, each
 * used state slot is decoded into a float buffer with the block's old absmax, the
 * variant's element loop steps the block on the buffers (so the param update sees the
 * new, unquantized state, as in fastopt/backends/numba_cpu.py), and the buffers are
 * coded again with the block's new absmax.
 *
 * `addresses` has 8 columns here: param, grad, the slots' codes (uint8), the slots'
 * absmax (float, one per block). Chunks start on block boundaries.
 */

/* The code of v in a block of absmax: fastopt.quant.encode_value, operation for
   operation (branch-free, and in 32-bit integers, whose values all fit, so that the
   loop around it vectorises). */
FO_INLINE int32_t fo_encode(const float v, const float absmax,
                            const int32_t *restrict buckets, const int32_t zero)
{
    const int32_t negative = v < 0;
    const float a = fabs(v) / absmax;
    int32_t bits; /* a >= 0 (or a NaN without its sign): below 2**31 */
    memcpy(&bits, &a, sizeof bits);
    int32_t index = (bits >> FO_QUANT_LOW_BITS)
                    - ((126 + FO_QUANT_MIN_EXPONENT) << FO_QUANT_MANTISSA_BITS);
    index = index < 0 ? 0 : index;
    index = index > FO_QUANT_BUCKETS - 1 ? FO_QUANT_BUCKETS - 1 : index;
    const int32_t entry = buckets[index];
    const int32_t threshold = (entry & 0x7FFF) - (negative & (entry >> 15));
    int32_t k = (entry >> 16) + ((bits & ((1 << FO_QUANT_LOW_BITS) - 1)) >= threshold);
    const int32_t top = 255 - zero - negative;
    k = k < 1 ? 1 : k;
    k = k > top ? top : k;
    const int32_t valid = (v != 0) & (absmax > 0) & (a <= 1);
    return zero + k * (1 - 2 * negative) * valid;
}

/* max |values[:n]|, NaN if one is NaN: the largest of the magnitudes' bits (a NaN's
   exceed Inf's), an integer maximum. */
FO_CLONES static float fo_absmax(const float *restrict values, const int64_t n)
{
    uint32_t top = 0;
    for (int64_t j = 0; j < n; j++) {
        uint32_t word;
        memcpy(&word, values + j, sizeof word);
        word &= 0x7FFFFFFFu;
        top = word > top ? word : top;
    }
    float result;
    memcpy(&result, &top, sizeof result);
    return result;
}

FO_CLONES static void fo_dequantize(const uint8_t *restrict codes,
                                    const float *restrict table, const float absmax,
                                    float *restrict out, const int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        out[j] = table[codes[j]] * absmax;
}

/* The codes of values[:n] in a block of absmax. (A function of its own: with the
   absmax computed in the same function, GCC 12 does not vectorise the loop.) */
FO_CLONES static void fo_quantize_portable(const float *restrict values, const int64_t n,
                                           const float absmax, uint8_t *restrict codes,
                                           const int32_t *restrict buckets,
                                           const int32_t zero)
{
    for (int64_t j = 0; j < n; j++)
        codes[j] = (uint8_t)fo_encode(values[j], absmax, buckets, zero);
}

/* AVX-512 versions of the codec, chosen at run time where the CPU has AVX-512F. GCC
   writes the table lookups of the portable loops as one scalar load a lane; these use
   the gather instructions, and replace the encoder's division by a multiplication
   whose result is corrected to the exact quotient (below). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) \
    && !defined(FASTOPT_NO_CLONES)
#define FO_CODEC_AVX512 1
#include <immintrin.h>

#define FO_AVX512 __attribute__((target("avx512f")))

FO_AVX512 static void fo_dequantize_avx512(const uint8_t *restrict codes,
                                           const float *restrict table, const float absmax,
                                           float *restrict out, const int64_t n)
{
    const __m512 scale = _mm512_set1_ps(absmax);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512i index =
            _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + j)));
        _mm512_storeu_ps(out + j, _mm512_mul_ps(_mm512_i32gather_ps(index, table, 4), scale));
    }
    for (; j < n; j++)
        out[j] = table[codes[j]] * absmax;
}

/* fo_encode on 16 lanes. The quotient |v| / absmax is computed without a division
   (Markstein's theorem: with y = RN(1/b) and q0 = RN(a*y), r = a - b*q0 is exact in an
   FMA and RN(q0 + r*y) = RN(a/b), provided nothing underflows). Both operands are first
   scaled by the power of two that takes absmax into [1, 2): then a/b >= 2**-24 keeps r
   a normal number, and a smaller quotient, which may come out inexact, codes as 1 like
   every quotient below 2**-23 (the first bucket's threshold is never reached). A block
   whose absmax is outside [2**-100, 2**100] (or not finite) takes the portable loop. */
FO_AVX512 static void fo_quantize_avx512(const float *restrict values, const int64_t n,
                                         const float absmax, uint8_t *restrict codes,
                                         const int32_t *restrict buckets, const int32_t zero)
{
    if (!(absmax >= 0x1p-100f && absmax <= 0x1p100f)) {
        fo_quantize_portable(values, n, absmax, codes, buckets, zero);
        return;
    }
    uint32_t word;
    memcpy(&word, &absmax, sizeof word);
    const uint32_t exponent = word >> 23; /* absmax > 0: no sign bit */
    const uint32_t scale_word = (254u - exponent) << 23; /* 2**(127 - exponent) */
    float scale_value, unit;
    memcpy(&scale_value, &scale_word, sizeof scale_value);
    unit = absmax * scale_value; /* exact, in [1, 2) */
    const __m512 scale = _mm512_set1_ps(scale_value), b = _mm512_set1_ps(unit);
    const __m512 y = _mm512_set1_ps(1.0f / unit);
    const __m512 zerof = _mm512_setzero_ps(), onef = _mm512_set1_ps(1.0f);
    const __m512i base =
        _mm512_set1_epi32((126 + FO_QUANT_MIN_EXPONENT) << FO_QUANT_MANTISSA_BITS);
    const __m512i zeroi = _mm512_setzero_si512(), last = _mm512_set1_epi32(FO_QUANT_BUCKETS - 1);
    const __m512i low_mask = _mm512_set1_epi32((1 << FO_QUANT_LOW_BITS) - 1);
    const __m512i t_mask = _mm512_set1_epi32(0x7FFF), onei = _mm512_set1_epi32(1);
    const __m512i zero_code = _mm512_set1_epi32(zero), top = _mm512_set1_epi32(255 - zero);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 v = _mm512_loadu_ps(values + j);
        const __mmask16 negative = _mm512_cmp_ps_mask(v, zerof, _CMP_LT_OQ);
        const __m512 a_scaled = _mm512_mul_ps(_mm512_abs_ps(v), scale);
        const __m512 q0 = _mm512_mul_ps(a_scaled, y);
        const __m512 a = _mm512_fmadd_ps(_mm512_fnmadd_ps(b, q0, a_scaled), y, q0);
        const __m512i bits = _mm512_castps_si512(a);
        __m512i index = _mm512_sub_epi32(_mm512_srai_epi32(bits, FO_QUANT_LOW_BITS), base);
        index = _mm512_min_epi32(_mm512_max_epi32(index, zeroi), last);
        const __m512i entry = _mm512_i32gather_epi32(index, buckets, 4);
        __m512i threshold = _mm512_and_si512(entry, t_mask);
        threshold = _mm512_mask_sub_epi32(
            threshold, negative, threshold, _mm512_and_si512(_mm512_srai_epi32(entry, 15), onei));
        const __mmask16 up = _mm512_cmp_epi32_mask(_mm512_and_si512(bits, low_mask), threshold,
                                                   _MM_CMPINT_NLT);
        const __m512i k0 = _mm512_srai_epi32(entry, 16);
        __m512i k = _mm512_max_epi32(_mm512_mask_add_epi32(k0, up, k0, onei), onei);
        k = _mm512_min_epi32(k, _mm512_mask_sub_epi32(top, negative, top, onei));
        const __mmask16 valid = _mm512_cmp_ps_mask(v, zerof, _CMP_NEQ_UQ)
                                & _mm512_cmp_ps_mask(a, onef, _CMP_LE_OQ);
        __m512i code = _mm512_mask_sub_epi32(_mm512_add_epi32(zero_code, k), negative,
                                             zero_code, k);
        code = _mm512_mask_mov_epi32(zero_code, valid, code);
        _mm_storeu_si128((__m128i *)(codes + j), _mm512_cvtepi32_epi8(code));
    }
    fo_quantize_portable(values + j, n - j, absmax, codes + j, buckets, zero);
}
#endif

typedef void (*fo_dequantize_fn)(const uint8_t *restrict, const float *restrict, float,
                                 float *restrict, int64_t);
typedef void (*fo_quantize_fn)(const float *restrict, int64_t, float, uint8_t *restrict,
                               const int32_t *restrict, int32_t);

/* A decoder and an encoder that run together. */
typedef struct {
    fo_dequantize_fn dequantize;
    fo_quantize_fn quantize;
} fo_codec;

/* The AVX-512 codec where `wide` asks for it and the CPU has AVX-512F; else the
   portable one. */
static fo_codec fo_codec_for(const int wide)
{
#ifdef FO_CODEC_AVX512
    if (wide && __builtin_cpu_supports("avx512f"))
        return (fo_codec){fo_dequantize_avx512, fo_quantize_avx512};
#endif
    (void)wide;
    return (fo_codec){fo_dequantize, fo_quantize_portable};
}

/* Code values[:n], one block, with its new absmax, which goes to *absmax; `buckets`
   holds the signed then the unsigned encoder table. */
FO_INLINE void fo_code_block(const fo_quantize_fn quantize, const float *restrict values,
                             const int64_t n, uint8_t *restrict codes, float *absmax,
                             const int is_signed, const int32_t *restrict buckets)
{
    const float top = fo_absmax(values, n);
    *absmax = top;
    quantize(values, n, top, codes, buckets + (is_signed ? 0 : FO_QUANT_BUCKETS),
             is_signed ? 127 : 0);
}

/* Blockwise codes of values[:n] into codes[:n] and absmax[:ceil(n / block)], as
   fastopt.quant.quantize_blockwise, with the kernels' encoder (`wide`: the AVX-512
   one where the CPU has it, else the portable one). */
void fo_quantize_blocks_f32(const float *values, int64_t n, uint8_t *codes, float *absmax,
                            int is_signed, const int32_t *buckets, int wide)
{
    const fo_quantize_fn quantize = fo_codec_for(wide).quantize;
    for (int64_t lo = 0; lo < n; lo += FO_QUANT_BLOCK) {
        const int64_t m = n - lo < FO_QUANT_BLOCK ? n - lo : FO_QUANT_BLOCK;
        fo_code_block(quantize, values + lo, m, codes + lo, absmax + lo / FO_QUANT_BLOCK,
                      is_signed, buckets);
    }
}

int fo_optim8_f32(int variant, const int64_t *addresses, const char *const *grads,
                  const int64_t *chunks, int64_t n_chunks, const float *hyper, int threads,
                  const unsigned char *signed_slots, const float *maps,
                  const int32_t *buckets)
{
    if (!fo_has_variant_f32(variant))
        return -1;
    const chunk_fn_f32 chunk = variants_f32[variant];
    const fo_codec codec = fo_codec_for(1);
    (void)threads;

#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t *row = chunks + 3 * c;
        const int64_t *a = addresses + 8 * row[0];
        const int64_t start = row[1], n = row[2] - row[1];
        float *p = FO_PTR(float, a[0]) + start;
        const float *g = (const float *)grads[row[0]] + start;
        float decoded[3][FO_QUANT_BLOCK];
        for (int64_t lo = 0; lo < n; lo += FO_QUANT_BLOCK) {
            const int64_t m = n - lo < FO_QUANT_BLOCK ? n - lo : FO_QUANT_BLOCK;
            const int64_t block = (start + lo) / FO_QUANT_BLOCK;
            float *slot[3];
            for (int k = 0; k < 3; k++) {
                slot[k] = NULL;
                if (a[2 + k]) {
                    slot[k] = decoded[k];
                    codec.dequantize(FO_PTR(const uint8_t, a[2 + k]) + start + lo,
                                     maps + (signed_slots[k] ? 0 : 256),
                                     FO_PTR(const float, a[5 + k])[block], slot[k], m);
                }
            }
            chunk(p + lo, g + lo, slot[0], slot[1], slot[2], m, hyper);
            for (int k = 0; k < 3; k++)
                if (a[2 + k])
                    fo_code_block(codec.quantize, slot[k], m,
                                  FO_PTR(uint8_t, a[2 + k]) + start + lo,
                                  FO_PTR(float, a[5 + k]) + block, signed_slots[k], buckets);
        }
    }
    return 0;
}
