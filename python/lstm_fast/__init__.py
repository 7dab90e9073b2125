"""lstm_fast: the Long Short-Term Memory network, fast on ordinary CPUs.

    import lstm_fast as lf
    lstm = lf.LSTM(input_size, hidden_size)          # torch.nn.LSTM's arguments and parameters
    y, (h_n, c_n) = lstm(x)                          # inference, NumPy in and out
    y, _ = lstm.forward(x, train=True); dx, _ = lstm.backward(dy)   # training; gradients in lstm.grads

`lstm_fast.reference` is the small pure-NumPy implementation the tests use as the oracle. The
submodules (nn, optim, rnn, tasks, training, reference, torch) are imported on first use, so that
``import lstm_fast`` stays light and never imports torch.
"""

from importlib import import_module as _import_module
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version
from typing import Any as _Any

from ._cmake import get_cmake_dir
from ._lstm import LSTM, State, load
from ._model import Model, load_model
from ._runtime import get_num_threads, isa, set_num_threads, supported_isas
from ._streams import Streams

try:
    __version__ = _version("lstm_fast")
except _PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

# Imported by __getattr__ on first use (PEP 562). lstm_fast.torch is not in __all__: `from lstm_fast
# import *` must not import torch.
_SUBMODULES = ("nn", "optim", "reference", "rnn", "tasks", "training")
_TORCH = "torch"

__all__ = [
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
    "__version__",
    "nn",
    "optim",
    "reference",
    "rnn",
    "tasks",
    "training",
]


def __getattr__(name: str) -> _Any:
    if name in _SUBMODULES or name == _TORCH:
        return _import_module(f"{__name__}.{name}")  # the import system also binds it here
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    # lstm_fast.torch only where torch is installed, so that getattr on every name dir() lists works.
    from importlib.util import find_spec

    return sorted(set(__all__) | ({_TORCH} if find_spec("torch") else set()))
