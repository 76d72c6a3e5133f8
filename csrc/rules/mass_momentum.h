/* Momentum, HIPS autograd's form (fastopt/rules/mass_momentum.py). s0: velocity. */
FO_ELEMENT(mass_momentum)
{
    const REAL velocity = h[FO_MASS_MOMENTUM_MASS] * s0[i] - h[FO_MASS_MOMENTUM_ONE_MINUS_MASS] * g;
    s0[i] = velocity;
    return p + h[FO_MASS_MOMENTUM_STEP_SIZE] * velocity;
}
