"""The package as users meet it: what `import lstm_fast` loads and shows, read-only constructor values,
annotations, the config object, the thread limit and the file reader of the compiled core; and the
shape of the package's own code (no import cycles, no function over 80 lines)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

import lstm_fast as lf
from lstm_fast import _core
from lstm_fast._config import LSTMConfig

PACKAGE = Path(lf.__file__).resolve().parent
LAZY = ("nn", "optim", "rnn", "tasks", "training", "reference")


def run_python(code: str) -> str:
    """Runs code in a fresh interpreter (this one has imported everything already); returns stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_lstm_fast_imports_neither_torch_nor_the_submodules():
    out = run_python(
        "import sys, lstm_fast\nprint(sorted(m for m in sys.modules if m == 'torch' or m.startswith('lstm_fast.')))"
    )
    loaded = eval(out)
    assert "torch" not in loaded
    assert not [m for m in loaded if m.split(".")[1] in LAZY + ("torch",)], loaded


def test_submodules_import_on_first_attribute_access():
    out = run_python(
        "import sys, lstm_fast as lf\n"
        f"for name in {LAZY!r}:\n"
        "    assert 'lstm_fast.' + name not in sys.modules, name\n"
        "    module = getattr(lf, name)\n"
        "    assert module is sys.modules['lstm_fast.' + name], name\n"
        "print(lf.optim.Adam.__name__, lf.nn.Linear.__name__, lf.rnn.RNN.__name__)\n"
        "print('torch' in sys.modules)"
    )
    assert out.split() == ["Adam", "Linear", "RNN", "False"]


def test_lf_torch_imports_torch_only_when_asked_for():
    pytest.importorskip("torch")
    out = run_python(
        "import sys, lstm_fast as lf\n"
        "print('torch' in sys.modules)\n"
        "print(lf.torch.LSTM.__module__, 'torch' in sys.modules)"
    )
    assert out.split() == ["False", "lstm_fast.torch", "True"]


def test_unknown_attributes_still_raise_attribute_error():
    with pytest.raises(AttributeError, match=r"module 'lstm_fast' has no attribute 'nope'"):
        lf.nope  # noqa: B018


def test_dir_shows_the_public_api_only():
    names = dir(lf)
    assert "PackageNotFoundError" not in names
    assert [n for n in names if n.startswith("_")] == ["__version__"]
    from importlib.util import find_spec

    torch = {"torch"} if find_spec("torch") else set()  # listed only where it can be imported
    assert {
        "LSTM",
        "State",
        "load",
        "Model",
        "Streams",
        "load_model",
        "set_num_threads",
        "get_num_threads",
        "isa",
        "supported_isas",
        "get_cmake_dir",
        *LAZY,
        *torch,
    } == set(names) - {"__version__"}
    assert "torch" not in lf.__all__  # `from lstm_fast import *` must not import torch
    for name in lf.__all__:
        getattr(lf, name)


def test_state_is_exported_and_is_what_initial_state_returns():
    assert typing.get_origin(lf.State) is tuple and typing.get_args(lf.State) == (np.ndarray, np.ndarray)
    assert typing.get_type_hints(lf.LSTM.initial_state)["return"] == lf.State
    state = lf.LSTM(2, 3).initial_state(4)
    assert isinstance(state, tuple) and [a.shape for a in state] == [(1, 4, 3), (1, 4, 3)]


CONSTRUCTOR_VALUES = dict(
    input_size=5,
    hidden_size=16,
    num_layers=3,
    bias=False,
    batch_first=True,
    dropout=0.5,
    bidirectional=True,
    proj_size=2,
    peephole=True,
    forget_bias=1.0,
)


@pytest.mark.parametrize("name, value", list(CONSTRUCTOR_VALUES.items()) + [("dtype", np.float64), ("seed", 3)])
def test_constructor_values_are_read_only(name, value):
    model = lf.LSTM(3, 8, seed=0)
    before = model.config()
    with pytest.raises(AttributeError, match=rf"^{name} is fixed at construction .*: build a new model"):
        setattr(model, name, value)
    assert model.config() == before
    x = np.ones((2, 1, 3), np.float32)
    assert model(x)[0].shape == (2, 1, 8)


def test_sizes_derived_from_the_config_are_read_only_too():
    model = lf.LSTM(3, 8, proj_size=2, bidirectional=True)
    assert (model.num_directions, model.output_size) == (2, 2)
    for name in ("num_directions", "output_size"):
        with pytest.raises(AttributeError, match="fixed at construction"):
            setattr(model, name, 1)


@pytest.mark.parametrize("name, value", list(CONSTRUCTOR_VALUES.items()))
def test_torch_module_constructor_values_are_read_only(name, value):
    lft = pytest.importorskip("lstm_fast.torch")
    module = lft.LSTM(3, 8)
    with pytest.raises(AttributeError, match=rf"^{name} is fixed at construction .*: build a new model"):
        setattr(module, name, value)
    assert module.hidden_size == 8 and module.input_size == 3
    module.training = False  # nn.Module's own attributes stay writable
    module.eval()


