/* SGD (fastopt/rules/sgd.py). f0: momentum, f1: nesterov; s0: momentum_buffer. */
FO_ELEMENT(sgd)
{
    REAL gi = g;
    if (f0) {
        const REAL momentum = h[FO_SGD_MOMENTUM];
        const REAL buf = h[FO_SGD_FIRST] != h[FO_ZERO]
                             ? g : momentum * s0[i] + h[FO_SGD_DAMPENED] * g;
        s0[i] = buf;
        gi = f1 ? g + momentum * buf : buf;
    }
    return p - h[FO_SGD_LR] * gi;
}
