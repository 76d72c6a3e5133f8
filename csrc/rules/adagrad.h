/* Adagrad (fastopt/rules/adagrad.py). s0: sum. */
FO_ELEMENT(adagrad)
{
    const REAL state_sum = s0[i] + g * g;
    s0[i] = state_sum;
    return p - h[FO_ADAGRAD_CLR] * g / (sqrt(state_sum) + h[FO_ADAGRAD_EPS]);
}
