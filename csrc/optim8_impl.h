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
FO_CLONES static void fo_quantize(const float *restrict values, const int64_t n,
                                  const float absmax, uint8_t *restrict codes,
                                  const int32_t *restrict buckets, const int32_t zero)
{
    for (int64_t j = 0; j < n; j++)
        codes[j] = (uint8_t)fo_encode(values[j], absmax, buckets, zero);
}

int fo_optim8_f32(int variant, const int64_t *addresses, const char *const *grads,
                  const int64_t *chunks, int64_t n_chunks, const float *hyper, int threads,
                  const unsigned char *signed_slots, const float *maps,
                  const int32_t *buckets)
{
    if (!fo_has_variant_f32(variant))
        return -1;
    const chunk_fn_f32 chunk = variants_f32[variant];
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
                    fo_dequantize(FO_PTR(const uint8_t, a[2 + k]) + start + lo,
                                  maps + (signed_slots[k] ? 0 : 256),
                                  FO_PTR(const float, a[5 + k])[block], slot[k], m);
                }
            }
            chunk(p + lo, g + lo, slot[0], slot[1], slot[2], m, hyper);
            for (int k = 0; k < 3; k++)
                if (a[2 + k]) {
                    const float top = fo_absmax(slot[k], m);
                    FO_PTR(float, a[5 + k])[block] = top;
                    fo_quantize(slot[k], m, top, FO_PTR(uint8_t, a[2 + k]) + start + lo,
                                buckets + (signed_slots[k] ? 0 : FO_QUANT_BUCKETS),
                                signed_slots[k] ? 127 : 0);
                }
        }
    }
    return 0;
}
