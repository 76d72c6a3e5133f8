/* Adamax (fastopt/rules/adamax.py). s0: exp_avg, s1: exp_inf. */
FO_ELEMENT(adamax)
{
    const REAL exp_avg = SFX(lerp)(s0[i], g, h[FO_ADAMAX_LERP_WEIGHT], h[FO_ADAMAX_LERP_COMPLEMENT],
                                   h[FO_ADAMAX_LERP_SMALL] != h[FO_ZERO]);
    const REAL a = h[FO_ADAMAX_BETA2] * s1[i];
    const REAL b = fabs(g) + h[FO_ADAMAX_EPS];
    const REAL exp_inf = (a >= b || a != a) ? a : b; /* torch.maximum: NaN wins */
    s0[i] = exp_avg;
    s1[i] = exp_inf;
    return p - h[FO_ADAMAX_CLR] * exp_avg / exp_inf;
}
