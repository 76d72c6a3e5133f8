"""Blockwise 8-bit quantization (Dettmers et al. 2021, "8-bit Optimizers via Block-wise
Quantization"; bitsandbytes' dynamic maps), for 8-bit optimizer state.

A tensor is flattened and cut into blocks of :data:`BLOCK_SIZE` consecutive elements.
Each block keeps one float32 ``absmax`` (the largest magnitude in it) and one uint8
code per element: the index of the codebook entry nearest to ``x / absmax``, with two
exceptions that keep the sign and the zeros of the state: a nonzero value never takes
the code of 0 or a code of the other sign (it takes the next entry toward its own
sign), and 0 is always coded as exactly 0. Decoding is ``codebook[code] * absmax``.

Two codebooks, bitsandbytes' ``create_dynamic_map(signed=True)`` and
``(signed=False)``, 256 sorted float32 values each: :data:`SIGNED_MAP` (-0.99296875
... 0 ... 1.0) for states that can be negative (Adam's ``exp_avg``, momentum
buffers), :data:`UNSIGNED_MAP` (0 ... 1.0) for states that never are
(``exp_avg_sq``, Adagrad's sum). They are shipped as bit patterns; tests check them
against :func:`create_dynamic_map`, against the construction in torch, and against
bitsandbytes where those are installed.
"""


import functools

import numpy as np

BLOCK_SIZE = 256


