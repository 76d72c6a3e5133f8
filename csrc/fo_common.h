/* Build plumbing shared by the C sources: includes, inlining and multi-versioning. */
#ifndef FO_COMMON_H
#define FO_COMMON_H

#include <tgmath.h> /* sqrt of a float is sqrtf: no double rounding */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fastopt.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FO_INLINE static inline __attribute__((always_inline))
#else
#define FO_INLINE static inline
#endif

/* Function multi-versioning: the shipped binary targets baseline x86-64, and the hot
   per-chunk functions get AVX2 and AVX-512 clones picked at load time (ifunc).
   FASTOPT_NO_CLONES turns this off (e.g. for toolchains without ifunc). */
#if !defined(FASTOPT_NO_CLONES) && defined(__x86_64__) && defined(__linux__) \
    && defined(__has_attribute)
#if __has_attribute(target_clones)
#define FO_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef FO_CLONES
#define FO_CLONES
#endif

/* Typed names: SFX(fo_optim) is fo_optim_f32 while TAG is f32. */
#define FO_PASTE_(a, b) a##_##b
#define FO_PASTE(a, b) FO_PASTE_(a, b)
#define SFX(name) FO_PASTE(name, TAG)

#define FO_PTR(type, address) ((type *)(intptr_t)(address))

#endif
