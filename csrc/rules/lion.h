/* Lion (fastopt/rules/lion.py). s0: exp_avg. */
FO_ELEMENT(lion)
{
    const REAL zero = h[FO_ZERO];
    const REAL c = h[FO_LION_BETA1] * s0[i] + h[FO_LION_ONE_MINUS_BETA1] * g;
    s0[i] = h[FO_LION_BETA2] * s0[i] + h[FO_LION_ONE_MINUS_BETA2] * g;
    if (c > zero)
        return p - h[FO_LION_LR];
    if (c < zero)
        return p + h[FO_LION_LR];
    return c != c ? p + c : p; /* NaN */
}
