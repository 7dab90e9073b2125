"""The LSTM class: torch.nn.LSTM's interface over NumPy arrays, running on the C++ core.

Everything user-facing is checked here (with _checks and the config), so that errors name the argument,
what was expected and what came; the compiled core only re-checks that arrays match the shapes it will
read.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from . import _core, _exchange, _io
from ._checks import (
    as_float_array,
    bool_arg,
    check_fits,
    check_pair,
    check_shape,
    checkpoint_arg,
    core_ready,
    shape_str,
)
from ._config import ConfigAttributes, LSTMConfig, cell_arrays, cell_weights
from ._layout import SequenceLayout, State
from ._packing import Packing

if TYPE_CHECKING:  # lf.Model, which LSTM.freeze returns; _model imports nothing of this module
    from ._model import Model


class _TrainingRun(NamedTuple):
    """What forward(train=True) leaves for backward."""

    trace: Any
    weights: list  # the weights the forward used (copies: an update in between cannot skew BPTT)
    packing: Packing
    unbatched: bool
    y_shape: Tuple[int, ...]
    state_shapes: Tuple[Tuple[int, ...], Tuple[int, ...]]
    recurrent_masks: Optional[np.ndarray] = None  # (L*D, B, R) in the caller's row order, or None
    zoneout_seed: Optional[int] = None  # the seed of zoneout's masks (zoneout_masks_of), or None


# ---------------------------------------------------------------------------------------------------


class LSTM(SequenceLayout, ConfigAttributes):
    """A multi-layer LSTM with torch.nn.LSTM's equations, parameters and defaults, on NumPy arrays.

    Equations per layer and direction (gate order i, f, g, o, as torch)::

        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi [+ p_i * c_prev])
        f = sigmoid(W_if x + b_if + W_hf h + b_hf [+ p_f * c_prev])
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        c = f * c_prev + i * g
        o = sigmoid(W_io x + b_io + W_ho h + b_ho [+ p_o * c])
        h = o * tanh(c)                     (h = W_hr (o * tanh(c)) when proj_size > 0)

    The bracketed peephole terms (Gers & Schmidhuber 2000) are present when ``peephole=True``.
    With ``cell_clip=c`` the gates' pre-activations are clamped to [-c, c] before their sigmoid or tanh
    (ONNX's ``clip``); with ``coupled_gates=True``, f = 1 - i (ONNX's ``input_forget``). With
    ``zoneout``, c_t = d_c * c_{t-1} + (1 - d_c) * c and h_t = d_h * h_{t-1} + (1 - d_h) * h, c and h
    the new state above (Krueger et al. 2016). With ``layer_norm=True`` (Ba et al. 2016) the two
    products are layer-normalised, z = LN(W_ih x) + LN(W_hh h) + b_ih + b_hh, and h = o * tanh(LN(c)).

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
        layer_norm: the layer-normalised LSTM; gains ``ln_ih_weight_l{k}``, ``ln_hh_weight_l{k}`` (4H,),
            ``ln_cell_weight_l{k}`` (H,) initialised to 1, and biases ``ln_*_bias_l{k}`` to 0; eps 1e-5.
        cell_clip: None, or c > 0: the inputs of the gates' activations clamped to [-c, c].
        coupled_gates: the forget gate is 1 - the input gate (its weight rows stay, with zero gradient).
        recurrent_dropout: p, variational dropout of h_{t-1} in the recurrent product (Gal & Ghahramani
            2016): one mask per sequence and cell for a whole training forward, scaled by 1/(1-p).
        zoneout: z, or a pair (z_h, z_c) in [0, 1): in training each unit keeps its previous h (c) with
            probability z_h (z_c), a fresh 0/1 mask d per unit, step and sequence; in inference d = z.
        forget_bias: added to the forget-gate block of ``bias_ih`` at initialisation (1.0 as in
            Gers et al. 2000 and Keras's unit_forget_bias; 0.0 is torch's initialisation).
        dtype: np.float32 or np.float64, of parameters and outputs.
        seed: makes initialisation and dropout masks reproducible.

    The constructor arguments are read-only attributes (``lstm.hidden_size``): assigning one raises
    AttributeError, since the parameters were made for the old value; build a new model instead.

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
        layer_norm: bool = False,
        cell_clip: Optional[float] = None,
        coupled_gates: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: Any = 0.0,
        forget_bias: float = 0.0,
        dtype: Any = np.float32,
        seed: Optional[int] = None,
    ) -> None:
        self._setup(LSTMConfig.from_arguments(locals()))
        self._params = self._init_params()

    def _setup(self, config: LSTMConfig) -> None:
        """Everything but the parameters' values (lf.load fills them from a file)."""
        # Python ints: no overflow however absurd the sizes (LSTM(10**9, 10**9) is 4e18 numbers).
        check_fits(f"the parameters of LSTM({config.arguments_repr()})", config.num_params(), config.dtype)
        self._set_config(config)
        self._config = config.core()
        self._weight_names = config.cell_param_names()
        self._rng = np.random.default_rng(config.seed)
        self._params: Dict[str, np.ndarray] = {}
        self.grads: Dict[str, np.ndarray] = {}
        self._training_run: Optional[_TrainingRun] = None

    # What a copy leaves out: the compiled config (made again from _lstm_config), the cache of the core's
    # weight tuples (keyed by the arrays' ids) and a pending training run (its trace lives in C++).
    _UNCOPIED = ("_config", "_weights_cache", "_training_run")

    def __getstate__(self) -> Dict[str, Any]:
        """What pickle and copy.deepcopy keep: the config, parameters, gradients and the generator's
        state (a copy draws the same dropout masks); not a pending training run (backward() of the copy
        needs a forward of its own)."""
        return {k: v for k, v in self.__dict__.items() if k not in self._UNCOPIED}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state, _config=state["_lstm_config"].core(), _training_run=None)
        self._set_config(state["_lstm_config"])  # the attributes from the validated config (dtype: NumPy's own)

    @classmethod
    def _from_arrays(cls, config: LSTMConfig, tensors: Mapping[str, np.ndarray]) -> "LSTM":
        """A model of `config` with these parameters (names and shapes already checked), converted to
        the config's dtype."""
        lstm = cls.__new__(cls)
        lstm._setup(config)
        for name in config.param_shapes():
            lstm._params[name] = np.ascontiguousarray(tensors[name], dtype=config.dtype)
        return lstm

    def _init_params(self) -> Dict[str, np.ndarray]:
        # torch's initialisation: every parameter uniform in [-1/sqrt(H), 1/sqrt(H)] (peepholes too).
        bound = 1.0 / math.sqrt(self.hidden_size)
        params = {}
        for name, shape in self._lstm_config.param_shapes().items():
            if name.startswith("ln_"):  # layer norm: gain 1, bias 0 (Ba et al.)
                params[name] = np.full(shape, float("_weight_" in name), self.dtype)
                continue
            params[name] = self._rng.uniform(-bound, bound, size=shape).astype(self.dtype)
            if name.startswith("bias_ih"):
                params[name][self.hidden_size : 2 * self.hidden_size] += self.forget_bias
        return params

    def _weights(self, params: Mapping[str, np.ndarray]) -> List[_core.CellWeights]:
        """The core's CellWeights of each cell.

        Kept between calls while `params` holds the same arrays (building it took 2 of a streaming
        step's 14 us). Only a list of the arrays themselves is kept, never one with a copy in it, so
        in-place updates (an optimizer's) are always seen; the arrays it holds stay alive, so their
        ids cannot be reused by new arrays."""
        key = tuple(map(id, params.values()))
        cached = self.__dict__.get("_weights_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        names = self._weight_names
        dtype = self.dtype
        # The model's own arrays are aligned; a copy only if someone swapped in an unaligned view.
        arrays = [
            tuple(None if (a := params.get(name)) is None else core_ready(a, dtype) for name in cell) for cell in names
        ]
        cells = [cell_weights(cell) for cell in arrays]
        if all(a is params.get(name) for cell, got in zip(names, arrays) for name, a in zip(cell, got)):
            self._weights_cache = (key, cells)
        return cells

    # -- parameters ----------------------------------------------------------------------------------

    def state_dict(self) -> Dict[str, np.ndarray]:
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
        expected = self._lstm_config.param_shapes()
        unexpected = [k for k in state_dict if k not in expected]
        if unexpected:
            raise ValueError(f"state_dict has unexpected key(s) {unexpected}; expected keys: {list(expected)}")
        missing = [k for k in expected if k not in state_dict]
        if strict and missing:
            raise ValueError(f"state_dict is missing key(s) {missing}")
        staged = {}
        for name, value in state_dict.items():
            array = as_float_array(f"state_dict[{name!r}]", value, self.dtype)
            check_shape(f"state_dict[{name!r}]", array, expected[name])
            staged[name] = array
        for name, array in staged.items():
            np.copyto(self._params[name], array)

    # -- running -------------------------------------------------------------------------------------

    @property
    def _io_dtype(self) -> type:
        return self.dtype

    def freeze(self, precision: str = "fp32") -> "Model":
        """The frozen inference model of these weights (lf.Model): "fp32", "bf16" or "int8" (the
        precision contract: docs/api.md, "Inference models and precision"). Its weights are converted
        and packed once, here; later changes to this LSTM do not reach it."""
        from ._model import freeze

        return freeze(self._lstm_config, self.state_dict(), precision)

    def __call__(self, x: Any, state: Optional[State] = None, lengths: Any = None) -> Tuple[np.ndarray, State]:
        """Inference: ``y, (h_n, c_n) = lstm(x, state=None, lengths=None)``; see forward()."""
        return self.forward(x, state, lengths, train=False)

    def forward(
        self,
        x: Any,
        state: Optional[State] = None,
        lengths: Any = None,
        train: bool = True,
        precision: str = "fp32",
        checkpoint: Optional[int | str] = None,
    ) -> Tuple[np.ndarray, State]:
        """Runs the sequence; with ``train=True`` keeps what backward() needs and applies dropout.

        Args:
            x: (T, B, I), (B, T, I) when batch_first, or (T, I) unbatched; converted to self.dtype.
            state: (h0, c0) with h0 (L*D, B, R) and c0 (L*D, B, H) (no B when unbatched); None = zeros.
            lengths: (B,) integers in [1, T] for padded batches (torch's packed-sequence semantics:
                outputs past a sequence's length are 0, its final state is taken at its last step, and
                the reverse direction starts at its last step).
            precision: "fp32", or in training "bf16": mixed precision, every matrix product's operands
                (x, h_{t-1}, the weights, and in backward() the gradients w.r.t. the gates) rounded
                to bfloat16, the products summed in float32; parameters, gates, cell state and
                gradients stay float32 (float32 models only). backward() runs the same way.
                Gradients within a few percent (relative norm) of fp32's: docs/api.md, "Training".
            checkpoint: training only. None keeps the trace of every step for backward(); an int k >= 1
                keeps each cell's state every k steps and backward() runs the steps between again
                (checkpointed BPTT: memory for about one more forward), "auto" chooses k near sqrt(T).
                k is rounded up to whole blocks of the backward (at least 1024 rows: 1024 / B steps),
                and a call of fewer steps or rows keeps the whole trace. Outputs and gradients are
                bitwise those of None.
        Returns:
            y: (T, B, D*R) in x's layout; (h_n, c_n) shaped like (h0, c0).
        """
        train = bool_arg("train", train)
        checkpoint_steps = checkpoint_arg(checkpoint, train)
        precision = self._training_precision(precision, train)
        x, unbatched, packing, h0, c0 = self._sequence_inputs(x, state, lengths)
        if x.shape[1] == 0:
            return self._empty_forward(x.shape[0], packing, train)

        numbers = self._call_numbers(sum(packing.batch_sizes), train, checkpoint_steps != 0)
        check_fits(f"the output{' and trace' if train else ''} of x of shape {shape_str(x.shape)}", numbers, self.dtype)
        masks = self._dropout_masks(sum(packing.batch_sizes)) if train else []
        recurrent = self._recurrent_masks(x.shape[1]) if train else None
        zoneout = self._zoneout_seed() if train else None
        weights = self._weights(self._params)
        y, h_n, c_n, trace = _core.forward(
            self._config,
            weights,
            packing.pack(x),
            batch_sizes=packing.batch_sizes,
            batch=x.shape[1],
            h0=h0,
            c0=c0,
            dropout_masks=masks,
            train=train,
            recurrent_masks=None if recurrent is None else packing.sort_state(recurrent),
            zoneout_seed=zoneout,
            checkpoint=checkpoint_steps,
            precision=precision,
        )
        y, (h_n, c_n) = self._sequence_outputs(y, h_n, c_n, packing, unbatched)
        if train:
            snapshot = [cell_weights(None if a is None else a.copy() for a in cell_arrays(w)) for w in weights]
            shapes = (h_n.shape, c_n.shape)
            self._training_run = _TrainingRun(trace, snapshot, packing, unbatched, y.shape, shapes, recurrent, zoneout)
        return y, (h_n, c_n)

    def backward(self, dy: Any, dstate: Optional[Tuple[Any, Any]] = None) -> Tuple[np.ndarray, State]:
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
            raise ValueError(
                "backward() needs a training forward first: call forward(x, train=True), then backward(dy) once"
            )
        dy = as_float_array("dy", dy, self.dtype)
        check_shape("dy", dy, run.y_shape)
        dh_n, dc_n = check_pair(
            "dstate",
            dstate,
            ("dh_n", "dc_n"),
            run.state_shapes,
            lambda part, value: None if value is None else as_float_array(part, value, self.dtype),
        )
        if run.trace is None:
            return self._empty_backward(run)

        dh_n, dc_n = (
            None if v is None else run.packing.sort_state(self._add_batch(v, run.unbatched)) for v in (dh_n, dc_n)
        )
        dy = run.packing.pack(np.ascontiguousarray(self._from_user_layout(dy, run.unbatched)))
        dx, dh0, dc0, cell_grads = _core.backward(
            run.weights, run.trace, np.ascontiguousarray(dy), dh_n=dh_n, dc_n=dc_n
        )
        self._training_run = None
        grads = {
            name: g
            for names, cell in zip(self._weight_names, cell_grads)
            for name, g in zip(names, cell_arrays(cell))
            if g is not None
        }
        self.grads = {name: grads[name] for name in self._params}  # state_dict's order
        dx = self._to_user_layout(run.packing.unpack(dx), run.unbatched)
        dh0 = self._drop_batch(run.packing.unsort_state(dh0), run.unbatched)
        dc0 = self._drop_batch(run.packing.unsort_state(dc0), run.unbatched)
        return dx, (dh0, dc0)

    def _empty_forward(self, steps: int, packing: Packing, train: bool) -> Tuple[np.ndarray, State]:
        """forward() of a batch of no sequences (B = 0): torch's empty outputs; in training, a run whose
        backward() gives zero gradients (no trace: nothing was computed)."""
        y, (h_n, c_n) = self._empty_batch(steps)
        if train:
            self._training_run = _TrainingRun(None, [], packing, False, y.shape, (h_n.shape, c_n.shape))
        return y, (h_n, c_n)

    def _empty_backward(self, run: _TrainingRun) -> Tuple[np.ndarray, State]:
        """backward() of a batch of no sequences: dx (T, 0, I) in x's layout, empty (dh0, dc0), and zero
        gradients of every parameter (as torch's)."""
        self._training_run = None
        self.grads = {name: np.zeros_like(p) for name, p in self._params.items()}
        steps = run.y_shape[1] if self.batch_first else run.y_shape[0]
        dx = np.zeros((0, steps, self.input_size) if self.batch_first else (steps, 0, self.input_size), self.dtype)
        return dx, (np.zeros(run.state_shapes[0], self.dtype), np.zeros(run.state_shapes[1], self.dtype))

    def step(self, x_t: Any, state: Optional[State] = None) -> Tuple[np.ndarray, State]:
        """One time step through every layer (unidirectional models): ``y_t, state = lstm.step(x_t, state)``.

        x_t: (B, I) or (I,); state: (h, c) from initial_state() or the previous step, None = zeros.
        Returns y_t (B, R) (or (R,)) and the new state. Feeding a sequence step by step gives the same
        outputs as one call on the whole sequence.
        """
        x, unbatched = self._check_step_input(x_t)
        B = x.shape[0]
        h0, c0 = self._check_state("state", state, B, unbatched)
        y, h_n, c_n, _ = _core.forward(
            self._config, self._weights(self._params), x, batch_sizes=[B], batch=B, h0=h0, c0=c0
        )
        if unbatched:
            return y[0], (h_n[:, 0], c_n[:, 0])
        return y, (h_n, c_n)

    def _training_precision(self, precision: Any, train: bool) -> str:
        """forward()'s `precision`, checked: "fp32", or "bf16" (a float32 model's training)."""
        if not isinstance(precision, str) or precision not in ("fp32", "bf16"):
            raise ValueError(f'precision must be "fp32" or "bf16", got {precision!r}')
        if precision == "fp32":
            return "fp32"
        if not train:
            raise ValueError(
                'precision="bf16" is a training option (train=True); for bf16 inference freeze the model: '
                'lstm.freeze("bf16")'
            )
        if self.dtype != np.float32:
            raise ValueError(f'precision="bf16" trains float32 models, got dtype {np.dtype(self.dtype).name}')
        return "bf16"

    def _call_numbers(self, rows: int, train: bool, checkpointed: bool) -> int:
        """The numbers a forward over `rows` packed rows allocates beyond x: y, and in training each
        layer's input and dropout mask and each cell's trace (the gates, c_t, c_{t-1}, h_{t-1}; layer
        norm's normalised inputs, tanh and stds; zoneout's masks), none of it per row when checkpointed.
        A small x can ask for a huge y when D*R >> I."""
        H, R, DR = self.hidden_size, self.output_size, self.num_directions * self.output_size
        numbers = rows * DR
        if not train:
            return numbers
        numbers += rows * (self.input_size + (self.num_layers - 1) * DR * 2)
        if not checkpointed:
            per_row = 6 * H + R + (10 * H + 3 if self.layer_norm else 0)
            per_row += R + H if self._lstm_config.zoneout_pair != (0.0, 0.0) else 0
            numbers += rows * self.num_layers * self.num_directions * per_row
        return numbers

    def _recurrent_masks(self, batch: int) -> Optional[np.ndarray]:
        """The recurrent dropout masks r (L*D, B, R), one per sequence and cell, scaled by 1/(1-p); or None."""
        if self.recurrent_dropout == 0.0:
            return None
        keep = 1.0 - self.recurrent_dropout
        shape = (self.num_layers * self.num_directions, batch, self.output_size)
        return ((self._rng.random(shape) < keep) / keep).astype(self.dtype)

    def _zoneout_seed(self) -> Optional[int]:
        """A fresh seed for zoneout's masks from the model's generator (the core draws the masks from it,
        zoneout_masks_of); None without zoneout."""
        if self._lstm_config.zoneout_pair == (0.0, 0.0):
            return None
        return int(self._rng.integers(2**63))

    def _dropout_masks(self, rows: int) -> List[np.ndarray]:
        """Inter-layer dropout masks, [rows, D*R] each, already scaled by 1/(1-p)."""
        if self.dropout == 0.0 or self.num_layers == 1:
            return []
        keep = 1.0 - self.dropout
        shape = (rows, self.num_directions * self.output_size)
        return [((self._rng.random(shape) < keep) / keep).astype(self.dtype) for _ in range(self.num_layers - 1)]

    # -- files and other libraries -------------------------------------------------------------------

    def config(self) -> Dict[str, Any]:
        """The constructor arguments (dtype as a string), as saved in a model file's metadata."""
        return self._lstm_config.to_dict()

    def save(self, path: "os.PathLike[str] | str") -> None:
        """Writes one safetensors file: the state_dict under torch's names, the constructor arguments
        in the metadata. Atomic: written to a temporary file in the same folder, then renamed."""
        _io.write(path, self.state_dict(), self._lstm_config)

    @classmethod
    def from_torch(cls, module: Any) -> "LSTM":
        """An LSTM equal to a torch.nn.LSTM (float32 or float64 parameters)."""
        import torch  # optional: only this method needs it

        if not isinstance(module, torch.nn.LSTM):
            raise TypeError(f"module must be a torch.nn.LSTM, got {type(module).__name__}")
        dtype = module.weight_ih_l0.dtype
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"module's parameters must be float32 or float64, got {dtype}")
        lstm = cls(
            module.input_size,
            module.hidden_size,
            module.num_layers,
            bias=module.bias,
            batch_first=module.batch_first,
            dropout=float(module.dropout),
            bidirectional=module.bidirectional,
            proj_size=module.proj_size,
            dtype=np.float32 if dtype == torch.float32 else np.float64,
        )
        lstm.load_state_dict(module.state_dict())
        return lstm

    def to_onnx(self, path: "os.PathLike[str] | str", *, with_state: bool = True, with_lengths: bool = False) -> None:
        """Writes this model's inference as an ONNX graph of the standard LSTM operator (one node per
        layer; needs the ``onnx`` package). Inputs ``x`` (this model's layout; T and B free), then
        ``h0``, ``c0`` ((L*D, B, H)) when with_state and ``lengths`` ((B,) int32) when with_lengths;
        outputs ``y``, ``h_n``, ``c_n``. ONNX Runtime reproduces ``lstm(x, state, lengths)``. The ONNX
        operator has no projection: proj_size > 0 raises ValueError."""
        _exchange.to_onnx(
            self._lstm_config,
            self.state_dict(),
            path,
            with_state=bool_arg("with_state", with_state),
            with_lengths=bool_arg("with_lengths", with_lengths),
        )

    @classmethod
    def from_keras_weights(cls, kernel: Any, recurrent_kernel: Any, bias: Any = None, **kwargs: Any) -> "LSTM":
        """An LSTM equal to a Keras LSTM layer (tanh activation, sigmoid recurrent_activation, the
        defaults) with these weights, as ``layer.get_weights()`` returns them: kernel (I, 4H),
        recurrent_kernel (H, 4H), bias (4H,) or None (use_bias=False); gate order i, f, c, o.
        kwargs go to the constructor (batch_first=True matches Keras's (B, T, I) layout; dtype)."""
        input_size, hidden_size, state = _exchange.keras_to_state_dict(kernel, recurrent_kernel, bias)
        lstm = cls(input_size, hidden_size, bias=bias is not None, **kwargs)
        lstm.load_state_dict(state)
        return lstm

    def to_keras_weights(self) -> List[np.ndarray]:
        """[kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,)] for a Keras LSTM layer's set_weights()
        (no bias when bias=False); one unidirectional layer without projection or peepholes only."""
        return _exchange.to_keras_weights(self._lstm_config, self.state_dict())

    def __repr__(self) -> str:
        return f"LSTM({self._lstm_config.arguments_repr()})"


def load(path: "os.PathLike[str] | str") -> LSTM:
    """Reads a model file written by LSTM.save(): a trainable LSTM of the file's config, its parameters
    converted to the config's dtype. A file that is not one raises ValueError naming the path and the
    problem; a missing file FileNotFoundError."""
    config, tensors = _io.read(path)
    return LSTM._from_arrays(config, tensors)


def zoneout_masks_of(config: LSTMConfig, seed: int, rows: int) -> Tuple[np.ndarray, np.ndarray]:
    """The zoneout masks a training forward of `rows` packed rows drew from `seed` (its run's
    zoneout_seed): d_h (L*D, rows, R) and d_c (L*D, rows, H), float64, 1 where the unit kept its previous
    state (probability z_h, z_c, each unit, row and cell independently)."""
    z_h, z_c = config.zoneout_pair
    return _core.zoneout_masks(seed, config.num_cells, rows, config.output_size, config.hidden_size, z_h, z_c)
