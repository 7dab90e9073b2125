"""lstm_fast: the Long Short-Term Memory network, fast on ordinary CPUs.

    import lstm_fast as lf
    lstm = lf.LSTM(input_size, hidden_size)          # torch.nn.LSTM's arguments and parameters
    y, (h_n, c_n) = lstm(x)                          # inference, NumPy in and out
    y, _ = lstm.forward(x, train=True); dx, _ = lstm.backward(dy)   # training; gradients in lstm.grads

`lstm_fast.reference` is the small pure-NumPy implementation the tests use as the oracle.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from . import reference
from ._lstm import LSTM, load
from ._runtime import get_num_threads, isa, set_num_threads, supported_isas
from ._cmake import get_cmake_dir

try:
    __version__ = _version("lstm_fast")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["LSTM", "load", "reference", "set_num_threads", "get_num_threads", "isa", "supported_isas",
           "get_cmake_dir", "__version__"]
