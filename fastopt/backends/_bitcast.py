"""The float32 bit casts of the 8-bit kernels, for any Numba target.

``bit_casts(intrinsic)`` builds, with a target's ``intrinsic`` decorator
(``numba.extending.intrinsic`` or ``numba.cuda.extending.intrinsic``), the pair
``(float_bits, bits_float)``: a float32's bits as a uint32, and the float32 whose
bits are the low 32 of an int64. Each is one LLVM ``bitcast``, which vectorises.
"""


def bit_casts(intrinsic):
    """``(float_bits, bits_float)`` for the target of ``intrinsic``."""
    from llvmlite import ir
    from numba.core import types

    @intrinsic
    def float_bits(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))

        return types.uint32(types.float32), codegen

    @intrinsic
    def bits_float(typingctx, bits):
        def codegen(context, builder, signature, args):
            return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())

        return types.float32(types.int64), codegen

    return float_bits, bits_float
