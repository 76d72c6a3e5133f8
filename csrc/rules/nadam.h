/* NAdam (fastopt/rules/nadam.py). s0: exp_avg, s1: exp_avg_sq. */
FO_ELEMENT(nadam)
{
    const REAL exp_avg = SFX(lerp)(s0[i], g, h[FO_NADAM_LERP_WEIGHT], h[FO_NADAM_LERP_COMPLEMENT],
                                   h[FO_NADAM_LERP_SMALL] != h[FO_ZERO]);
    const REAL exp_avg_sq = h[FO_NADAM_BETA2] * s1[i] + h[FO_NADAM_ONE_MINUS_BETA2] * g * g;
    const REAL denom = sqrt(exp_avg_sq / h[FO_NADAM_BC2]) + h[FO_NADAM_EPS];
    s0[i] = exp_avg;
    s1[i] = exp_avg_sq;
    const REAL q = p + h[FO_NADAM_GRAD_COEF] * g / denom;
    return q + h[FO_NADAM_AVG_COEF] * exp_avg / denom;
}
