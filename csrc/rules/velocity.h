/* Velocity-form momentum (fastopt/rules/velocity.py). f0: nesterov; s0: velocity. */
FO_ELEMENT(velocity)
{
    const REAL momentum = h[FO_VELOCITY_MOMENTUM], lr = h[FO_VELOCITY_LR];
    const REAL velocity = momentum * s0[i] - lr * g;
    s0[i] = velocity;
    return f0 ? p + (momentum * velocity - lr * g) : p + velocity;
}
