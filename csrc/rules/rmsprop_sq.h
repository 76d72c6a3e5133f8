/* RMSprop, cs231n's and nnfs' rounding (fastopt/rules/rmsprop_sq.py). s0: cache. */
FO_ELEMENT(rmsprop_sq)
{
    const REAL cache = h[FO_RMSPROP_SQ_ALPHA] * s0[i] + h[FO_RMSPROP_SQ_ONE_MINUS_ALPHA] * (g * g);
    s0[i] = cache;
    return p - h[FO_RMSPROP_SQ_LR] * g / (sqrt(cache) + h[FO_RMSPROP_SQ_EPS]);
}
