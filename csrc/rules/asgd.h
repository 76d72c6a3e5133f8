/* Averaged SGD (fastopt/rules/asgd.py). s0: ax. */
FO_ELEMENT(asgd)
{
    const REAL q = p * h[FO_ASGD_SHRINK] - h[FO_ASGD_ETA] * g;
    s0[i] = h[FO_ASGD_MU] != h[FO_ONE] ? s0[i] + (q - s0[i]) * h[FO_ASGD_MU] : q;
    return q;
}
