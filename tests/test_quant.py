"""fastopt.quant: the codebooks against their construction (in NumPy, in torch and in
bitsandbytes where installed), and the blockwise codes against a brute-force
statement of the rule."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastopt import quant


def torch_dynamic_map(torch, signed):
    """bitsandbytes' create_dynamic_map, as it computes it (in torch)."""
    data = []
    for i in range(7):
        count = int(2 ** i + 1 if signed else 2 ** (i + 1) + 1)
        bounds = torch.linspace(0.1, 1, count, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0, 1.0]
    data += [0] * (256 - len(data))
    data.sort()
    return torch.tensor(data, dtype=torch.float32).numpy()


@pytest.mark.parametrize("signed", [True, False])
def test_codebooks_are_the_dynamic_maps(signed):
    table = quant.codebook(signed)
    assert table.dtype == np.float32 and table.shape == (256,)
    assert not table.flags.writeable
    np.testing.assert_array_equal(table.view(np.uint32),
                                  quant.create_dynamic_map(signed).view(np.uint32))
    assert (np.diff(table) > 0).all()  # sorted, every value once
    assert table[-1] == 1.0 and (table == 0).sum() == 1
    if signed:
        assert table[0] == np.float32(-0.99296875) and table[127] == 0
        assert (table[:127] < 0).all() and (table[128:] > 0).all()
    else:
        assert table[0] == 0 and (table[1:] > 0).all()


@pytest.mark.parametrize("signed", [True, False])
def test_codebooks_match_the_construction_in_torch_and_bitsandbytes(signed):
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(quant.codebook(signed).view(np.uint32),
                                  torch_dynamic_map(torch, signed).view(np.uint32))
    try:
        import bitsandbytes.functional as bnb
    except Exception:  # noqa: BLE001 - not installed, or fails to load on this machine
        return
    np.testing.assert_array_equal(quant.codebook(signed),
                                  bnb.create_dynamic_map(signed=signed).numpy())


def brute_force_codes(normalized, signed):
    table = quant.codebook(signed).astype(np.float64)
    codes = []
    for v in normalized.astype(np.float64):
        distance = np.abs(table - v)
        code = int(np.flatnonzero(distance == distance.min())[0])  # a tie: the lower
        if v > 0 and table[code] <= 0:
            code = int(np.flatnonzero(table > 0)[0]) if table[code] == 0 else code + 1
        elif v < 0 and table[code] >= 0:
            code = int(np.flatnonzero(table < 0)[-1])
        if v == 0:
            code = int(np.flatnonzero(table == 0)[0])
        codes.append(code)
    return np.array(codes)


@pytest.mark.parametrize("signed", [True, False])
def test_codes_are_the_nearest_entry_keeping_sign_and_zero(signed, rng):
    table = quant.codebook(signed)
    mids = (table[:-1] + table[1:]) / np.float32(2)
    values = np.concatenate([
        rng.uniform(-1 if signed else 0, 1, 3000).astype(np.float32),
        mids, np.nextafter(mids, np.float32(2)), np.nextafter(mids, np.float32(-2)),  # ties
        np.float32([0, 1e-30, 1e-9, 1, 0.99999994]),
        -np.float32([1e-30, 1e-9, 0.99296875, 1]) if signed else np.float32([])])
    values = values[(values >= 0) | signed]
    np.testing.assert_array_equal(quant.encode(values, signed),
                                  brute_force_codes(values, signed))


def test_blockwise_round_trip(rng):
    x = (rng.standard_normal(1000) * np.logspace(-6, 2, 1000)).astype(np.float32)
    x[[3, 400, 999]] = 0
    x[10], x[11] = 1e-20, -1e-20  # far below their block's resolution
    codes, absmax = quant.quantize_blockwise(x, signed=True)
    assert codes.dtype == np.uint8 and codes.shape == x.shape
    assert absmax.dtype == np.float32 and absmax.shape == (4,)  # ceil(1000 / 256)
    np.testing.assert_array_equal(absmax, [np.abs(x[i:i + 256]).max()
                                           for i in range(0, 1000, 256)])
    y = quant.dequantize_blockwise(codes, absmax, signed=True)
    assert y.dtype == np.float32
    assert (y[[3, 400, 999]] == 0).all() and y[10] > 0 and y[11] < 0
    # every value is within half the widest codebook gap (at its block's scale) of its
    # code, or of -0.99296875, the signed map's end (a block's -absmax lands there)
    table = quant.SIGNED_MAP
    worst = max(np.diff(table).max() / 2, 1 + table[0])
    scale = np.repeat(absmax, 256)[:1000]
    error = np.abs(y.astype(np.float64) - x)
    assert (error <= worst * scale * (1 + 1e-5)).all()
    assert np.abs(y - x).max() < 0.05 * np.abs(x).max()
    # 2-D input: blocks run over the flattened (C-order) array
    codes2, absmax2 = quant.quantize_blockwise(x[:999].reshape(27, 37), signed=True)
    np.testing.assert_array_equal(codes2.reshape(-1), quant.quantize_blockwise(
        x[:999], signed=True)[0])


