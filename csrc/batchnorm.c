/* Batch-norm building blocks (float and double): see batchnorm_impl.h. */
#include "fo_common.h"

#define REAL float
#define TAG f32
#include "batchnorm_impl.h"
#undef REAL
#undef TAG

#define REAL double
#define TAG f64
#include "batchnorm_impl.h"
#undef REAL
#undef TAG
