"""state_dict, save and load: torch's names, bit-for-bit round trips, config kept, bad files refused."""

import copy
import json
import pickle

import numpy as np
import pytest

import lstm_fast as lf


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(num_layers=3, bidirectional=True, proj_size=2, peephole=True, dtype=np.float64),
        dict(bias=False, batch_first=True, dropout=0.25, forget_bias=0.0),
        dict(forget_bias=1.0, seed=5),
    ],
)
def test_save_and_load_round_trip(tmp_path, rng, kwargs):
    model = lf.LSTM(3, 4, **kwargs)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = lf.load(path)
    assert loaded.config() == model.config()
    assert list(loaded.state_dict()) == list(model.state_dict())
    for name, value in model.state_dict().items():
        assert loaded.state_dict()[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded.state_dict()[name], value)
    x = rng.normal(size=(5, 2, 3))
    np.testing.assert_array_equal(loaded(x)[0], model(x)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary left behind


def test_state_dict_keys_and_shapes():
    model = lf.LSTM(3, 5, 2, bidirectional=True, proj_size=2, peephole=True)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {
        "weight_ih_l0": (20, 3),
        "weight_hh_l0": (20, 2),
        "bias_ih_l0": (20,),
        "bias_hh_l0": (20,),
        "weight_hr_l0": (2, 5),
        "weight_ih_l0_reverse": (20, 3),
        "weight_hh_l0_reverse": (20, 2),
        "bias_ih_l0_reverse": (20,),
        "bias_hh_l0_reverse": (20,),
        "weight_hr_l0_reverse": (2, 5),
        "weight_ih_l1": (20, 4),
        "weight_hh_l1": (20, 2),
        "bias_ih_l1": (20,),
        "bias_hh_l1": (20,),
        "weight_hr_l1": (2, 5),
        "weight_ih_l1_reverse": (20, 4),
        "weight_hh_l1_reverse": (20, 2),
        "bias_ih_l1_reverse": (20,),
        "bias_hh_l1_reverse": (20,),
        "weight_hr_l1_reverse": (2, 5),
        "weight_peep_l0": (3, 5),
        "weight_peep_l0_reverse": (3, 5),
        "weight_peep_l1": (3, 5),
        "weight_peep_l1_reverse": (3, 5),
    }


def test_state_dict_shares_memory_like_torch(rng):
    model = lf.LSTM(2, 3, dtype=np.float64)
    x = rng.normal(size=(4, 1, 2))
    y0, _ = model(x)
    model.state_dict()["weight_ih_l0"][...] = 0.0
    y1, _ = model(x)
    assert not np.allclose(y0, y1)
    model.state_dict()["weight_ih_l0"] += 1.0
    np.testing.assert_array_equal(model.state_dict()["weight_ih_l0"], 1.0)


def test_same_seed_same_model():
    a, b = lf.LSTM(3, 4, 2, seed=7).state_dict(), lf.LSTM(3, 4, 2, seed=7).state_dict()
    c = lf.LSTM(3, 4, 2, seed=8).state_dict()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["weight_ih_l0"], c["weight_ih_l0"])


def test_saved_file_is_plain_safetensors_with_torch_names(tmp_path):
    from safetensors import safe_open

    model = lf.LSTM(3, 4, 2, proj_size=2)
    model.save(tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="numpy") as f:
        assert sorted(f.keys()) == sorted(model.state_dict())
        config = json.loads(f.metadata()["config"])
    assert config["num_layers"] == 2 and config["proj_size"] == 2 and config["dtype"] == "float32"


def test_load_refuses_what_is_not_a_model(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(
        ValueError, match=r"^path '.*garbage.safetensors': header: expected a string \(object key\) at byte 1"
    ):
        lf.load(garbage)
    truncated = tmp_path / "short.safetensors"
    truncated.write_bytes(b"\x01\x02")
    with pytest.raises(
        ValueError, match=r"^path '.*short.safetensors': file too short for a safetensors header \(2 bytes\)"
    ):
        lf.load(truncated)

    from safetensors.numpy import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"a": np.zeros(3, np.float32)}, str(plain))
    with pytest.raises(ValueError, match=r"is not an lstm_fast model file"):
        lf.load(plain)

    model = lf.LSTM(3, 4)
    wrong = tmp_path / "wrong.safetensors"
    tensors = dict(model.state_dict())
    tensors["weight_hh_l0"] = np.zeros((16, 5), np.float32)
    save_file(tensors, str(wrong), metadata={"format": "lstm_fast/1", "config": json.dumps(model.config())})
    with pytest.raises(ValueError, match=r"tensor weight_hh_l0 must have shape \(16, 4\), got \(16, 5\)"):
        lf.load(wrong)

    bad_config = tmp_path / "bad_config.safetensors"
    save_file(
        dict(model.state_dict()),
        str(bad_config),
        metadata={"format": "lstm_fast/1", "config": json.dumps({**model.config(), "hidden_size": -1})},
    )
    # The C++ loader checks the config's keys, types and sizes; the constructor's checks then its values.
    with pytest.raises(ValueError, match=r'metadata config: "hidden_size" must be in \[0, 2\^31\), got -1'):
        lf.load(bad_config)
    save_file(
        dict(model.state_dict()),
        str(bad_config),
        metadata={"format": "lstm_fast/1", "config": json.dumps({**model.config(), "dropout": 1.5})},
    )
    with pytest.raises(ValueError, match=r"invalid config in its metadata: dropout must be in \[0, 1\), got 1.5"):
        lf.load(bad_config)
    with pytest.raises(FileNotFoundError):
        lf.load(tmp_path / "missing.safetensors")


COPIES = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
}


@pytest.mark.parametrize("how", sorted(COPIES))
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(num_layers=2, bidirectional=True, proj_size=2, peephole=True, layer_norm=True, dtype=np.float64),
        dict(num_layers=2, dropout=0.5, recurrent_dropout=0.25, zoneout=(0.1, 0.2), cell_clip=3.0, seed=3),
    ],
)
def test_an_lstm_copies_and_pickles_bit_for_bit(rng, how, kwargs):
    model = lf.LSTM(3, 4, **kwargs)
    x = rng.normal(size=(5, 2, 3))
    model.forward(x)  # a pending training run: not copied, the original keeps it
    copied = COPIES[how](model)
    assert copied.config() == model.config() and repr(copied) == repr(model)
    for name, value in model.state_dict().items():
        assert copied.state_dict()[name] is not value
        np.testing.assert_array_equal(copied.state_dict()[name], value)
    np.testing.assert_array_equal(copied(x)[0], model(x)[0])
    with pytest.raises(ValueError, match="backward\\(\\) needs a training forward first"):
        copied.backward(np.zeros((5, 2, model.num_directions * model.output_size)))
    model.backward(np.ones((5, 2, model.num_directions * model.output_size)))
    # The generator's state is copied too: the same dropout and zoneout masks, so the same training run.
    y, _ = copied.forward(x)
    np.testing.assert_array_equal(y, model.forward(x)[0])
    np.testing.assert_array_equal(copied.backward(y)[0], model.backward(y)[0])


@pytest.mark.parametrize("how", sorted(COPIES))
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_a_frozen_model_copies_and_pickles_bit_for_bit(rng, how, precision):
    model = lf.LSTM(3, 6, 2, proj_size=4, peephole=True, seed=1).freeze(precision)
    copied = COPIES[how](model)
    assert copied.precision == precision and copied.config() == model.config() and repr(copied) == repr(model)
    x = rng.normal(size=(5, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(copied(x)[0], model(x)[0])
    np.testing.assert_array_equal(copied.step(x[0])[0], model.step(x[0])[0])
