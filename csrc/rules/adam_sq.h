/* Adam, cs231n's, nnfs' and scikit-learn's rounding (fastopt/rules/adam_sq.py).
   f0: corrected moments; f1: incremental moments (Deep Learning from Scratch);
   s0: m, s1: v. */
FO_ELEMENT(adam_sq)
{
    const REAL m = f1 ? s0[i] + h[FO_ADAM_SQ_ONE_MINUS_BETA1] * (g - s0[i])
                      : h[FO_ADAM_SQ_BETA1] * s0[i] + h[FO_ADAM_SQ_ONE_MINUS_BETA1] * g;
    const REAL v = f1 ? s1[i] + h[FO_ADAM_SQ_ONE_MINUS_BETA2] * (g * g - s1[i])
                      : h[FO_ADAM_SQ_BETA2] * s1[i] + h[FO_ADAM_SQ_ONE_MINUS_BETA2] * (g * g);
    s0[i] = m;
    s1[i] = v;
    if (f0)
        return p - h[FO_ADAM_SQ_LR] * (m / h[FO_ADAM_SQ_BC1]) /
                       (sqrt(v / h[FO_ADAM_SQ_BC2]) + h[FO_ADAM_SQ_EPS]);
    return p - h[FO_ADAM_SQ_LR] * m / (sqrt(v) + h[FO_ADAM_SQ_EPS]);
}