def _linspace32(start, stop, count):
    """torch.linspace(start, stop, count, dtype=torch.float32), bit for bit: a float32
    step, the first half counted up from ``start`` and the second down from ``stop``,
    each value rounded once (torch's kernel fuses the multiply-add)."""
    start, stop = np.float32(start), np.float32(stop)
    step = np.float64((stop - start) / np.float32(count - 1))
    i = np.arange(count)
    up = (np.float64(start) + step * i).astype(np.float32)
    down = (np.float64(stop) - step * (count - 1 - i)).astype(np.float32)
    return np.where(i < count // 2, up, down)


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """bitsandbytes' dynamic quantization map: for each exponent ``10**-e`` (e = 6
    ... 0), the midpoints of a float32 linspace over [0.1, 1] with 2**(e') + 1 points
    (twice as many unsigned), times ``10**-e`` (and its negatives, when signed), then 0
    and 1.0, padded with zeros to 256 and sorted (float32 arithmetic throughout, as
    bitsandbytes computes it in torch)."""
    data = []
    non_sign_bits = total_bits - 1
    extra = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        count = 2 ** (i + non_sign_bits - max_exponent_bits + (0 if signed else 1)) + 1
        data += _scaled_means(count, max_exponent_bits, i, signed)
    if extra > 0:
        data += _scaled_means(extra + 1, max_exponent_bits, max_exponent_bits - 1, signed)
    data += [np.float32(0.0), np.float32(1.0)]
    if len(data) > 2 ** total_bits:
        raise ValueError(f"{len(data)} values do not fit {total_bits} bits")
    data += [np.float32(0.0)] * (256 - len(data))
    return np.sort(np.array(data, dtype=np.float32))


def _scaled_means(count, max_exponent_bits, i, signed):
    bounds = _linspace32(0.1, 1.0, count)
    means = (bounds[:-1] + bounds[1:]) / np.float32(2.0)
    scale = np.float32(10.0 ** (-(max_exponent_bits - 1) + i))
    values = list(scale * means)
    return values + (list(-scale * means) if signed else [])


def _from_bits(words):
    table = np.array(words, dtype=np.uint32).view(np.float32)
    table.flags.writeable = False
    return table


# create_dynamic_map(True) and create_dynamic_map(False), as float32 bit patterns.
SIGNED_MAP = _from_bits([
    0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a,
    0xbf650000, 0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666,
    0xbf4bcccd, 0xbf483333, 0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334,
    0xbf32999a, 0xbf2f0000, 0xbf2b6666, 0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000,
    0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a, 0xbf0b0000, 0xbf076666, 0xbf03cccc,
    0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a, 0xbedc6666, 0xbed53333,
    0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000, 0xbea2cccc,
    0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
    0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000,
    0xbddb3334, 0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8,
    0xbda75c2a, 0xbda1999a, 0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd,
    0xbd7e147b, 0xbd728f5d, 0xbd670a3d, 0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3,
    0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148, 0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7,
    0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148, 0xbc1f3b64, 0xbc160418,
    0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4, 0xbbab020d,
    0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
    0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705,
    0xb923d70b, 0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94,
    0xb513a3b7, 0x00000000, 0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034,
    0x388aefb3, 0x38ba1f4b, 0x3923d70b, 0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1,
    0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d, 0x3af1a9fc, 0x3b1db22d, 0x3b428f5c,
    0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4, 0x3bcfdf3b, 0x3be24dd3,
    0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148, 0x3c68f5c3,
    0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
    0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f,
    0x3d670a3d, 0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b,
    0x3d9bd70a, 0x3da1999a, 0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667,
    0x3dc428f7, 0x3dc9eb85, 0x3ddb3334, 0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333,
    0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd, 0x3e6f3333, 0x3e7d9999, 0x3e860000,
    0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000, 0x3eb13333, 0x3eb86666,
    0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a, 0x3eeacccc,
    0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
    0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd,
    0x3f2b6666, 0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000,
    0x3f44999a, 0x3f483333, 0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333,
    0x3f5dcccd, 0x3f616666, 0x3f650000, 0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666,
    0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000])
UNSIGNED_MAP = _from_bits([
    0x00000000, 0x34ae7baa, 0x35500998, 0x360e9b38, 0x3692ccf6, 0x36de4c51, 0x3714e5d5,
    0x3783126e, 0x37e171a0, 0x381fe868, 0x384f1800, 0x387e479a, 0x3896bb99, 0x38ae5364,
    0x38c5eb31, 0x3906594b, 0x394154ca, 0x397c5049, 0x399ba5e4, 0x39b923a2, 0x39d6a163,
    0x39f41f22, 0x3a08ce71, 0x3a178d50, 0x3a264c30, 0x3a350b10, 0x3a43c9ef, 0x3a5288d0,
    0x3a6147af, 0x3a70068e, 0x3a7ec56e, 0x3a958106, 0x3aba5e35, 0x3adf3b64, 0x3b020c4a,
    0x3b147ae1, 0x3b26e978, 0x3b395810, 0x3b4bc6a7, 0x3b5e3540, 0x3b70a3d7, 0x3b818937,
    0x3b8ac082, 0x3b93f7cf, 0x3b9d2f1a, 0x3ba66666, 0x3baf9db2, 0x3bb8d4fd, 0x3bc20c4a,
    0x3bcb4395, 0x3bd47ae1, 0x3bddb22e, 0x3be6e978, 0x3bf020c5, 0x3bf9580f, 0x3c0147ae,
    0x3c05e354, 0x3c0a7ef9, 0x3c0f1aa0, 0x3c13b645, 0x3c1851eb, 0x3c1ced92, 0x3c218937,
    0x3c2f5c2a, 0x3c466667, 0x3c5d70a3, 0x3c747ae2, 0x3c85c28f, 0x3c9147af, 0x3c9ccccd,
    0x3ca851eb, 0x3cb3d70b, 0x3cbf5c29, 0x3ccae147, 0x3cd66667, 0x3ce1eb87, 0x3ced70a3,
    0x3cf8f5c3, 0x3d023d70, 0x3d080000, 0x3d0dc28f, 0x3d13851f, 0x3d1947af, 0x3d1f0a3d,
    0x3d24cccd, 0x3d2a8f5c, 0x3d3051eb, 0x3d36147b, 0x3d3bd70a, 0x3d41999a, 0x3d475c28,
    0x3d4d1eb8, 0x3d52e147, 0x3d58a3d7, 0x3d5e6667, 0x3d6428f7, 0x3d69eb87, 0x3d6fae15,
    0x3d7570a3, 0x3d7b3333, 0x3d807ae2, 0x3d835c2a, 0x3d863d71, 0x3d891eb8, 0x3d8c0000,
    0x3d8ee148, 0x3d91c290, 0x3d94a3d7, 0x3d97851f, 0x3d9a6667, 0x3d9d47af, 0x3da028f6,
    0x3da30a3e, 0x3da5eb85, 0x3da8cccd, 0x3dabae15, 0x3dae8f5c, 0x3db170a4, 0x3db451eb,
    0x3db73333, 0x3dba147b, 0x3dbcf5c3, 0x3dbfd70b, 0x3dc2b852, 0x3dc5999a, 0x3dc87ae2,
    0x3dcb5c29, 0x3dd40000, 0x3de26666, 0x3df0cccd, 0x3dff3333, 0x3e06cccc, 0x3e0e0000,
    0x3e153334, 0x3e1c6666, 0x3e23999a, 0x3e2acccc, 0x3e320000, 0x3e393334, 0x3e406666,
    0x3e47999a, 0x3e4ecccc, 0x3e560000, 0x3e5d3334, 0x3e646666, 0x3e6b999a, 0x3e72cccc,
    0x3e7a0000, 0x3e809999, 0x3e843333, 0x3e87cccd, 0x3e8b6666, 0x3e8f0000, 0x3e92999a,
    0x3e963333, 0x3e99cccc, 0x3e9d6666, 0x3ea10000, 0x3ea4999a, 0x3ea83333, 0x3eabcccc,
    0x3eaf6666, 0x3eb30000, 0x3eb6999a, 0x3eba3333, 0x3ebdcccc, 0x3ec16666, 0x3ec50000,
    0x3ec8999a, 0x3ecc3333, 0x3ecfcccc, 0x3ed36666, 0x3ed70000, 0x3eda999a, 0x3ede3333,
    0x3ee1cccc, 0x3ee56666, 0x3ee90000, 0x3eec999a, 0x3ef03333, 0x3ef3cccc, 0x3ef76666,
    0x3efb0000, 0x3efe9999, 0x3f01199a, 0x3f02e666, 0x3f04b333, 0x3f068000, 0x3f084ccc,
    0x3f0a199a, 0x3f0be666, 0x3f0db334, 0x3f0f8000, 0x3f114ccd, 0x3f13199a, 0x3f14e666,
    0x3f16b334, 0x3f188000, 0x3f1a4ccd, 0x3f1c199a, 0x3f1de666, 0x3f1fb334, 0x3f218000,
    0x3f234ccd, 0x3f25199a, 0x3f26e666, 0x3f28b334, 0x3f2a8000, 0x3f2c4ccd, 0x3f2e199a,
    0x3f2fe666, 0x3f31b334, 0x3f338000, 0x3f354ccd, 0x3f37199a, 0x3f38e666, 0x3f3ab334,
    0x3f3c8000, 0x3f3e4ccd, 0x3f40199a, 0x3f41e666, 0x3f43b334, 0x3f458000, 0x3f474ccc,
    0x3f49199a, 0x3f4ae666, 0x3f4cb334, 0x3f4e8000, 0x3f504ccc, 0x3f52199a, 0x3f53e666,
    0x3f55b334, 0x3f578000, 0x3f594ccc, 0x3f5b199a, 0x3f5ce666, 0x3f5eb334, 0x3f608000,
    0x3f624ccc, 0x3f64199a, 0x3f65e666, 0x3f67b334, 0x3f698000, 0x3f6b4ccc, 0x3f6d199a,
    0x3f6ee666, 0x3f70b334, 0x3f728000, 0x3f744ccc, 0x3f76199a, 0x3f77e666, 0x3f79b334,
    0x3f7b8000, 0x3f7d4ccc, 0x3f7f199a, 0x3f800000])


def codebook(signed):
    """:data:`SIGNED_MAP` or :data:`UNSIGNED_MAP`."""
    return SIGNED_MAP if signed else UNSIGNED_MAP


def zero_code(signed):
    """The code of 0: 127 in the signed map, 0 in the unsigned one."""
    return int(np.flatnonzero(codebook(signed) == 0)[0])


def blocks(n):
    """The number of blocks (absmax values) of ``n`` elements: ceil(n / BLOCK_SIZE)."""
    return -(-int(n) // BLOCK_SIZE)


def encode(normalized, signed, sign=None):
    """The codes of values already divided by their block's absmax (in [-1, 1]): the
    codebook entry nearest in exact arithmetic (distances of float32 values are exact
    in float64; a value halfway between two entries takes the lower), except that a
    nonzero value never takes the code of 0 or a code of the other sign. ``sign``: the
    signs of the values before the division (a tiny value can divide to 0), by default
    those of ``normalized``."""
    table = codebook(signed)
    v = np.asarray(normalized, dtype=np.float32)
    sign = np.sign(v) if sign is None else np.asarray(sign)
    upper = np.clip(np.searchsorted(table, v, side="left"), 1, table.size - 1)
    wide = table.astype(np.float64)
    closer_up = wide[upper] - v < v - wide[upper - 1]
    codes = np.where(closer_up, upper, upper - 1)
    value = table[codes]
    codes = codes + ((sign > 0) & (value <= 0)) - ((sign < 0) & (value >= 0))
    codes[(sign == 0) | ~(np.abs(v) <= 1)] = zero_code(signed)  # NaN: the code of 0
    return codes.astype(np.uint8)


def quantize_blockwise(x, signed):
    """``(codes, absmax)`` of ``x`` (any float array; flattened in C order): uint8 codes
    of x's shape and float32 absmax, one per block of :data:`BLOCK_SIZE`. A block of
    zeros has absmax 0 and the code of 0 throughout (decoded exactly 0)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"x must be a float array, got {x.dtype}")
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if not signed and (flat < 0).any():
        raise ValueError("the unsigned codebook cannot hold negative values")
    n = flat.size
    padded = np.zeros(blocks(n) * BLOCK_SIZE, dtype=np.float32)
    padded[:n] = flat
    rows = padded.reshape(-1, BLOCK_SIZE)
    absmax = np.abs(rows).max(axis=1)
    # A block of zeros (absmax 0), or one holding a NaN (absmax NaN): the code of 0
    # throughout, which decodes to 0, or to NaN for the whole block.
    scale = np.where(absmax > 0, absmax, np.float32(np.nan))
    normalized = (rows / scale[:, None]).reshape(-1)[:n]
    return encode(normalized, signed, np.sign(flat)).reshape(x.shape), absmax


def dequantize_blockwise(codes, absmax, signed):
    """float32 values of ``codes`` (uint8, any shape; blocks in C order) with their
    blocks' ``absmax``: ``codebook[code] * absmax``."""
    codes = np.asarray(codes)
    absmax = np.asarray(absmax, dtype=np.float32).reshape(-1)
    if codes.dtype != np.uint8:
        raise TypeError(f"codes must be uint8, got {codes.dtype}")
    if absmax.size != blocks(codes.size):
        raise ValueError(f"{codes.size} codes need {blocks(codes.size)} absmax values "
                         f"(one per block of {BLOCK_SIZE}), got {absmax.size}")
    flat = codes.reshape(-1)
    per_element = np.repeat(absmax, BLOCK_SIZE)[:flat.size]
    return (codebook(signed)[flat] * per_element).reshape(codes.shape)


# -- the encoder of the fused kernels ---------------------------------------------------
# A kernel codes one value at a time, with no search: the magnitude a = |v| / absmax in
# (0, 1] is split as frexp(a) = (mantissa in [0.5, 1), exponent), and its exponent and
# the top 9 bits of its mantissa (the top 18 bits of the float) index a table of
# buckets. A bucket is 2**-9 of its octave wide, narrower than any gap between two
# codebook magnitudes (0.35% at least, near 1.0 unsigned), so the nearest magnitude for
# the bucket's values is the one nearest to its lowest value, k, or the next: a
# comparison with their midpoint decides, and since the float32 values above the
# midpoint are those from some float32 t up, it compares the low 14 bits of the float
# with those of t. One int32 per bucket holds k and t: one table load (a gather, in a
# vectorised loop) a value, and no branches.

MANTISSA_BITS = 9
LOW_BITS = 23 - MANTISSA_BITS  # the bits of a float below its bucket index
# Below 2**-23 (frexp exponent -22) every magnitude takes code 1, the smallest nonzero
# entry (3.25e-7 unsigned, 5.5e-7 signed): the nearest one once 0 is excluded.
MIN_EXPONENT = -22
_NEVER = 1 << LOW_BITS  # a threshold no low bits reach


@functools.cache
def encoder_tables(signed):
    """The encoder's bucket table (int32, read-only), one entry per bucket: ``k << 16 |
    exact << 15 | t``, where k indexes the codebook's magnitudes (0 first: the signed
    map's upper half, or the unsigned map) nearest to the bucket's lowest value, and a
    value of the bucket is nearer to magnitude k + 1 when its low bits are at least
    ``t`` (``t - exact`` for a negative value, which takes the lower value, k + 1, on
    a tie: ``exact`` says the midpoint of k and k + 1 is a float32)."""
    table = codebook(signed)
    magnitudes = table[zero_code(signed):]
    count = (1 - MIN_EXPONENT + 1) << MANTISSA_BITS
    index = np.arange(count)
    exponent = index // (1 << MANTISSA_BITS) + MIN_EXPONENT
    mantissa = 0.5 + (index % (1 << MANTISSA_BITS)) / float(1 << (MANTISSA_BITS + 1))
    low = np.ldexp(mantissa, exponent).astype(np.float32)  # exact: 10 significant bits
    wide = magnitudes.astype(np.float64)
    upper = np.clip(np.searchsorted(magnitudes, low, side="left"), 1, magnitudes.size - 1)
    nearest = np.where(wide[upper] - low < low - wide[upper - 1], upper, upper - 1)
    last = nearest == magnitudes.size - 1
    mid = (wide[nearest] + wide[np.minimum(nearest + 1, magnitudes.size - 1)]) / 2
    above = mid.astype(np.float32)  # the least float32 above mid: nearer to k + 1
    exact = above == mid
    above = np.where(above <= mid, np.nextafter(above, np.float32(np.inf)), above)
    start = low.view(np.int32).astype(np.int64)
    t = np.clip(above.view(np.int32).astype(np.int64) - start, 0, _NEVER + 1)
    t[last] = _NEVER + 1
    exact &= ~last
    buckets = (nearest.astype(np.int64) << 16 | exact.astype(np.int64) << 15 | t)
    buckets = buckets.astype(np.int32)
    buckets.flags.writeable = False
    return buckets


@functools.cache
def codec_tables():
    """``(maps, buckets)`` for the C and CUDA kernels, signed row first: the two
    codebooks (2, 256) and their :func:`encoder_tables` (2, buckets), read-only."""
    tables = (np.stack([SIGNED_MAP, UNSIGNED_MAP]),
              np.stack([encoder_tables(True), encoder_tables(False)]))
    for table in tables:
        table.flags.writeable = False
    return tables


def float_bits(x):
    """The bits of float32 ``x`` as an unsigned integer (in Python; each compiled target
    binds its own bit cast in :func:`encoder`)."""
    return int(np.float32(x).view(np.uint32))


# The encoder below is plain scalar Python that Numba compiles for the CPU and for CUDA
# (:func:`encoder`). It has no branches (booleans enter as 0 or 1 and ``&`` does not
# short-circuit), so that a loop of encodes vectorises. Its integers are int32: Numba
# widens int32 arithmetic to int64, and each result narrowed back with ``_i32`` lets
# LLVM keep 32-bit lanes (8 a vector with AVX2, rather than 4 with emulated 64-bit
# minima and maxima). Every value fits: bits below 2**31, table entries, codes.
_i32 = np.int32
_FIRST_BUCKET = _i32((126 + MIN_EXPONENT) << MANTISSA_BITS)  # the bucket index's offset
_LOW_MASK = _i32(_NEVER - 1)


def bucket_index(a, count):
    """The index, among ``count`` buckets, of the bucket of quotient ``a = |v| / absmax``
    (a NaN takes some bucket: it codes as 0 whatever the bucket says). Every value
    below the first bucket (2**-23) takes the first, which codes it as 1."""
    bits = _i32(float_bits(a) & 0x7FFFFFFF)  # a NaN may carry a sign bit
    return min(max(_i32((bits >> LOW_BITS) - _FIRST_BUCKET), _i32(0)), _i32(count - 1))


def code_from_entry(v, absmax, a, entry, signed):
    """The code of ``v`` in a block of ``absmax``, from its quotient ``a = |v| / absmax``
    and the entry of its bucket (``buckets[bucket_index(a, len(buckets))]``)."""
    zero = _i32(127) if signed else _i32(0)
    negative = _i32(v < 0)
    bits = _i32(float_bits(a) & 0x7FFFFFFF)
    threshold = _i32((entry & 0x7FFF) - (negative & (entry >> 15)))
    k = _i32((entry >> 16) + _i32((bits & _LOW_MASK) >= threshold))
    # 0 is not allowed for a nonzero value, nor -1.0 (not in the signed map)
    k = min(max(k, _i32(1)), _i32(255 - zero - negative))
    valid = _i32(v != 0) & _i32(absmax > 0) & _i32(a <= 1)
    return _i32(zero + k * (1 - 2 * negative) * valid)  # 0, or NaN: the code of 0


def encode_value(v, absmax, buckets, signed):
    """The code of ``v`` in a block of ``absmax`` (both float32; ``absmax >= |v|``), by
    :func:`encode`'s rule, ``encode(v / absmax, signed, sign(v))``, with the bucket
    table of :func:`encoder_tables`. A vectorised loop can run its three steps as
    three loops (the quotients and bucket indices; the table reads; the codes), which
    keeps the table reads out of the arithmetic where a CPU's gathers are slow."""
    a = abs(v) / absmax
    return code_from_entry(v, absmax, a, buckets[bucket_index(a, buckets.shape[0])], signed)


_ENCODER_FUNCTIONS = (bucket_index, code_from_entry, encode_value)


def encoder(jit, bits):
    """:func:`bucket_index`, :func:`code_from_entry` and :func:`encode_value` compiled by
    ``jit`` with ``bits`` (that target's float32 to integer bit cast) in place of
    :func:`float_bits`, as a namespace of those names."""
    import types
    namespace = {**globals(), "float_bits": bits}
    for function in _ENCODER_FUNCTIONS:  # encode_value calls the compiled two
        namespace[function.__name__] = jit(types.FunctionType(
            function.__code__, namespace, function.__name__))
    return types.SimpleNamespace(**{f.__name__: namespace[f.__name__]
                                    for f in _ENCODER_FUNCTIONS})


__all__ = ["BLOCK_SIZE", "SIGNED_MAP", "UNSIGNED_MAP", "create_dynamic_map", "codebook",
           "blocks", "zero_code", "encode", "quantize_blockwise", "dequantize_blockwise",
           "encoder_tables", "codec_tables", "bucket_index", "code_from_entry", "encode_value",
           "encoder", "float_bits"]
