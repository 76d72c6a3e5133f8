/* Rprop (fastopt/rules/rprop.py). s0: prev, s1: step_size. */
FO_ELEMENT(rprop)
{
    const REAL zero = h[FO_ZERO];
    REAL step = h[FO_RPROP_FIRST] != zero ? h[FO_RPROP_LR] : s1[i];
    const REAL product = g * s0[i];
    REAL gi = g, factor;
    if (product > zero) {
        factor = h[FO_RPROP_ETAPLUS];
    } else if (product < zero) {
        factor = h[FO_RPROP_ETAMINUS];
        gi = zero;
    } else if (product == zero) {
        factor = h[FO_ONE];
    } else {
        factor = product; /* NaN */
    }
    step = step * factor;
    if (step < h[FO_RPROP_STEP_SIZE_MIN])
        step = h[FO_RPROP_STEP_SIZE_MIN];
    else if (step > h[FO_RPROP_STEP_SIZE_MAX])
        step = h[FO_RPROP_STEP_SIZE_MAX];
    s0[i] = gi;
    s1[i] = step;
    if (gi > zero)
        return p - step;
    if (gi < zero)
        return p + step;
    return gi != gi ? p - gi * step : p; /* NaN */
}