def test_unsigned_and_zero_blocks():
    v = np.abs(np.sin(np.arange(600, dtype=np.float32)))
    v[256:512] = 0  # a block of zeros
    codes, absmax = quant.quantize_blockwise(v, signed=False)
    assert absmax[1] == 0 and (codes[256:512] == 0).all()
    y = quant.dequantize_blockwise(codes, absmax, signed=False)
    assert (y[256:512] == 0).all() and (y >= 0).all()
    np.testing.assert_allclose(y, v, atol=0.02)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="negative"):
        quant.quantize_blockwise(np.float32([1, -1]), signed=False)
    with pytest.raises(TypeError, match="float"):
        quant.quantize_blockwise(np.arange(4), signed=True)
    codes, absmax = quant.quantize_blockwise(np.ones(300, np.float32), signed=True)
    with pytest.raises(ValueError, match="need 2 absmax"):
        quant.dequantize_blockwise(codes, absmax[:1], signed=True)
    with pytest.raises(TypeError, match="uint8"):
        quant.dequantize_blockwise(codes.astype(np.int16), absmax, signed=True)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 700),
                  elements=st.floats(-2.0**100, 2.0**100, width=32)),
       st.booleans())
def test_quantized_values_keep_sign_zero_and_block_scale(x, signed):
    if not signed:
        x = np.abs(x)
    codes, absmax = quant.quantize_blockwise(x, signed)
    y = quant.dequantize_blockwise(codes, absmax, signed)
    assert (np.sign(y) == np.sign(x)).all()  # zeros stay zero; nothing changes sign
    scale = np.repeat(absmax, 256)[:x.size]
    assert (np.abs(y) <= scale).all()
    np.testing.assert_array_equal(absmax, [np.abs(x[i:i + 256]).max()
                                           for i in range(0, x.size, 256)])


@pytest.mark.parametrize("signed", [True, False])
def test_the_kernels_encoder_gives_the_rules_codes(signed, rng):
    """encode_value (what the compiled kernels run, one value at a time) against
    encode, in Python and as the numba backend compiles it, at several block scales:
    random values, values spread over every decade, the midpoints between codebook
    entries and their float32 neighbours (where a tie or the last bit decides)."""
    buckets = quant.encoder_tables(signed)
    table = quant.codebook(signed).astype(np.float64)
    mids = ((table[:-1] + table[1:]) / 2).astype(np.float32)
    sign = rng.choice([-1, 1], 4000) if signed else 1
    normalized = np.concatenate([
        rng.uniform(-1 if signed else 0, 1, 4000), sign * 10 ** rng.uniform(-9, 0, 4000),
        mids, np.nextafter(mids, np.float32(2)), np.nextafter(mids, np.float32(-2)),
        [0, 1, 1e-30, 1e-9, 2.0 ** -126, 2.0 ** -23, 2.0 ** -24],
        [-1, -1e-30, -1e-9, -2.0 ** -23] if signed else []]).astype(np.float32)
    normalized = np.clip(normalized, -1 if signed else 0, 1)

    def codes_of(encode, values, absmax):
        return np.array([encode(v, absmax, buckets, signed) for v in values])

    compiled = None
    if "numba" in __import__("fastopt").available_backends():
        from fastopt.backends import numba_cpu
        compiled = numba_cpu._encoder.encode_value
    for absmax in (np.float32(1), np.float32(2.5), np.float32(3e-5)):
        values = (normalized * absmax).astype(np.float32)
        want = quant.encode(values / absmax, signed, np.sign(values))
        np.testing.assert_array_equal(codes_of(quant.encode_value, values[::5], absmax),
                                      want[::5])
        if compiled is not None:
            np.testing.assert_array_equal(codes_of(compiled, values, absmax), want)
    zero = 127 if signed else 0
    for v, absmax in ((0, 1), (1, 0), (np.nan, 1), (1, np.nan)):
        assert quant.encode_value(np.float32(v), np.float32(absmax), buckets, signed) == zero