def _public_callables():
    """(qualified name, function) of every public function, and every public method (with __init__ and
    __call__) of every public class, defined in the package's public modules."""
    import lstm_fast.torch as lft

    for module in (lf, lf.nn, lf.optim, lf.rnn, lf.tasks, lf.training, lf.reference, lft):
        for name, member in vars(module).items():
            if name.startswith("_") or not getattr(member, "__module__", "").startswith("lstm_fast"):
                continue
            if inspect.isfunction(member):
                yield f"{member.__module__}.{name}", member
            elif inspect.isclass(member):
                for method_name, method in vars(member).items():
                    if isinstance(method, (classmethod, staticmethod)):
                        method = method.__func__
                    if inspect.isfunction(method) and (
                        not method_name.startswith("_") or method_name in ("__init__", "__call__")
                    ):
                        yield f"{member.__module__}.{member.__qualname__}.{method_name}", method


def test_public_functions_and_methods_have_return_annotations():
    pytest.importorskip("torch")
    callables = dict(_public_callables())
    assert "lstm_fast._lstm.LSTM.forward" in callables and "lstm_fast.torch.LSTM.forward" in callables
    missing = [name for name, f in callables.items() if "return" not in f.__annotations__]
    assert not missing


def test_config_validates_once_and_describes_the_model():
    config = LSTMConfig(3, 5, 2, bidirectional=True, proj_size=2, peephole=True, dtype="float64", seed=4)
    assert config.dtype == np.float64 and config.num_directions == 2 and config.output_size == 2
    assert (
        repr(config) == "LSTMConfig(3, 5, num_layers=2, bidirectional=True, proj_size=2, peephole=True, dtype=float64)"
    )
    model = lf.LSTM(3, 5, 2, bidirectional=True, proj_size=2, peephole=True, dtype=np.float64, seed=4)
    assert model.config() == config.to_dict()
    assert LSTMConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.param_shapes() == {k: v.shape for k, v in model.state_dict().items()}
    assert config.num_params() == sum(v.size for v in model.state_dict().values())
    assert config.state_shapes(7) == ((4, 7, 2), (4, 7, 5)) and config.state_shapes(None) == ((4, 2), (4, 5))
    assert config.core().hidden_size == 5 and config.core().peephole
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden_size = 6
    with pytest.raises(ValueError, match=r"proj_size must be < hidden_size \(5\), got 5"):
        config.replace(proj_size=5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'units'"):
        LSTMConfig.from_dict({**config.to_dict(), "units": 3})


def test_both_classes_take_every_argument_of_the_config():
    # A new constructor argument is a field of LSTMConfig; this catches a class that does not take it.
    fields = [f.name for f in dataclasses.fields(LSTMConfig)]
    assert list(inspect.signature(lf.LSTM).parameters) == fields
    lft = pytest.importorskip("lstm_fast.torch")
    torch_args = set(inspect.signature(lft.LSTM).parameters)
    # (checkpoint: how the module trains, not what the model is; lf.LSTM takes it in forward())
    assert set(fields) - {"seed"} <= torch_args and torch_args - set(fields) == {"device", "checkpoint"}


def test_the_thread_limit_comes_from_the_core():
    assert _core.MAX_THREADS == 1024
    with pytest.raises(ValueError, match=rf"num_threads must be <= {_core.MAX_THREADS}, got {_core.MAX_THREADS + 1}"):
        lf.set_num_threads(_core.MAX_THREADS + 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_core_reads_model_files_in_their_own_dtype(tmp_path, dtype):
    model = lf.LSTM(3, 4, 2, bidirectional=True, proj_size=2, peephole=True, dtype=dtype, seed=1)
    path = tmp_path / "m.safetensors"
    model.save(path)
    config_json, tensors, precision = _core.read_model_file(str(path))
    assert precision == "fp32"
    assert json.loads(config_json) == model.config()
    assert sorted(tensors) == sorted(model.state_dict())
    for name, value in model.state_dict().items():
        assert tensors[name].dtype == dtype
        np.testing.assert_array_equal(tensors[name], value)  # bit for bit, float64 included
    with pytest.raises(FileNotFoundError):
        _core.read_model_file(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=r"^path '.*': file too short"):
        (tmp_path / "empty").write_bytes(b"")
        _core.read_model_file(str(tmp_path / "empty"))


def test_a_seed_beyond_32_bits_survives_the_file(tmp_path):
    model = lf.LSTM(2, 3, seed=10**30)
    model.save(tmp_path / "m.safetensors")
    assert lf.load(tmp_path / "m.safetensors").config()["seed"] == 10**30


def _package_modules():
    return {p.stem: ast.parse(p.read_text()) for p in sorted(PACKAGE.glob("*.py"))}


def test_no_import_cycle_between_the_package_modules():
    graph = {}
    for name, tree in _package_modules().items():
        deps = set()
        for node in ast.walk(tree):  # every import, also those inside functions
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lstm_fast"):
                deps |= {node.module.split(".")[1]} if "." in node.module else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lstm_fast.")}
        graph[name] = {d for d in deps if d in _package_modules() and d != name}
    graph["__init__"] = set()  # the package itself: every submodule imports it implicitly
    state = {}

    def visit(node, path):
        if state.get(node) == "open":
            raise AssertionError("import cycle: " + " -> ".join(path + [node]))
        if state.get(node) != "done":
            state[node] = "open"
            for dep in sorted(graph.get(node, ())):
                visit(dep, path + [node])
            state[node] = "done"

    for node in graph:
        visit(node, [])


def test_no_function_in_the_package_is_longer_than_80_lines():
    long = [
        f"{name}.py:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, tree in _package_modules().items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80
    ]
    assert not long
