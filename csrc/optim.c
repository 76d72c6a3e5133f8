/* Fused optimizer updates (float and double): see optim_impl.h for the maths. */
#include "fo_common.h"
#include "fo_rules.h"

#define REAL float
#define TAG f32
#include "optim_impl.h"
#include "optim8_impl.h" /* float params with 8-bit state */
#undef REAL
#undef TAG

#define REAL double
#define TAG f64
#include "optim_impl.h"
#undef REAL
#undef TAG

int fo_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void fo_set_max_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int fo_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
