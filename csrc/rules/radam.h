/* RAdam (fastopt/rules/radam.py). s0: exp_avg, s1: exp_avg_sq. */
FO_ELEMENT(radam)
{
    const REAL exp_avg = SFX(lerp)(s0[i], g, h[FO_RADAM_LERP_WEIGHT], h[FO_RADAM_LERP_COMPLEMENT],
                                   h[FO_RADAM_LERP_SMALL] != h[FO_ZERO]);
    const REAL exp_avg_sq = h[FO_RADAM_BETA2] * s1[i] + h[FO_RADAM_ONE_MINUS_BETA2] * g * g;
    s0[i] = exp_avg;
    s1[i] = exp_avg_sq;
    REAL step = exp_avg / h[FO_RADAM_BC1] * h[FO_RADAM_LR];
    if (h[FO_RADAM_ADAPTIVE] != h[FO_ZERO])
        step = step * (h[FO_RADAM_BC2_SQRT] / (sqrt(exp_avg_sq) + h[FO_RADAM_EPS])) *
               h[FO_RADAM_RECT];
    return p - step;
}
