"""The LSTM class: torch.nn.LSTM's interface over NumPy arrays, running on the C++ core.

Everything user-facing is checked here, so that errors name the argument, what was expected and what
came; the compiled core only re-checks that arrays match the shapes it will read.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import struct
import tempfile
from typing import Any, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from . import _core

State = Tuple[np.ndarray, np.ndarray]

_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
_FORMAT = "lstm_fast/1"  # the "format" entry of a saved file's metadata


# ---------------------------------------------------------------------------------------------------
# Argument checks


def _int_arg(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bool_arg(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def _float_arg(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


# Sizes the C++ core accepts (cpp/include/lstm_fast/network.hpp: kMaxSize, kMaxElements). Checked here
# first so that the error names the Python argument.
_MAX_SIZE = 2**31 - 1
_MAX_ELEMENTS = 2**48


def _physical_memory() -> Optional[int]:
    """Bytes of RAM of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_fits(what: str, numbers: int, dtype: np.dtype) -> None:
    """Refuses, before anything is allocated, `numbers` of `dtype` that could never be held: more than
    the core's limit, or more bytes than this machine has RAM. (NumPy would raise MemoryError only
    after trying, or the OS would start swapping.)"""
    nbytes = numbers * np.dtype(dtype).itemsize
    memory = _physical_memory()
    if numbers > _MAX_ELEMENTS or (memory is not None and nbytes > memory):
        limit = f"this machine's memory ({memory / 2**30:.1f} GiB)" if memory is not None else "2^48 numbers"
        raise ValueError(f"{what}: {numbers} numbers ({nbytes / 2**30:.3g} GiB of {np.dtype(dtype)}) are "
                         f"more than {limit}")


def _as_float_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """`value` as a C-contiguous array of `dtype`; real numbers of any dtype are converted."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of real numbers, got {type(value).__name__}") from exc
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {array.dtype}")
    return _core_ready(array, dtype)


def _core_ready(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`array` itself when it is C-contiguous, of `dtype` and aligned to it, else such a copy. (A view
    into a byte buffer at an odd offset is contiguous but not aligned: the core must not read a double
    at an address that is not a multiple of 8, which is undefined behaviour in C++.)"""
    flags = array.flags
    if array.dtype == dtype and flags.c_contiguous and flags.aligned:  # the common case, without np.require's cost
        return array
    return np.require(array, dtype=dtype, requirements=["C_CONTIGUOUS", "ALIGNED"])


def _shape(shape: Tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_shape(name: str, array: np.ndarray, expected: Tuple[int, ...]) -> None:
    if array.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {_shape(expected)}, got {_shape(array.shape)}")


# ---------------------------------------------------------------------------------------------------
# Packing: the core runs on torch's packed layout (rows active at step t are a prefix of the batch
# sorted by length). Dense input is already packed; unequal lengths are gathered once here.


class _Packing(NamedTuple):
    steps: int                # T of the user's input
    batch: int                # B
    batch_sizes: list         # [T'] rows active per step, T' = max length
    order: Optional[np.ndarray]    # [B] batch index of each sorted row; None when dense
    time_index: Optional[np.ndarray]   # [N] step of each packed row
    batch_index: Optional[np.ndarray]  # [N] batch index of each packed row

    def pack(self, a: np.ndarray) -> np.ndarray:
        """(T, B, F) -> (N, F)."""
        if self.order is None:
            return a.reshape(self.steps * self.batch, a.shape[-1])
        return a[self.time_index, self.batch_index]

    def unpack(self, rows: np.ndarray) -> np.ndarray:
        """(N, F) -> (T, B, F), zeros at the padded steps."""
        if self.order is None:
            return rows.reshape(self.steps, self.batch, rows.shape[-1])
        out = np.zeros((self.steps, self.batch, rows.shape[-1]), dtype=rows.dtype)
        out[self.time_index, self.batch_index] = rows
        return out

    def sort_state(self, s: np.ndarray) -> np.ndarray:
        """(L*D, B, F) in the user's batch order -> sorted order."""
        return s if self.order is None else np.ascontiguousarray(s[:, self.order])

    def unsort_state(self, s: np.ndarray) -> np.ndarray:
        if self.order is None:
            return s
        out = np.empty_like(s)
        out[:, self.order] = s
        return out


def _packing(steps: int, batch: int, lengths: Any) -> _Packing:
    if lengths is None:
        return _Packing(steps, batch, [batch] * steps, None, None, None)
    if hasattr(lengths, "detach") and hasattr(lengths, "cpu"):
        lengths = lengths.detach().cpu().numpy()
    try:
        lengths = np.asarray(lengths)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"lengths must be an array of integers, got {type(lengths).__name__}") from exc
    if lengths.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
    _check_shape("lengths", lengths, (batch,))
    lengths = lengths.astype(np.int64)
    if lengths.min() < 1 or lengths.max() > steps:
        bad = lengths[(lengths < 1) | (lengths > steps)][0]
        raise ValueError(f"lengths must be in [1, {steps}] (the sequence length), got {bad}")
    if lengths.min() == steps:
        return _Packing(steps, batch, [batch] * steps, None, None, None)
    order = np.argsort(-lengths, kind="stable")
    batch_sizes = (lengths[None, :] > np.arange(int(lengths.max()))[:, None]).sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])
    time_index = np.repeat(np.arange(len(batch_sizes)), batch_sizes)
    row_in_step = np.arange(offsets[-1]) - np.repeat(offsets[:-1], batch_sizes)
    return _Packing(steps, batch, batch_sizes.tolist(), order, time_index, order[row_in_step])


