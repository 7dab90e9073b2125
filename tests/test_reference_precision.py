"""The reference's reduced precisions (lstm_fast.reference: precision="bf16" | "int8"), the oracle the
frozen models of those precisions are held to: the rounding and quantization themselves, and the
forward pass that uses them."""

import numpy as np
import pytest
from conftest import random_case, reference_forward

from lstm_fast import reference as ref


def bits(v):
    return np.asarray(v, np.float32).view(np.uint32)


def test_bf16_rounds_to_nearest_even():
    # Near 1 bfloat16 steps by 2^-7: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 (even: 1), and
    # 1 + 3 2^-8 halfway between 1 + 2^-7 and 1 + 2^-6 (even: 1 + 2^-6).
    cases = {
        1.0: 1.0,
        1 + 2**-8: 1.0,
        1 + 3 * 2**-8: 1 + 2**-6,
        1 + 2**-8 + 2**-20: 1 + 2**-7,  # above halfway
        -2.5: -2.5,
        np.inf: np.inf,
        float(np.finfo(np.float32).max): np.inf,  # above the largest bfloat16 by more than half a step
        2.0**-149: 0.0,  # the smallest float32 subnormal
    }
    got = ref.bf16(np.array(list(cases)))
    np.testing.assert_array_equal(got, np.array(list(cases.values())))
    assert np.isnan(ref.bf16([np.nan]))[0]
    assert np.signbit(ref.bf16([-0.0]))[0]


def test_bf16_keeps_the_top_16_bits_and_moves_at_most_half_a_step(rng):
    v = (rng.standard_normal(100_000) * 10.0 ** rng.integers(-38, 38, 100_000)).astype(np.float32)
    r = ref.bf16(v)
    assert not (bits(r) & 0xFFFF).any()
    ulp = np.spacing(np.abs(r).astype(np.float32)).astype(np.float64) * 2**16  # a bfloat16 step at r
    assert (np.abs(r - v.astype(np.float64)) <= ulp / 2).all()


def test_bf16_matches_torch_bitwise(rng):
    torch = pytest.importorskip("torch")
    v = np.concatenate(
        [
            rng.standard_normal(100_000) * 10.0 ** rng.integers(-38, 38, 100_000),
            rng.standard_normal(1000) * 1e-40,  # subnormals
            [0.0, -0.0, np.inf, -np.inf],
        ]
    ).astype(np.float32)
    expected = torch.from_numpy(v).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(bits(ref.bf16(v)), bits(expected))


def test_quantize_rows_is_symmetric_per_row(rng):
    v = rng.standard_normal((6, 40)) * rng.uniform(0.01, 100, (6, 1))
    v[2] = 0.0
    q, s = ref.quantize_rows(v)
    assert q.dtype == np.int64 and s.shape == (6, 1)
    assert (np.abs(q) <= 127).all()
    assert (np.abs(q).max(axis=1)[[0, 1, 3, 4, 5]] == 127).all()  # each row's largest maps to +-127
    assert (q[2] == 0).all() and s[2, 0] == 1.0
    assert (np.abs(q * s - v) <= s / 2 * (1 + 1e-12)).all()


def test_int8_products_sum_exactly(rng):
    a = rng.standard_normal((3, 50))
    w = rng.standard_normal((7, 50))
    q_a, s_a = ref.quantize_rows(a)
    q_w, s_w = ref.quantize_rows(w)
    exact = np.array([[sum(int(x) * int(y) for x, y in zip(ra, rw)) for rw in q_w] for ra in q_a])
    np.testing.assert_array_equal(ref._product(a, w, "int8"), exact * s_a * s_w.T)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize(
    "config",
    [
        dict(I=5, H=16),
        dict(I=8, H=32, num_layers=2, bidirectional=True, proj_size=12, peephole=True, with_lengths=True),
    ],
    ids=["plain", "stacked"],
)
def test_reduced_forward_is_near_fp64_and_not_equal(rng, precision, config):
    model, x, state, lengths, _, _ = random_case(rng, T=30, B=3, **config)
    y, (h, c), _ = reference_forward(model, x, state, lengths)
    y_p, (h_p, c_p), _ = reference_forward(model, x, state, lengths, precision=precision)
    for exact, reduced in ((y, y_p), (h, h_p), (c, c_p)):
        error = np.abs(reduced - exact).max()
        assert 1e-7 < error < 2e-2, error  # measured: 4e-4 to 4e-3 at these sizes


def test_int8_is_forward_only(rng):
    # (bf16 has a backward: bf16 training's, tests/test_bf16_training.py)
    model, x, _, _, dy, _ = random_case(rng, T=4, B=2, I=3, H=8)
    _, _, cache = ref.forward(x, model.state_dict(), precision="int8")
    with pytest.raises(ValueError, match="fp64 and bf16 forwards only; this cache is 'int8'"):
        ref.backward(dy, cache)
    with pytest.raises(ValueError, match="precision must be one of"):
        ref.forward(x, model.state_dict(), precision="fp16")
