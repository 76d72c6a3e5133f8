/* RMSprop (fastopt/rules/rmsprop.py). f0: centered, f1: momentum;
   s0: square_avg, s1: grad_avg, s2: momentum_buffer. */
FO_ELEMENT(rmsprop)
{
    const REAL alpha = h[FO_RMSPROP_ALPHA], one_minus_alpha = h[FO_RMSPROP_ONE_MINUS_ALPHA];
    const REAL square_avg = alpha * s0[i] + one_minus_alpha * g * g;
    REAL avg;
    s0[i] = square_avg;
    if (f0) {
        const REAL grad_avg = alpha * s1[i] + one_minus_alpha * g;
        s1[i] = grad_avg;
        avg = sqrt(square_avg - grad_avg * grad_avg) + h[FO_RMSPROP_EPS];
    } else {
        avg = sqrt(square_avg) + h[FO_RMSPROP_EPS];
    }
    if (f1) {
        const REAL buf = h[FO_RMSPROP_MOMENTUM] * s2[i] + g / avg;
        s2[i] = buf;
        return p - h[FO_RMSPROP_LR] * buf;
    }
    return p - h[FO_RMSPROP_LR] * g / avg;
}