class _TrainingRun(NamedTuple):
    """What forward(train=True) leaves for backward."""

    trace: Any
    weights: list           # the weights the forward used (copies: an update in between cannot skew BPTT)
    packing: _Packing
    unbatched: bool
    y_shape: Tuple[int, ...]
    state_shapes: Tuple[Tuple[int, ...], Tuple[int, ...]]


# ---------------------------------------------------------------------------------------------------


class LSTM:
    """A multi-layer LSTM with torch.nn.LSTM's equations, parameters and defaults, on NumPy arrays.

    Equations per layer and direction (gate order i, f, g, o, as torch)::

        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi [+ p_i * c_prev])
        f = sigmoid(W_if x + b_if + W_hf h + b_hf [+ p_f * c_prev])
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        c = f * c_prev + i * g
        o = sigmoid(W_io x + b_io + W_ho h + b_ho [+ p_o * c])
        h = o * tanh(c)                     (h = W_hr (o * tanh(c)) when proj_size > 0)

    The bracketed peephole terms (Gers & Schmidhuber 2000) are present when ``peephole=True``.

    Args:
        input_size: I, features of each input step.
        hidden_size: H, units of the memory cell.
        num_layers: L, stacked layers.
        bias: with the biases b_ih and b_hh.
        batch_first: inputs and outputs are (B, T, F) instead of (T, B, F).
        dropout: probability of zeroing an element of each layer's output but the last, in training.
        bidirectional: D = 2 directions per layer, outputs concatenated (forward first).
        proj_size: R > 0 projects h to R features (LSTMP); 0 means R = H.
        peephole: adds diagonal weights from the cell into the gates, ``weight_peep_l{k}`` (3, H).
        forget_bias: added to the forget-gate block of ``bias_ih`` at initialisation (1.0 as in
            Gers et al. 2000 and Keras's unit_forget_bias; 0.0 is torch's initialisation).
        dtype: np.float32 or np.float64, of parameters and outputs.
        seed: makes initialisation and dropout masks reproducible.

    Shapes: x is (T, B, I), (B, T, I) when batch_first, or (T, I) unbatched; y is the same layout
    with last dimension D*R; h is (L*D, B, R) and c is (L*D, B, H) (without B when unbatched).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        peephole: bool = False,
        forget_bias: float = 0.0,
        dtype: Any = np.float32,
        seed: Optional[int] = None,
    ) -> None:
        self._configure(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                        dropout=dropout, bidirectional=bidirectional, proj_size=proj_size, peephole=peephole,
                        forget_bias=forget_bias, dtype=dtype, seed=seed)
        self._params = self._init_params()

    def _configure(self, input_size: int, hidden_size: int, num_layers: int = 1, *, bias: bool = True,
                   batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                   proj_size: int = 0, peephole: bool = False, forget_bias: float = 0.0,
                   dtype: Any = np.float32, seed: Optional[int] = None) -> None:
        """Checks the constructor arguments and sets everything but the parameters (lf.load checks a
        file's tensors against the configuration before any parameter is allocated)."""
        input_size = _int_arg("input_size", input_size, 1)
        hidden_size = _int_arg("hidden_size", hidden_size, 1)
        num_layers = _int_arg("num_layers", num_layers, 1)
        proj_size = _int_arg("proj_size", proj_size, 0)
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size must be < hidden_size ({hidden_size}), got {proj_size}")
        self.bias = _bool_arg("bias", bias)
        self.batch_first = _bool_arg("batch_first", batch_first)
        self.bidirectional = _bool_arg("bidirectional", bidirectional)
        self.peephole = _bool_arg("peephole", peephole)
        dropout = _float_arg("dropout", dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        forget_bias = _float_arg("forget_bias", forget_bias)
        if forget_bias != 0.0 and not self.bias:
            raise ValueError(f"forget_bias needs bias=True, got forget_bias={forget_bias} with bias=False")
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"dtype must be np.float32 or np.float64, got {dtype!r}") from exc
        if self.dtype not in _DTYPES:
            raise TypeError(f"dtype must be np.float32 or np.float64, got {self.dtype}")
        if seed is not None:
            seed = _int_arg("seed", seed, 0)
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if value > _MAX_SIZE:
                raise ValueError(f"{name} must be <= {_MAX_SIZE}, got {value}")

        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.proj_size, self.dropout, self.forget_bias, self.seed = proj_size, dropout, forget_bias, seed
        # Python ints: no overflow however absurd the sizes (LSTM(10**9, 10**9) is 4e18 numbers).
        _check_fits(f"the parameters of {self!r}", self._num_params(), self.dtype)
        self._config = _core.Config(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, proj_size=proj_size,
            bias=self.bias, bidirectional=self.bidirectional, peephole=self.peephole,
        )
        self._rng = np.random.default_rng(seed)
        self._params: dict = {}
        self.grads: dict = {}
        self._training_run: Optional[_TrainingRun] = None

    # -- sizes ---------------------------------------------------------------------------------------

    @property
    def num_directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """R: proj_size when > 0, else hidden_size (per direction)."""
        return self.proj_size or self.hidden_size

    def _cell_names(self):
        """(layer, suffix) of each cell in the core's order k*D + d."""
        for k in range(self.num_layers):
            for suffix in ("", "_reverse")[: self.num_directions]:
                yield k, suffix

    def _num_params(self) -> int:
        """The number of parameters, from the sizes alone (_param_shapes would list 2^31 layers)."""
        H, R, D = self.hidden_size, self.output_size, self.num_directions

        def layer(input_size: int) -> int:
            return D * (4 * H * (input_size + R) + 8 * H * self.bias + R * H * (self.proj_size > 0)
                        + 3 * H * self.peephole)

        return layer(self.input_size) + (self.num_layers - 1) * layer(D * R)

    def _param_shapes(self) -> dict:
        """torch.nn.LSTM's state_dict keys and shapes in its order, then the peephole weights."""
        H, R, D = self.hidden_size, self.output_size, self.num_directions
        shapes = {}
        for k, sfx in self._cell_names():
            layer_in = self.input_size if k == 0 else D * R
            shapes[f"weight_ih_l{k}{sfx}"] = (4 * H, layer_in)
            shapes[f"weight_hh_l{k}{sfx}"] = (4 * H, R)
            if self.bias:
                shapes[f"bias_ih_l{k}{sfx}"] = (4 * H,)
                shapes[f"bias_hh_l{k}{sfx}"] = (4 * H,)
            if self.proj_size:
                shapes[f"weight_hr_l{k}{sfx}"] = (R, H)
        if self.peephole:
            for k, sfx in self._cell_names():
                shapes[f"weight_peep_l{k}{sfx}"] = (3, H)
        return shapes

    def _init_params(self) -> dict:
        # torch's initialisation: every parameter uniform in [-1/sqrt(H), 1/sqrt(H)] (peepholes too).
        bound = 1.0 / math.sqrt(self.hidden_size)
        params = {}
        for name, shape in self._param_shapes().items():
            params[name] = self._rng.uniform(-bound, bound, size=shape).astype(self.dtype)
            if name.startswith("bias_ih"):
                params[name][self.hidden_size : 2 * self.hidden_size] += self.forget_bias
        return params

    def _weights(self, params: Mapping[str, np.ndarray]) -> list:
        """The core's per-cell 6-tuples.

        Kept between calls while `params` holds the same arrays (building it took 2 of a streaming
        step's 14 us). Only a list of the arrays themselves is kept, never one with a copy in it, so
        in-place updates (an optimizer's) are always seen; the arrays it holds stay alive, so their
        ids cannot be reused by new arrays."""
        key = tuple(map(id, params.values()))
        cached = self.__dict__.get("_weights_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        names = self.__dict__.get("_weight_names")
        if names is None:
            names = self._weight_names = [
                tuple(f"{kind}_l{k}{sfx}" for kind in
                      ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_peep"))
                for k, sfx in self._cell_names()]
        dtype = self.dtype
        # The model's own arrays are aligned; a copy only if someone swapped in an unaligned view.
        cells = [tuple(None if (a := params.get(name)) is None else _core_ready(a, dtype) for name in cell)
                 for cell in names]
        if all(a is params.get(name) for cell, arrays in zip(names, cells) for name, a in zip(cell, arrays)):
            self._weights_cache = (key, cells)
        return cells

    # -- parameters ----------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The parameters under torch.nn.LSTM's names (plus ``weight_peep_l{k}``), in torch's order.

        The arrays are the model's own (like torch's state_dict): updating them in place updates the
        model. Copy them for a snapshot.
        """
        return dict(self._params)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Copies parameters in. Values may be NumPy arrays or anything np.asarray accepts (torch
        tensors included). A missing (when strict), unexpected or mis-shaped key raises ValueError
        naming it; nothing is changed unless every key is valid."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
        expected = self._param_shapes()
        unexpected = [k for k in state_dict if k not in expected]
        if unexpected:
            raise ValueError(f"state_dict has unexpected key(s) {unexpected}; expected keys: {list(expected)}")
        missing = [k for k in expected if k not in state_dict]
        if strict and missing:
            raise ValueError(f"state_dict is missing key(s) {missing}")
        staged = {}
        for name, value in state_dict.items():
            array = _as_float_array(f"state_dict[{name!r}]", value, self.dtype)
            _check_shape(f"state_dict[{name!r}]", array, expected[name])
            staged[name] = array
        for name, array in staged.items():
            np.copyto(self._params[name], array)

    # -- running -------------------------------------------------------------------------------------

    def initial_state(self, batch_size: Optional[int] = None) -> State:
        """Zero (h, c): h (L*D, B, R), c (L*D, B, H); without the B axis when batch_size is None."""
        LD = self.num_layers * self.num_directions
        batch = () if batch_size is None else (_int_arg("batch_size", batch_size, 1),)
        _check_fits(f"the state of initial_state(batch_size={batch_size})",
                    LD * math.prod(batch) * (self.output_size + self.hidden_size), self.dtype)
        return (np.zeros((LD,) + batch + (self.output_size,), self.dtype),
                np.zeros((LD,) + batch + (self.hidden_size,), self.dtype))

    def __call__(self, x: Any, state: Optional[State] = None, lengths: Any = None):
        """Inference: ``y, (h_n, c_n) = lstm(x, state=None, lengths=None)``; see forward()."""
        return self.forward(x, state, lengths, train=False)

    def forward(self, x: Any, state: Optional[State] = None, lengths: Any = None, train: bool = True):
        """Runs the sequence; with ``train=True`` keeps what backward() needs and applies dropout.

        Args:
            x: (T, B, I), (B, T, I) when batch_first, or (T, I) unbatched; converted to self.dtype.
            state: (h0, c0) with h0 (L*D, B, R) and c0 (L*D, B, H) (no B when unbatched); None = zeros.
            lengths: (B,) integers in [1, T] for padded batches (torch's packed-sequence semantics:
                outputs past a sequence's length are 0, its final state is taken at its last step, and
                the reverse direction starts at its last step).
        Returns:
            y: (T, B, D*R) in x's layout; (h_n, c_n) shaped like (h0, c0).
        """
        train = _bool_arg("train", train)
        x, unbatched = self._check_input(x)
        T, B = x.shape[0], x.shape[1]
        if unbatched and lengths is not None:
            raise ValueError("lengths needs batched input (T, B, I); got unbatched input (T, I)")
        packing = _packing(T, B, lengths)
        h0, c0 = self._check_state("state", state, B, unbatched)
        # What the call allocates beyond x: y, and in training each cell's trace (gates, c, c_prev,
        # h_prev) and each layer's input. A small x can ask for a huge y when D*R >> I.
        rows, H, DR = sum(packing.batch_sizes), self.hidden_size, self.num_directions * self.output_size
        numbers = rows * DR
        if train:
            cells = self.num_layers * self.num_directions
            numbers += rows * (cells * (6 * H + self.output_size) + self.input_size + (self.num_layers - 1) * DR * 2)
        _check_fits(f"the output{' and trace' if train else ''} of x of shape {_shape(x.shape)}", numbers, self.dtype)
        masks = self._dropout_masks(sum(packing.batch_sizes)) if train else []
        weights = self._weights(self._params)
        y, h_n, c_n, trace = _core.forward(
            self._config, weights, packing.batch_sizes, B, packing.pack(x),
            None if h0 is None else packing.sort_state(h0), None if c0 is None else packing.sort_state(c0),
            masks, train)
        y = packing.unpack(y)
        h_n, c_n = packing.unsort_state(h_n), packing.unsort_state(c_n)
        y, h_n, c_n = self._to_user_layout(y, unbatched), self._drop_batch(h_n, unbatched), self._drop_batch(c_n, unbatched)
        if train:
            snapshot = [tuple(None if a is None else a.copy() for a in cell) for cell in weights]
            self._training_run = _TrainingRun(trace, snapshot, packing, unbatched, y.shape, (h_n.shape, c_n.shape))
        return y, (h_n, c_n)

    def backward(self, dy: Any, dstate: Optional[Tuple[Any, Any]] = None):
        """Backpropagation through time for the last ``forward(..., train=True)``.

        Args:
            dy: gradient of the loss w.r.t. y, shaped like y.
            dstate: (dh_n, dc_n) shaped like (h_n, c_n), or None (either may be None) for zeros.
        Returns:
            dx shaped like x, and (dh0, dc0) shaped like (h0, c0). Fills ``self.grads`` (same keys as
            state_dict(); overwritten, not accumulated). Each forward can be backpropagated once.
        """
        run = self._training_run
        if run is None:
            raise ValueError("backward() needs a training forward first: call forward(x, train=True), "
                             "then backward(dy) once")
        dy = _as_float_array("dy", dy, self.dtype)
        _check_shape("dy", dy, run.y_shape)
        dh_n, dc_n = None, None
        if dstate is not None:
            if not isinstance(dstate, (tuple, list)) or len(dstate) != 2:
                raise TypeError(f"dstate must be a pair (dh_n, dc_n) or None, got {type(dstate).__name__}")
            grads_n = []
            for name, value, shape in zip(("dstate[0] (dh_n)", "dstate[1] (dc_n)"), dstate, run.state_shapes):
                if value is not None:
                    value = _as_float_array(name, value, self.dtype)
                    _check_shape(name, value, shape)
                    value = run.packing.sort_state(self._add_batch(value, run.unbatched))
                grads_n.append(value)
            dh_n, dc_n = grads_n
        dy = run.packing.pack(np.ascontiguousarray(self._from_user_layout(dy, run.unbatched)))
        dx, dh0, dc0, cell_grads = _core.backward(run.weights, run.trace, np.ascontiguousarray(dy), dh_n, dc_n)
        self._training_run = None
        grads = {}
        for (k, sfx), cell in zip(self._cell_names(), cell_grads):
            for kind, g in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_peep"), cell):
                if g is not None:
                    grads[f"{kind}_l{k}{sfx}"] = g
        self.grads = {name: grads[name] for name in self._params}  # state_dict's order
        dx = self._to_user_layout(run.packing.unpack(dx), run.unbatched)
        dh0 = self._drop_batch(run.packing.unsort_state(dh0), run.unbatched)
        dc0 = self._drop_batch(run.packing.unsort_state(dc0), run.unbatched)
        return dx, (dh0, dc0)

    def step(self, x_t: Any, state: Optional[State] = None):
        """One time step through every layer (unidirectional models): ``y_t, state = lstm.step(x_t, state)``.

        x_t: (B, I) or (I,); state: (h, c) from initial_state() or the previous step, None = zeros.
        Returns y_t (B, R) (or (R,)) and the new state. Feeding a sequence step by step gives the same
        outputs as one call on the whole sequence.
        """
        if self.bidirectional:
            raise ValueError("step() runs unidirectional models only; this one is bidirectional")
        x_t = _as_float_array("x_t", x_t, self.dtype)
        if x_t.ndim not in (1, 2) or x_t.shape[-1] != self.input_size:
            raise ValueError(f"x_t must have shape (B, {self.input_size}) or ({self.input_size},), "
                             f"got {_shape(x_t.shape)}")
        unbatched = x_t.ndim == 1
        x = x_t.reshape(1, -1, self.input_size)
        B = x.shape[1]
        if B == 0:
            raise ValueError("x_t must have a batch of >= 1, got 0")
        h0, c0 = self._check_state("state", state, B, unbatched)
        y, h_n, c_n, _ = _core.forward(self._config, self._weights(self._params), [B], B,
                                       x.reshape(B, self.input_size), h0, c0, [], False)
        if unbatched:
            return y[0], (h_n[:, 0], c_n[:, 0])
        return y, (h_n, c_n)

    # -- layouts and checks --------------------------------------------------------------------------

    def _check_input(self, x: Any) -> Tuple[np.ndarray, bool]:
        """x as a C-contiguous (T, B, I) array of self.dtype, and whether it came unbatched."""
        x = _as_float_array("x", x, self.dtype)
        I = self.input_size
        layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
        if x.ndim not in (2, 3) or x.shape[-1] != I:
            raise ValueError(f"x must have shape {layout.replace('I', str(I))} or (T, {I}), got {_shape(x.shape)}")
        if 0 in x.shape:
            raise ValueError(f"x must have >= 1 step and >= 1 sequence, got shape {_shape(x.shape)}")
        unbatched = x.ndim == 2
        return np.ascontiguousarray(self._from_user_layout(x, unbatched)), unbatched

    def _from_user_layout(self, a: np.ndarray, unbatched: bool) -> np.ndarray:
        """User layout -> (T, B, F) view."""
        if unbatched:
            return a[:, None, :]
        return a.transpose(1, 0, 2) if self.batch_first else a

    def _to_user_layout(self, a: np.ndarray, unbatched: bool) -> np.ndarray:
        if unbatched:
            return a[:, 0, :]
        return np.ascontiguousarray(a.transpose(1, 0, 2)) if self.batch_first else a

    @staticmethod
    def _drop_batch(s: np.ndarray, unbatched: bool) -> np.ndarray:
        return s[:, 0, :] if unbatched else s

    @staticmethod
    def _add_batch(s: np.ndarray, unbatched: bool) -> np.ndarray:
        return np.ascontiguousarray(s[:, None, :]) if unbatched else s

    def _check_state(self, name: str, state: Any, batch: int, unbatched: bool):
        """(h0, c0) as (L*D, B, R) and (L*D, B, H) arrays of self.dtype, or (None, None)."""
        if state is None:
            return None, None
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name} must be a pair (h0, c0) or None, got {type(state).__name__}")
        LD = self.num_layers * self.num_directions
        out = []
        for part, value, size in ((f"{name}[0] (h0)", state[0], self.output_size),
                                  (f"{name}[1] (c0)", state[1], self.hidden_size)):
            array = _as_float_array(part, value, self.dtype)
            _check_shape(part, array, (LD, size) if unbatched else (LD, batch, size))
            out.append(self._add_batch(array, unbatched))
        return tuple(out)

    def _dropout_masks(self, rows: int) -> list:
        """Inter-layer dropout masks, [rows, D*R] each, already scaled by 1/(1-p)."""
        if self.dropout == 0.0 or self.num_layers == 1:
            return []
        keep = 1.0 - self.dropout
        shape = (rows, self.num_directions * self.output_size)
        return [((self._rng.random(shape) < keep) / keep).astype(self.dtype) for _ in range(self.num_layers - 1)]

    # -- files and other libraries -------------------------------------------------------------------

    def config(self) -> dict:
        """The constructor arguments (dtype as a string), as saved in a model file's metadata."""
        return dict(input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                    bias=self.bias, batch_first=self.batch_first, dropout=self.dropout,
                    bidirectional=self.bidirectional, proj_size=self.proj_size, peephole=self.peephole,
                    forget_bias=self.forget_bias, dtype=_DTYPES[self.dtype], seed=self.seed)

    def save(self, path: "os.PathLike[str] | str") -> None:
        """Writes one safetensors file: the state_dict under torch's names, the constructor arguments
        in the metadata. Atomic: written to a temporary file in the same folder, then renamed."""
        from safetensors.numpy import save_file

        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".lstm_fast-", suffix=".tmp", dir=folder)
        os.close(fd)
        try:
            save_file(self.state_dict(), tmp, metadata={"format": _FORMAT, "config": json.dumps(self.config())})
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    @classmethod
    def from_torch(cls, module: Any) -> "LSTM":
        """An LSTM equal to a torch.nn.LSTM (float32 or float64 parameters)."""
        import torch  # optional: only this method needs it

        if not isinstance(module, torch.nn.LSTM):
            raise TypeError(f"module must be a torch.nn.LSTM, got {type(module).__name__}")
        dtype = module.weight_ih_l0.dtype
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"module's parameters must be float32 or float64, got {dtype}")
        lstm = cls(module.input_size, module.hidden_size, module.num_layers, bias=module.bias,
                   batch_first=module.batch_first, dropout=float(module.dropout),
                   bidirectional=module.bidirectional, proj_size=module.proj_size,
                   dtype=np.float32 if dtype == torch.float32 else np.float64)
        lstm.load_state_dict(module.state_dict())
        return lstm

    def to_onnx(self, path: "os.PathLike[str] | str", *, with_state: bool = True, with_lengths: bool = False) -> None:
        """Writes this model's inference as an ONNX graph of the standard LSTM operator (one node per
        layer; needs the ``onnx`` package). Inputs ``x`` (this model's layout; T and B free), then
        ``h0``, ``c0`` ((L*D, B, H)) when with_state and ``lengths`` ((B,) int32) when with_lengths;
        outputs ``y``, ``h_n``, ``c_n``. ONNX Runtime reproduces ``lstm(x, state, lengths)``. The ONNX
        operator has no projection: proj_size > 0 raises ValueError."""
        from ._exchange import to_onnx

        to_onnx(self, path, with_state=_bool_arg("with_state", with_state),
                with_lengths=_bool_arg("with_lengths", with_lengths))

    @classmethod
    def from_keras_weights(cls, kernel: Any, recurrent_kernel: Any, bias: Any = None, **kwargs: Any) -> "LSTM":
        """An LSTM equal to a Keras LSTM layer (tanh activation, sigmoid recurrent_activation, the
        defaults) with these weights, as ``layer.get_weights()`` returns them: kernel (I, 4H),
        recurrent_kernel (H, 4H), bias (4H,) or None (use_bias=False); gate order i, f, c, o.
        kwargs go to the constructor (batch_first=True matches Keras's (B, T, I) layout; dtype)."""
        from ._exchange import keras_to_state_dict

        input_size, hidden_size, state = keras_to_state_dict(kernel, recurrent_kernel, bias)
        lstm = cls(input_size, hidden_size, bias=bias is not None, **kwargs)
        lstm.load_state_dict(state)
        return lstm

    def to_keras_weights(self) -> list:
        """[kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,)] for a Keras LSTM layer's set_weights()
        (no bias when bias=False); one unidirectional layer without projection or peepholes only."""
        from ._exchange import to_keras_weights

        return to_keras_weights(self)

    def __repr__(self) -> str:
        args = [f"{self.input_size}", f"{self.hidden_size}"]
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        defaults = dict(bias=True, batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
                        peephole=False, forget_bias=0.0)
        for name, default in defaults.items():
            if getattr(self, name) != default:
                args.append(f"{name}={getattr(self, name)!r}")
        args.append(f"dtype={_DTYPES[self.dtype]}")
        return f"LSTM({', '.join(args)})"