def _c_quantize_blocks(values, signed, wide):
    """fo_quantize_blocks_f32: the C kernels' encoder over blocks of ``values``."""
    from fastopt.backends import c_ffi
    lib, ffi = c_ffi.lib, c_ffi.ffi
    values = np.ascontiguousarray(values, np.float32)
    codes = np.empty(values.size, np.uint8)
    absmax = np.empty(quant.blocks(values.size), np.float32)
    _, buckets = quant.codec_tables()
    buckets = np.ascontiguousarray(buckets)
    lib.fo_quantize_blocks_f32(ffi.from_buffer("float[]", values), values.size,
                               ffi.from_buffer("uint8_t[]", codes),
                               ffi.from_buffer("float[]", absmax), int(signed),
                               ffi.from_buffer("int32_t[]", buckets), int(wide))
    return codes, absmax


def _edge_blocks(signed, rng):
    """Blocks of 256 that try an encoder: in each, one absmax (the block's first value),
    and values at the codebook's midpoints and their float32 neighbours, every decade
    down to subnormals, a ragged last block, and absmax outside the range where the
    C encoder's product is corrected, infinite included (inf / inf is a NaN whose sign
    bit is set on x86)."""
    table = quant.codebook(signed).astype(np.float64)
    mids = ((table[:-1] + table[1:]) / 2).astype(np.float32)
    mids = mids[mids >= 0] if not signed else mids
    normalized = np.concatenate([
        mids, np.nextafter(mids, np.float32(2)), np.nextafter(mids, np.float32(-2)),
        (1 if not signed else rng.choice([-1, 1], 3000)) * 10 ** rng.uniform(-45, 0, 3000),
        rng.uniform(-1 if signed else 0, 1, 2000), [0, 2.0 ** -23, 2.0 ** -24, 1e-40]])
    normalized = np.clip(normalized, -1 if signed else 0, 1).astype(np.float32)
    blocks = []
    scales = [1, np.nextafter(np.float32(2), np.float32(0)), 1.7320508, 3.7e-5, 1e-30,
              2.0 ** -100, 2.0 ** 100, 1e-36, 1e36, np.inf]
    for absmax in scales:
        for part in np.array_split(rng.permutation(normalized), 12):
            block = np.zeros(256, np.float32)
            finite = absmax if np.isfinite(absmax) else 1.0
            values = (part[:255].astype(np.float64) * finite).astype(np.float32)
            block[0], block[1:1 + values.size] = np.float32(absmax), values
            blocks.append(block)
    return np.concatenate(blocks + [blocks[3][:77]])


@pytest.mark.parametrize("signed", [True, False])
def test_the_c_encoders_give_the_rules_codes(signed, rng):
    """The C kernels' two encoders (AVX-512, whose quotient comes from a corrected
    product, and the portable one, which divides) against quantize_blockwise."""
    if "c" not in __import__("fastopt").available_backends():
        pytest.skip("the C backend is not built")
    x = _edge_blocks(signed, rng)
    want = quant.quantize_blockwise(x, signed)
    for wide in (1, 0):
        codes, absmax = _c_quantize_blocks(x, signed, wide)
        np.testing.assert_array_equal(absmax, want[1])
        np.testing.assert_array_equal(codes, want[0], err_msg=f"wide={wide}")


@pytest.mark.parametrize("signed", [True, False])
def test_the_numba_block_coder_gives_the_rules_codes(signed, rng):
    """The numba kernels' block coder (numba_cpu._requantize: the new absmax, then the
    encoder as three loops) against quantize_blockwise."""
    if "numba" not in __import__("fastopt").available_backends():
        pytest.skip("numba is not installed")
    import numba

    from fastopt.backends import numba_cpu

    @numba.njit
    def code_blocks(x, codes, absmax, signed):
        buffer = np.empty(256, np.uint8)
        quotients = np.empty(256, np.float32)
        entries = np.empty(256, np.int32)
        values = np.empty(256, np.float32)
        for b in range(absmax.size):
            m = min(256, x.size - b * 256)
            values[:m] = x[b * 256:b * 256 + m]  # _requantize may write its values
            absmax[b] = numba_cpu._requantize(values, m, codes[b * 256:], signed, buffer,
                                              quotients, entries)

    x = _edge_blocks(signed, rng)
    want = quant.quantize_blockwise(x, signed)
    codes, absmax = np.empty(x.size, np.uint8), np.empty(quant.blocks(x.size), np.float32)
    code_blocks(x, codes, absmax, signed)
    np.testing.assert_array_equal(absmax, want[1])
    np.testing.assert_array_equal(codes, want[0])
