"""Model files are untrusted input: every hostile file refused with a ValueError, nothing allocated on
a config's word, no pickle, save atomic.

tests/fuzz/regressions/ holds the hostile files (tests/fuzz/make_regressions.py writes them; fuzzer
findings are added there too); tests/test_cpp.py loads the same folder with the C++ loader.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import lstm_fast as lf

REGRESSIONS = sorted((Path(__file__).resolve().parent / "fuzz" / "regressions").iterdir())


def test_the_regression_folder_is_there():
    assert len(REGRESSIONS) >= 40  # the test below must not pass by finding no file


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_hostile_file_is_refused_with_a_value_error(path):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"^path '.*" + path.name) as info:
            lf.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(str(info.value)) < 2000  # a message, not a dump of the file
    # Nothing was allocated on the file's word: the largest of these files is 20 KB.
    assert peak < 16 * 2**20, f"loading {path.name} allocated {peak} bytes"


def _save_with(path, model, config=None, tensors=None):
    from safetensors.numpy import save_file

    save_file(
        dict(model.state_dict() if tensors is None else tensors),
        str(path),
        metadata={"format": "lstm_fast/1", "config": json.dumps(config or model.config())},
    )


def test_a_config_claiming_gigabytes_fails_on_its_tensors_before_allocating(tmp_path):
    # LSTM(3, 20000) would be 1.6e9 parameters (6.4 GB): the file's small tensors refute it first.
    model = lf.LSTM(3, 4)
    path = tmp_path / "m.safetensors"
    _save_with(path, model, config={**model.config(), "hidden_size": 20000})
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"tensor weight_ih_l0 must have shape \(80000, 3\), got \(16, 3\)"):
            lf.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_a_config_of_millions_of_layers_fails_on_the_first_missing_tensor(tmp_path):
    # LSTM(1, 1, num_layers=10**7) fits in memory (1.6e8 numbers), but listing its 4e7 expected
    # tensors would take a minute and gigabytes: the loader stops at the first one the file lacks.
    model = lf.LSTM(1, 1)
    path = tmp_path / "m.safetensors"
    _save_with(path, model, config={**model.config(), "num_layers": 10**7})
    with pytest.raises(ValueError, match=r"is missing tensor weight_ih_l1 \(expected shape \(4, 1\)\)"):
        lf.load(path)


@pytest.mark.parametrize("dtype, name", [(np.int32, "I32"), (np.float16, "F16"), (bool, "BOOL")])
def test_tensors_of_other_dtypes_are_refused_like_the_cpp_loader_does(tmp_path, dtype, name):
    model = lf.LSTM(3, 4)
    path = tmp_path / "m.safetensors"
    tensors = {k: v.astype(dtype) for k, v in model.state_dict().items()}
    _save_with(path, model, tensors=tensors)
    with pytest.raises(ValueError, match=rf"tensor weight_ih_l0 has dtype {name}, expected F32 or F64"):
        lf.load(path)


def test_missing_and_extra_tensors_are_named(tmp_path):
    model = lf.LSTM(3, 4)
    path = tmp_path / "m.safetensors"
    tensors = dict(model.state_dict())
    del tensors["bias_hh_l0"]
    tensors["weight_hr_l0"] = np.zeros((2, 4), np.float32)
    _save_with(path, model, tensors=tensors)
    with pytest.raises(ValueError, match=r"is missing tensor bias_hh_l0 \(expected shape \(16,\)\)"):
        lf.load(path)
    tensors = {**model.state_dict(), "weight_hr_l0": np.zeros((2, 4), np.float32)}
    _save_with(path, model, tensors=tensors)
    with pytest.raises(ValueError, match=r'has an unexpected tensor "weight_hr_l0"'):
        lf.load(path)


def test_float64_file_into_a_float32_config_is_converted(tmp_path):
    # The config decides the model's dtype; the stored one may be either float.
    model = lf.LSTM(3, 4, seed=1)
    path = tmp_path / "m.safetensors"
    _save_with(path, model, tensors={k: v.astype(np.float64) for k, v in model.state_dict().items()})
    loaded = lf.load(path)
    assert loaded.dtype == np.float32
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)


def test_save_is_atomic_and_an_existing_file_survives_a_failed_save(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    good = lf.LSTM(3, 4, seed=1)
    good.save(path)
    before = path.read_bytes()

    import safetensors.numpy

    def failing_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        lf.LSTM(3, 4, seed=2).save(path)
    assert path.read_bytes() == before  # the old model, whole
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind


def test_no_pickle_in_the_package():
    # Model files hold tensors and JSON only: nothing in the package can unpickle.
    package = Path(lf.__file__).resolve().parent
    forbidden = ("import pickle", "pickle.load", "allow_pickle=True", "torch.load(", "import dill", "cloudpickle")
    for source in package.glob("*.py"):
        text = source.read_text()
        assert not [f for f in forbidden if f in text], source.name


def test_a_folder_is_refused_with_a_value_error_and_a_missing_file_is_not_found(tmp_path):
    with pytest.raises(ValueError, match=r"cannot read path '.*': Is a directory"):
        lf.load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: '.*missing.safetensors'"):
        lf.load(tmp_path / "missing.safetensors")