def _check_header_fields(path: str) -> None:
    """Refuses unknown fields in a tensor's header entry, as the C++ loader does (the safetensors
    package ignores them). Called after safetensors validated the header, so its length is sane."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    for name, entry in header.items():
        if name != "__metadata__":
            unknown = sorted(set(entry) - {"dtype", "shape", "data_offsets"})
            if unknown:
                raise ValueError(f"path {path!r}: tensor {name!r} has unknown header field(s) {unknown}")


def load(path: "os.PathLike[str] | str") -> LSTM:
    """Reads a model file written by LSTM.save(). A file that is not one raises ValueError."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    from safetensors import safe_open

    path = os.fspath(path)
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
        tensors = load_file(path)
    except (SafetensorError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"path {path!r} is not a valid lstm_fast model file: {exc}") from exc
    _check_header_fields(path)
    if metadata.get("format") != _FORMAT or "config" not in metadata:
        raise ValueError(f"path {path!r} is not an lstm_fast model file: its metadata has no "
                         f"format={_FORMAT!r} and config")
    try:
        config = json.loads(metadata["config"])
        if not isinstance(config, dict):
            raise ValueError(f"config must be a JSON object, got {type(config).__name__}")
        # Configured but not initialised: a hostile config (huge sizes) must fail on the tensors it
        # does not match, not allocate first.
        lstm = LSTM.__new__(LSTM)
        lstm._configure(**config)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(f"path {path!r} has an invalid config in its metadata: {exc}") from exc
    # The count first: a config of 10**7 tiny layers must not make us list 4 * 10**7 expected names.
    per_cell = 2 + 2 * lstm.bias + (lstm.proj_size > 0) + lstm.peephole
    count = lstm.num_layers * lstm.num_directions * per_cell
    if count != len(tensors):
        raise ValueError(f"path {path!r} does not hold the tensors its config implies: {count} expected, "
                         f"{len(tensors)} found")
    expected = lstm._param_shapes()
    unexpected = [k for k in tensors if k not in expected]
    missing = [k for k in expected if k not in tensors]
    if unexpected or missing:
        raise ValueError(f"path {path!r} does not hold the tensors its config implies: "
                         f"missing {missing}, unexpected {unexpected}")
    for name, shape in expected.items():
        array = tensors[name]
        if array.dtype not in _DTYPES:  # what the C++ loader reads too
            raise ValueError(f"path {path!r}: tensor {name!r} must be float32 or float64, got {array.dtype}")
        if array.shape != shape:
            raise ValueError(f"path {path!r}: state_dict[{name!r}] must have shape {_shape(shape)}, "
                             f"got {_shape(array.shape)}")
        lstm._params[name] = np.ascontiguousarray(array, dtype=lstm.dtype)
    return lstm
