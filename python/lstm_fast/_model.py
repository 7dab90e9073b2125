"""lf.Model: the frozen inference model, the Python face of the C++ ``lstm_fast::Model``.

Made by ``LSTM.freeze(precision)`` or ``lf.load_model(path)``. Its weights are converted to the
precision and packed once, in C++, when it is made; a call runs the same kernels, on the same file
format, as a C++ program that loads the same file, so both give the same numbers. Arguments are
checked and laid out here as for lf.LSTM (the _layout mixin); the arithmetic is float32 throughout.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from . import _core, _io
from ._checks import check_fits
from ._config import ConfigAttributes, LSTMConfig
from ._layout import SequenceLayout, State

PRECISIONS = ("fp32", "bf16", "int8")


def _precision_arg(precision: Any) -> str:
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


class Model(SequenceLayout, ConfigAttributes):
    """A frozen LSTM for inference in "fp32", "bf16" or "int8" (the precision contract: docs/api.md).

    ``y, (h_n, c_n) = model(x, state=None, lengths=None)`` with the layouts of ``LSTM.__call__``;
    ``model.step(x_t, state)`` for streaming (unidirectional); ``model.save(path)``. Immutable: no
    gradients, no dropout, no parameters to change. Several threads may call one model at once.
    """

    _config_exclude = ("dtype",)  # always float32 arrays, whatever the LSTM it came from

    def __init__(self, core: Any, config: LSTMConfig) -> None:
        self._set_config(config)
        self.__dict__["_core"] = core

    _io_dtype = np.float32

    @property
    def precision(self) -> str:
        """ "fp32", "bf16" or "int8"."""
        return self._core.precision

    def config(self) -> Dict[str, Any]:
        """The constructor arguments of the LSTM it was made from, as saved in its file's metadata."""
        return self._lstm_config.to_dict()

    def __call__(self, x: Any, state: Optional[State] = None, lengths: Any = None) -> Tuple[np.ndarray, State]:
        """Inference over a sequence: the arguments, shapes and packed-sequence semantics of
        ``LSTM.__call__`` (x (T, B, I), (B, T, I) when batch_first, or (T, I); y with last
        dimension D*R; lengths (B,) in [1, T]); float32 arrays out."""
        x, unbatched, packing, h0, c0 = self._sequence_inputs(x, state, lengths)
        if x.shape[1] == 0:
            return self._empty_batch(x.shape[0])
        rows = sum(packing.batch_sizes)
        check_fits(f"the output of x of shape {x.shape}", rows * self.num_directions * self.output_size, np.float32)
        y, h_n, c_n = self._core.forward(packing.pack(x), packing.batch_sizes, x.shape[1], h0, c0)
        return self._sequence_outputs(y, h_n, c_n, packing, unbatched)

    def step(self, x_t: Any, state: Optional[State] = None) -> Tuple[np.ndarray, State]:
        """One time step through every layer (unidirectional models): x_t (B, I) or (I,), state (h, c)
        or None for zeros; returns y_t (B, R) (or (R,)) and the new state. Stepping a sequence gives
        bit for bit the outputs of one call on it."""
        fast = type(x_t) is np.ndarray and x_t.ndim == 2 and len(x_t) > 0
        if fast and (state is None or (type(state) is tuple and len(state) == 2)):
            # The streaming loop's own arrays (C-contiguous float32 of the right shapes, as step
            # returns them) go straight to the core, which checks them; anything else it refuses
            # takes the checked path below, which converts it or raises the error that names it.
            h, c = (None, None) if state is None else state
            try:
                y, h_n, c_n = self._core.step(x_t, h, c)
                return y, (h_n, c_n)
            except (TypeError, ValueError):
                pass
        x, unbatched = self._check_step_input(x_t)
        h, c = self._check_state("state", state, x.shape[0], unbatched)
        y, h_n, c_n = self._core.step(x, h, c)
        if unbatched:
            return y[0], (h_n[:, 0], c_n[:, 0])
        return y, (h_n, c_n)

    def save(self, path: "os.PathLike[str] | str") -> None:
        """Writes the model file of this precision (bf16 and int8 weights as BF16 and I8 tensors, int8
        with float32 row scales ``<weight>_scale``); ``lf.load_model`` and C++ ``Model::load`` read it."""
        self._core.save(os.fsdecode(os.fspath(path)))

    def _file_bytes(self) -> bytes:
        """The bytes of the model file save() writes (its precision's weights, exactly)."""
        with tempfile.TemporaryDirectory(prefix="lstm_fast_") as folder:
            path = os.path.join(folder, "model.safetensors")
            self._core.save(path)
            with open(path, "rb") as f:
                return f.read()

    def __reduce__(self) -> Tuple[Any, Tuple[bytes, Dict[str, Any]]]:
        """pickle and copy.deepcopy: the model file's bytes (_file_bytes) and the config; the copy's
        weights, and so its outputs, are bit for bit the original's."""
        return _model_from_bytes, (self._file_bytes(), self._lstm_config.to_dict())

    def __repr__(self) -> str:
        return f"Model({self._lstm_config.arguments_repr()}, precision={self.precision!r})"


def _model_from_bytes(data: bytes, config: Dict[str, Any]) -> Model:
    """The Model of a model file's bytes (Model._file_bytes) and its LSTM's config (LSTMConfig.to_dict):
    what unpickling a Model calls."""
    return Model(_core.Model.from_bytes(data, "a pickled lf.Model"), LSTMConfig.from_dict(config))


def freeze(config: LSTMConfig, tensors: Mapping[str, np.ndarray], precision: Any) -> Model:
    """The Model of an LSTM's config and state_dict in `precision`: the float file LSTM.save would
    write, read by the C++ loader from memory and converted there."""
    from safetensors.numpy import save

    precision = _precision_arg(precision)
    data = save(dict(tensors), metadata={"format": _io.FORMAT, "config": json.dumps(config.to_dict())})
    return Model(_core.Model.from_bytes(data, "LSTM.freeze", precision), config)


def load_model(path: "os.PathLike[str] | str", precision: Optional[str] = None) -> Model:
    """Reads a model file of any precision (lf.LSTM.save's float ones, Model.save's bf16 and int8) as
    a Model; `precision` converts on load (None keeps the file's). A file that is not a model raises
    ValueError naming the path and the problem; a missing file FileNotFoundError."""
    if precision is not None:
        precision = _precision_arg(precision)
    name = os.fsdecode(os.fspath(path))
    if not os.path.exists(name):
        raise FileNotFoundError(2, "No such file or directory", name)
    core = _core.Model.load(name, precision)  # a ValueError naming the file and the problem
    try:
        config = LSTMConfig.from_dict(json.loads(core.config_json))
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(f"path {name!r} has an invalid config in its metadata: {exc}") from exc
    return Model(core, config)
