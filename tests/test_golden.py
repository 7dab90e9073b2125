"""Outputs and gradients bitwise equal to those saved from earlier builds, for each instruction set this
CPU runs (tests/golden: the cases and how they were made): at one thread from the build before the
redesign (issue 14), and at two threads, a team sharing each cell's steps, from the build before the
team learnt to share out the work of a late member (issue 15)."""

import os
import sys

import numpy as np
import pytest
from conftest import num_threads

import lstm_fast as lf
from lstm_fast import _core

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
sys.path.insert(0, GOLDEN)
from cases import CASES, TEAM_CASES, run  # noqa: E402


@pytest.fixture
def isa_set():
    before = lf.isa()
    yield _core.set_isa
    _core.set_isa(before)


def saved(isa, name, kind="golden"):
    # The amx set is the AVX-512 one with the tile instructions on top, which training never runs: its
    # bits are the avx512 files'.
    isa = "avx512" if isa == "amx" else isa
    with np.load(os.path.join(GOLDEN, f"{kind}_{isa}.npz")) as f:
        return {key[len(name) + 1 :]: f[key] for key in f.files if key.startswith(name + "/")}


def run_saved(arrays, kwargs, threads):
    model = lf.LSTM(**kwargs)
    model.load_state_dict({k[len("param/") :]: v for k, v in arrays.items() if k.startswith("param/")})
    given = {k[len("in/") :]: v for k, v in arrays.items() if k.startswith("in/")}
    with num_threads(threads):
        return run(
            model,
            given["x"],
            (given["h0"], given["c0"]),
            given.get("lengths"),
            given["dy"],
            (given["dh_n"], given["dc_n"]),
        )


def assert_as_saved(got, arrays, name):
    expected = {k[len("out/") :]: v for k, v in arrays.items() if k.startswith("out/")}
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        np.testing.assert_array_equal(got[key], value, err_msg=f"{name}: {key} differs from the saved bits")


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512", "amx"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_bitwise_as_before_the_redesign(isa, name, isa_set):
    if isa not in lf.supported_isas():
        pytest.skip(f"this CPU or build does not run {isa}")
    isa_set(isa)
    arrays = saved(isa, name)
    assert_as_saved(run_saved(arrays, CASES[name][0], 1), arrays, name)


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512", "amx"])
@pytest.mark.parametrize("name", sorted(TEAM_CASES))
def test_a_team_bitwise_as_before_it_shared_out_work(isa, name, isa_set):
    if isa not in lf.supported_isas():
        pytest.skip(f"this CPU or build does not run {isa}")
    isa_set(isa)
    arrays = saved(isa, name, "team")
    assert_as_saved(run_saved(arrays, TEAM_CASES[name][0], 2), arrays, name)


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512", "amx"])
def test_the_team_cases_run_a_team(isa, isa_set):
    # The check above can fail: at two threads some arrays of the team cases differ from one thread's
    # (a team's split rounds differently), so the saved bits are those of a team, not of one thread.
    if isa not in lf.supported_isas():
        pytest.skip(f"this CPU or build does not run {isa}")
    isa_set(isa)
    differ = set()
    for name, (kwargs, *_) in TEAM_CASES.items():
        arrays = saved(isa, name, "team")
        one = run_saved(arrays, kwargs, 1)
        differ |= {f"{name}/{key}" for key, value in one.items() if not np.array_equal(value, arrays["out/" + key])}
    assert differ, "every team case gives one thread's bits"
