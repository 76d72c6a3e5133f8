/* Adam/AdamW (fastopt/rules/adam.py). f0: amsgrad; s0: exp_avg, s1: exp_avg_sq,
   s2: max_exp_avg_sq. */
FO_ELEMENT(adam)
{
    const REAL exp_avg = h[FO_ADAM_BETA1] * s0[i] + h[FO_ADAM_ONE_MINUS_BETA1] * g;
    const REAL exp_avg_sq = h[FO_ADAM_BETA2] * s1[i] + h[FO_ADAM_ONE_MINUS_BETA2] * g * g;
    REAL second = exp_avg_sq;
    s0[i] = exp_avg;
    s1[i] = exp_avg_sq;
    if (f0) { /* as torch.maximum, a NaN wins */
        const REAL old = s2[i];
        second = old >= exp_avg_sq ? old : exp_avg_sq;
        s2[i] = second;
    }
    const REAL denom = sqrt(second) / h[FO_ADAM_BC2_SQRT] + h[FO_ADAM_EPS];
    return p - h[FO_ADAM_STEP_SIZE] * exp_avg / denom;
}
