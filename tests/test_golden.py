"""Outputs and gradients bitwise equal to those saved from the build before the redesign (issue 14),
at one thread, for each instruction set this CPU runs (tests/golden: the cases and how they were made)."""

import os
import sys

import numpy as np
import pytest
from conftest import num_threads

import lstm_fast as lf
from lstm_fast import _core

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
sys.path.insert(0, GOLDEN)
from cases import CASES, run  # noqa: E402


@pytest.fixture
def isa_set():
    before = lf.isa()
    yield _core.set_isa
    _core.set_isa(before)


def saved(isa, name):
    with np.load(os.path.join(GOLDEN, f"golden_{isa}.npz")) as f:
        return {key[len(name) + 1 :]: f[key] for key in f.files if key.startswith(name + "/")}


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_bitwise_as_before_the_redesign(isa, name, isa_set):
    if isa not in lf.supported_isas():
        pytest.skip(f"this CPU or build does not run {isa}")
    isa_set(isa)
    arrays = saved(isa, name)
    kwargs, _, _, _ = CASES[name]
    model = lf.LSTM(**kwargs)
    model.load_state_dict({k[len("param/") :]: v for k, v in arrays.items() if k.startswith("param/")})
    given = {k[len("in/") :]: v for k, v in arrays.items() if k.startswith("in/")}
    expected = {k[len("out/") :]: v for k, v in arrays.items() if k.startswith("out/")}
    with num_threads(1):
        got = run(
            model,
            given["x"],
            (given["h0"], given["c0"]),
            given.get("lengths"),
            given["dy"],
            (given["dh_n"], given["dc_n"]),
        )
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        np.testing.assert_array_equal(got[key], value, err_msg=f"{name}: {key} differs from the saved bits")
