/* Nesterov momentum, Deep Learning from Scratch's order (fastopt/rules/nesterov_dlfs.py).
   s0: v. */
FO_ELEMENT(nesterov_dlfs)
{
    const REAL v = s0[i] * h[FO_NESTEROV_DLFS_MOMENTUM] - h[FO_NESTEROV_DLFS_LR] * g;
    s0[i] = v;
    const REAL q = p + h[FO_NESTEROV_DLFS_MOMENTUM_SQUARED] * v;
    return q - h[FO_NESTEROV_DLFS_GRAD_STEP] * g;
}
