/* RMSprop, cs231n's, nnfs' and Deep Learning from Scratch's rounding
   (fastopt/rules/rmsprop_sq.py). f0: (1-a)*g*g, else (1-a)*(g*g); s0: cache. */
FO_ELEMENT(rmsprop_sq)
{
    const REAL a = h[FO_RMSPROP_SQ_ALPHA] * s0[i];
    const REAL cache = f0 ? a + h[FO_RMSPROP_SQ_ONE_MINUS_ALPHA] * g * g
                          : a + h[FO_RMSPROP_SQ_ONE_MINUS_ALPHA] * (g * g);
    s0[i] = cache;
    return p - h[FO_RMSPROP_SQ_LR] * g / (sqrt(cache) + h[FO_RMSPROP_SQ_EPS]);
}
