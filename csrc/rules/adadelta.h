/* Adadelta (fastopt/rules/adadelta.py). s0: square_avg, s1: acc_delta. */
FO_ELEMENT(adadelta)
{
    const REAL rho = h[FO_ADADELTA_RHO], one_minus_rho = h[FO_ADADELTA_ONE_MINUS_RHO];
    const REAL eps = h[FO_ADADELTA_EPS];
    const REAL square_avg = rho * s0[i] + one_minus_rho * g * g;
    const REAL std = sqrt(square_avg + eps);
    const REAL delta = sqrt(s1[i] + eps) / std * g;
    s0[i] = square_avg;
    s1[i] = rho * s1[i] + one_minus_rho * delta * delta;
    return p - h[FO_ADADELTA_LR] * delta;
}
