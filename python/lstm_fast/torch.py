"""``lstm_fast.torch.LSTM``: torch.nn.LSTM's module, with forward and backward run by lstm_fast's kernels.

    from lstm_fast.torch import LSTM          # instead of torch.nn.LSTM
    lstm = LSTM(input_size, hidden_size, num_layers=2, batch_first=True)
    y, (h_n, c_n) = lstm(x)                   # x: a tensor or a PackedSequence
    y.sum().backward()                        # gradients land in lstm.weight_ih_l0.grad, ...

Same constructor, forward signature, outputs and parameter names as torch.nn.LSTM, plus ``peephole``
and ``forget_bias``. It trains with any torch optimizer and under DistributedDataParallel (the gradients
arrive through torch's autograd like any module's). Autograd runs through :class:`_LSTMFunction`, which
hands the C++ core the tensors' own memory: contiguous float32 / float64 CPU tensors are not copied
(the core writes its outputs into fresh NumPy arrays that become the returned tensors, also without a
copy). While torch traces (torch.compile, torch.export, torch.func, torch.jit.trace) the kernels run as
the custom ops of ``_torch_ops`` instead. Only CPU tensors are supported.

torch is an optional dependency (``pip install "lstm_fast[torch]"``); only this module (and the
``_torch_*`` modules it imports) imports it.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import _torch_checks, _torch_ops
from ._checks import checkpoint_arg
from ._config import ConfigAttributes, LSTMConfig, cell_arrays
from ._lstm import LSTM as _NumpyLSTM
from ._torch_checks import TypeAndRuntimeError, TypeAndValueError, ValueAndRuntimeError
from ._torch_ops import cell_weights_of as _cell_weights

__all__ = ["LSTM", "TypeAndRuntimeError", "TypeAndValueError", "ValueAndRuntimeError"]

# torch.nn.LSTM's arguments but the device (its errors are asked of it on the meta device).
_TORCH_ARGUMENTS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional")
_TORCH_ARGUMENTS += ("proj_size", "dtype")

# The parameter dtypes the kernels run, and their NumPy names for the config; bfloat16 and float16
# modules compute in float32 (the kernels' bf16 products for bfloat16 in training).
_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.bfloat16: np.float32, torch.float16: np.float32}
_COMPUTE_DTYPES = {torch.bfloat16: torch.float32, torch.float16: torch.float32}


class _LSTMFunction(torch.autograd.Function):
    """One call of the core on a packed sequence, and its backpropagation through time.

    Inputs: x [N, I] packed (rows of step t follow those of step t-1, longest sequences first, as in a
    PackedSequence), h0 [L*D, B, R] and c0 [L*D, B, H] (None for zeros) in that sorted batch order, and
    the parameters of every cell in the core's order (CELL_KINDS) (layer k, direction d at k*D + d). Outputs y
    [N, D*R], h_n, c_n. The training forward keeps the core's trace (gates, cells, layer inputs) on ctx;
    x, the state and the parameters are saved through save_for_backward, so an in-place update between
    forward and backward raises torch's usual version error instead of skewing the gradient (and a
    backward with create_graph=True can recompute the layer from them).
    """

    @staticmethod
    def forward(
        ctx,
        config,
        batch_sizes: List[int],
        batch: int,
        masks: list,
        recurrent: Optional[Tensor],
        zoneout: Optional[int],
        train: bool,
        checkpoint: int,
        bf16: bool,
        x: Tensor,
        h0: Optional[Tensor],
        c0: Optional[Tensor],
        *params: Optional[Tensor],
    ):
        cells = _cell_weights(params)
        how = (batch_sizes, batch, zoneout, train, checkpoint, bf16)
        y, h_n, c_n, trace = _torch_ops.core_forward(config, cells, x, h0, c0, masks, recurrent, *how)
        ctx.set_materialize_grads(False)
        ctx.trace = trace
        ctx.present = [t is not None for t in (x, h0, c0, *params)]
        ctx.y_shape, ctx.state_given = y.shape, (h0 is not None, c0 is not None)
        ctx.graph = (config, batch_sizes, masks, recurrent, zoneout, bf16)
        ctx.save_for_backward(*(t for t in (x, h0, c0, *params) if t is not None))
        return torch.from_numpy(y), torch.from_numpy(h_n), torch.from_numpy(c_n)

    @staticmethod
    def backward(ctx, dy: Optional[Tensor], dh_n: Optional[Tensor], dc_n: Optional[Tensor]):
        if ctx.trace is None:
            raise RuntimeError("lstm_fast.torch.LSTM: backward through a forward run without gradients")
        saved = iter(ctx.saved_tensors)
        x, h0, c0, *params = [next(saved) if present else None for present in ctx.present]
        if torch.is_grad_enabled() or _torch_ops.batched(dy, dh_n, dc_n):
            # create_graph=True: the gradients must carry a graph themselves; batched output gradients (a
            # vmap over the backward, as gradcheck's batched-gradient check and torch.autograd.functional's
            # vectorize=True): the core cannot read a BatchedTensor's memory, torch operations can
            return _LSTMFunction._differentiable_backward(ctx, (dy, dh_n, dc_n), x, h0, c0, params)
        cells = _cell_weights(params)
        if dy is None:  # only the final state was used
            dy = torch.zeros(ctx.y_shape, dtype=params[0].dtype)
        dx, dh0, dc0, grads = _torch_ops.core_backward(cells, ctx.trace, dy, dh_n, dc_n)
        flat = [None if g is None else torch.from_numpy(g) for cell in grads for g in cell_arrays(cell)]
        dh0 = torch.from_numpy(dh0) if ctx.state_given[0] else None
        dc0 = torch.from_numpy(dc0) if ctx.state_given[1] else None
        return (None,) * 9 + (torch.from_numpy(dx), dh0, dc0, *flat)

    @staticmethod
    def _differentiable_backward(ctx, grads: tuple, x: Tensor, h0, c0, params: list):
        """backward() with create_graph=True: _torch_ops.differentiable_backward (the layer recomputed in
        torch operations and differentiated with a graph)."""
        wanted = [t is not None and ctx.needs_input_grad[9 + i] for i, t in enumerate([x, h0, c0, *params])]
        result = _torch_ops.differentiable_backward(ctx.graph, grads, [x, h0, c0, *params], wanted)
        return (None,) * 9 + tuple(result)


class LSTM(ConfigAttributes, nn.LSTM):
    """torch.nn.LSTM on lstm_fast's kernels: same arguments, parameters, inputs and outputs.

    A subclass of torch.nn.LSTM (and so of nn.RNNBase) made by its constructor: torch's attributes,
    ``_flat_weights``, ``all_weights``, ``flatten_parameters``, ``check_forward_args``, state dicts and
    initialisation (draw for draw); only forward runs lstm_fast's kernels. forward reads every weight as
    an attribute at each call, so parametrizations (weight_norm, spectral_norm, orthogonal), pruning,
    weight-drop and torch.func.functional_call run what they put in a parameter's place. The extras'
    parameters (peepholes, layer norm) are parameters beside torch's, not in ``_flat_weights``.

    Args (as torch.nn.LSTM): input_size I, hidden_size H, num_layers L, bias, batch_first, dropout,
    bidirectional (D = 2), proj_size R (0 means R = H), device (the CPU, or meta: shapes alone), dtype
    (float32, float64, bfloat16 or float16; default torch.get_default_dtype()). Extra, keyword-only:
        peephole: diagonal weights from the cell into the gates, ``weight_peep_l{k}`` of shape (3, H),
            rows (i, f, o) (Gers & Schmidhuber 2000).
        forget_bias: added to the forget-gate block of ``bias_ih`` at initialisation (1.0 as in Gers et
            al. 2000; 0.0 is torch's initialisation).
        cell_clip: None, or c > 0: the gates' pre-activations clamped to [-c, c] (ONNX's clip).
        coupled_gates: f = 1 - i (ONNX's input_forget); the forget rows stay, with zero gradient.
        recurrent_dropout: p, variational dropout of h_{t-1} in the recurrent product in training (one
            mask per sequence and cell a call, from torch's generator, scaled by 1/(1-p)).
        layer_norm: the layer-normalised LSTM of Ba et al. (2016), with ``ln_*`` gains (initialised to 1)
            and biases (0), as lstm_fast.LSTM.
        zoneout: z or (z_h, z_c): in training each unit keeps its previous h (c) with probability z_h
            (z_c), a fresh mask per unit, step and sequence from torch's generator; in eval, d = z.

    Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` a training forward (gradients enabled) of a
    float32 module runs bf16 mixed precision, as lstm_fast.LSTM.forward(precision="bf16"): the matrix
    products' operands rounded to bfloat16, summed in float32; parameters, outputs, state and
    gradients float32. Inputs may be bfloat16 there (other layers' autocast outputs). Inference under
    autocast stays float32 (``to_numpy().freeze("bf16")`` for bf16 inference).

    A bfloat16 module (``dtype=torch.bfloat16`` or ``.bfloat16()``) takes and returns bfloat16 tensors
    and trains on the same bf16 kernels (its bf16 weights, inputs and states widened to float32
    exactly; the products' other operands rounded to bfloat16); its inference computes in float32 from
    the bf16 weights. A float16 module (``.half()``) computes in float32 (the kernels have no float16
    products); outputs are rounded to the module's dtype, gradients arrive in it.

    Keyword-only, not part of the model:
        checkpoint: None, k >= 1 or "auto": checkpointed backpropagation through time, as
            lstm_fast.LSTM.forward's (the state kept every k steps, the steps between run again in
            backward; the same gradients, bitwise). An attribute: ``lstm.checkpoint = "auto"``.

    Forward: ``output, (h_n, c_n) = lstm(input, hx=None)``.
        input: (T, B, I), (B, T, I) when batch_first, (T, I) unbatched, or a PackedSequence.
        hx: (h_0, c_0) of shapes (L*D, B, R) and (L*D, B, H) ((L*D, R), (L*D, H) unbatched); None = zeros.
        output: (T, B, D*R) in input's layout, or a PackedSequence for a PackedSequence input.
        h_n, c_n: shaped like h_0, c_0; for packed input, each sequence's state after its last step.
    """

    # The constructor arguments are read-only attributes, as on lf.LSTM. dtype and seed are not among
    # them: a module's dtype is its parameters' (module.double() changes it), and torch seeds itself.
    _config_exclude = ("dtype", "seed")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Optional[torch.dtype] = None,
        *,
        peephole: bool = False,
        layer_norm: bool = False,
        forget_bias: float = 0.0,
        cell_clip: Optional[float] = None,
        coupled_gates: bool = False,
        recurrent_dropout: float = 0.0,
        zoneout: Any = 0.0,
        checkpoint: Optional[int | str] = None,
    ) -> None:
        config, dtype = self._checked_arguments(locals())
        # torch.nn.LSTM's constructor: its attributes, parameters (names, shapes, order), _flat_weights
        # and _all_weights; then the extras' parameters (peepholes, layer norm), which are not in those.
        arguments = {name: getattr(config, name) for name in _TORCH_ARGUMENTS[:-1]}
        super().__init__(**arguments, device=device, dtype=dtype)
        self._set_config(config)
        self._config = config.core()
        self._config_key = _torch_ops.config_key(self._config)  # what the custom ops take for it
        for name, shape in config.param_shapes().items():
            if not hasattr(self, name):
                self.register_parameter(name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        shapes = config.param_shapes()
        self._cell_param_names = [tuple(n if n in shapes else None for n in cell) for cell in config.cell_param_names()]
        self.checkpoint = checkpoint
        self.reset_parameters()

    @staticmethod
    def _checked_arguments(arguments: Dict[str, Any]) -> Tuple[LSTMConfig, torch.dtype]:
        """The constructor's arguments (its locals()) checked: the config and the parameters' dtype. A bad
        one raises lstm_fast's error, which is also torch.nn.LSTM's for the same arguments
        (_torch_checks.constructor_error)."""
        try:
            config = LSTMConfig.from_arguments(arguments, exclude=LSTM._config_exclude)
            device, dtype = arguments["device"], arguments["dtype"]
            if device is not None and torch.device(device).type not in ("cpu", "meta"):
                raise ValueError(f"device must be the CPU or meta (lstm_fast runs on CPUs), got {device!r}")
            dtype = torch.get_default_dtype() if dtype is None else dtype
            if not isinstance(dtype, torch.dtype) or dtype not in _DTYPES:
                raise TypeError(
                    f"dtype must be torch.float32, torch.float64, torch.bfloat16 or torch.float16, got {dtype!r}"
                )
        except (TypeError, ValueError) as ours:
            torch_arguments = {name: arguments[name] for name in _TORCH_ARGUMENTS}
            raise _torch_checks.constructor_error(ours, torch_arguments) from None
        return config.replace(dtype=_DTYPES[dtype]), dtype

    @property
    def checkpoint(self) -> Optional[int | str]:
        """Checkpointed BPTT in training: None (the whole trace), k >= 1 steps or "auto"."""
        return self._checkpoint

    @checkpoint.setter
    def checkpoint(self, value: Optional[int | str]) -> None:
        self._checkpoint_steps = checkpoint_arg(value, True)
        self._checkpoint = value

    def __getstate__(self) -> Dict[str, Any]:
        """pickle, copy.deepcopy and torch.save(module): the module's state without the compiled config
        (made again from the arguments on load)."""
        state = super().__getstate__()
        return {k: v for k, v in state.items() if k != "_config"}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        if "proj_size" not in state and "_lstm_config" in state:
            # a state without proj_size (torch.nn.LSTM's before PyTorch 1.8): torch's __setstate__ would set
            # it to 0, which the read-only attribute refuses; it is the config's
            state = {**state, "proj_size": state["_lstm_config"].proj_size}
        super().__setstate__(state)
        self.__dict__["_config"] = self._lstm_config.core()
        self.__dict__["_config_key"] = _torch_ops.config_key(self._config)

    def reset_parameters(self) -> None:
        """torch's initialisation: uniform in [-1/sqrt(H), 1/sqrt(H)], the same draws as torch.nn.LSTM's
        for its parameters (the peepholes' after them); then forget_bias is added, layer norm's gains
        set to 1 and biases to 0."""
        if "_lstm_config" not in self.__dict__:  # called by torch.nn.RNNBase's constructor: once, at the end
            return
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("ln_"):  # layer norm: gain 1, bias 0
                    p.fill_(float("_weight_" in name))
                    continue
                p.uniform_(-bound, bound)
                if name.startswith("bias_ih"):
                    p[self.hidden_size : 2 * self.hidden_size] += self.forget_bias

    def extra_repr(self) -> str:
        return self._lstm_config.arguments_repr(dtype=False)

    def _cell_params(self) -> List[Optional[Tensor]]:
        """The weights of every cell in the core's order (CELL_KINDS), None where absent, read as
        attributes at each call: a parametrization's (weight_norm, spectral_norm), pruning's or
        weight-drop's tensor in a parameter's place is what runs, as in torch.nn.LSTM."""
        return [None if name is None else getattr(self, name) for cell in self._cell_param_names for name in cell]

    # -- forward -------------------------------------------------------------------------------------

    def forward(self, input: Any, hx: Optional[Tuple[Tensor, Tensor]] = None) -> Tuple[Any, Tuple[Tensor, Tensor]]:
        """``output, (h_n, c_n) = lstm(input, hx)``: the shapes of the class docstring."""
        params = self._cell_params()
        dtype, device = params[0].dtype, params[0].device
        autocast = self._autocast_bf16(dtype)
        packed = isinstance(input, PackedSequence)
        x, batch_sizes, unbatched = self._check_input(input, packed, dtype, device, autocast)
        batch = batch_sizes[0] if batch_sizes else 0
        h0, c0 = self._check_state(hx, batch, unbatched, dtype, device, autocast)
        if packed and input.sorted_indices is not None and h0 is not None:
            h0, c0 = h0.index_select(1, input.sorted_indices), c0.index_select(1, input.sorted_indices)
        if batch == 0:
            y, (h_n, c_n) = self._empty_batch(len(batch_sizes), x, h0, c0, params)
        else:
            y, h_n, c_n = self._run(x, h0, c0, params, batch_sizes, autocast or dtype == torch.bfloat16)
        if packed:
            if input.unsorted_indices is not None:
                h_n, c_n = h_n.index_select(1, input.unsorted_indices), c_n.index_select(1, input.unsorted_indices)
            return PackedSequence(y, input.batch_sizes, input.sorted_indices, input.unsorted_indices), (h_n, c_n)
        if batch == 0:
            return y, (h_n, c_n)
        y = y.view(len(batch_sizes), batch, y.shape[-1])
        if unbatched:
            return y.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        return (y.transpose(0, 1) if self.batch_first else y), (h_n, c_n)

    def _check_input(self, input: Any, packed: bool, dtype: torch.dtype, device: torch.device, autocast: bool):
        """The input checked and packed: (x [N, I], batch_sizes, unbatched); input a PackedSequence when
        `packed`, else a dense (T, B, I) ((B, T, I) when batch_first) or (T, I) tensor, of the parameters'
        dtype and device."""
        x = self._from_autocast(input.data if packed else input, autocast)
        if packed:
            _torch_checks.check_tensor("input.data", x, dtype, device)
            _torch_checks.check_packed_shape(tuple(x.shape), self.input_size)
            return x, [int(b) for b in input.batch_sizes], False
        _torch_checks.check_tensor("input", x, dtype, device)
        unbatched = _torch_checks.check_input_shape(tuple(x.shape), self.input_size, self.batch_first)
        if unbatched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        return x.contiguous().view(steps * batch, self.input_size), [batch] * steps, unbatched

    def _run(
        self, x: Tensor, h0: Optional[Tensor], c0: Optional[Tensor], params: list, batch_sizes: List[int], bf16: bool
    ):
        """The kernels on packed x [N, I] from (h0, c0) in sorted order: (y [N, D*R], h_n, c_n), through
        autograd (_LSTMFunction; while torch traces, torch.compile, torch.export or torch.func, the custom
        ops of _torch_ops instead, which run one forward more in backward). bfloat16 and float16 modules
        compute in float32 (their parameters, input and state widened, exactly; the outputs rounded back),
        bf16 ones with the bf16 products in training (`bf16`). params: _cell_params()."""
        dtype = x.dtype
        compute = _COMPUTE_DTYPES.get(dtype, dtype)
        if compute != dtype:  # a bfloat16 or float16 module: the casts are on the graph
            x, h0, c0 = (None if t is None else t.to(compute) for t in (x, h0, c0))
            params = [None if p is None else p.to(compute) for p in params]
        batch = batch_sizes[0]
        train = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in [x, h0, c0, *params])
        masks = self._dropout_masks(len(x), compute, x.device) if self.training else []
        recurrent = self._recurrent_masks(batch, compute, x.device) if self.training else None
        seed = self._zoneout_seed(x.device) if self.training else None
        tensors = [t if t is None else t.contiguous() for t in (x, h0, c0, *params)]
        # (the core takes zoneout's masks in a training forward only: train is on with zoneout)
        train = train or seed is not None
        if _torch_ops.tracing(tensors):  # torch.compile, torch.export, torch.func: the custom ops
            present = [int(p is not None) for p in tensors[3:]]
            how = (present, masks, recurrent, batch_sizes, batch, seed, train, self._checkpoint_steps, bf16)
            params = [p for p in tensors[3:] if p is not None]
            outputs = _torch_ops.apply((*how, self._config_key), *tensors[:3], *params)
            return self._from_compute(outputs, dtype)
        zoneout = None if seed is None else int(seed.item())
        how = (masks, recurrent, zoneout, train, self._checkpoint_steps, bf16)
        return self._from_compute(_LSTMFunction.apply(self._config, batch_sizes, batch, *how, *tensors), dtype)

    @staticmethod
    def _from_compute(outputs: Tuple[Tensor, ...], dtype: torch.dtype) -> Tuple[Tensor, ...]:
        """_run's outputs in the module's dtype (rounded from float32 for a bfloat16 or float16 module)."""
        return tuple(t if t.dtype == dtype else t.to(dtype) for t in outputs)

    def _empty_batch(self, steps: int, x: Tensor, h0: Optional[Tensor], c0: Optional[Tensor], params: list):
        """forward() of a batch of no sequences (B = 0), as torch.nn.LSTM's: y (T, 0, D*R) ((0, T, D*R) when
        batch_first), h_n (L*D, 0, R) and c_n (L*D, 0, H); on the graph, with zero gradients for the
        parameters, x and the state (nothing is computed)."""
        zero = sum(t.sum() for t in [x, h0, c0, *params] if t is not None) * 0
        h_shape, c_shape = self._lstm_config.state_shapes(0)
        y = x.new_zeros((steps, 0, self.num_directions * self.output_size)) + zero
        h_n = (x.new_zeros(h_shape) if h0 is None else h0) + zero
        c_n = (x.new_zeros(c_shape) if c0 is None else c0) + zero
        return (y.transpose(0, 1) if self.batch_first else y), (h_n, c_n)

    def _recurrent_masks(self, batch: int, dtype: torch.dtype, device: Any = None) -> Optional[Tensor]:
        """Recurrent dropout masks [L*D, B, R] (in the packed batch's sorted order), scaled by 1/(1-p), from
        torch's generator; None without recurrent dropout."""
        if self.recurrent_dropout == 0.0:
            return None
        keep = 1.0 - self.recurrent_dropout
        shape = (self.num_layers * self.num_directions, batch, self.output_size)
        return torch.empty(shape, dtype=dtype, device=device).bernoulli_(keep).div_(keep)

    def _zoneout_seed(self, device: Any = None) -> Optional[Tensor]:
        """The seed of zoneout's masks (lstm_fast._lstm.zoneout_masks_of), from torch's generator, as an int64
        tensor [1] (an int only outside tracing: its value is data); None without zoneout."""
        if self._lstm_config.zoneout_pair == (0.0, 0.0):
            return None
        return torch.randint(0, 2**62, (1,), device=device)

    def _dropout_masks(self, rows: int, dtype: torch.dtype, device: Any = None) -> List[Tensor]:
        """Inter-layer dropout masks [rows, D*R], scaled by 1/(1-p), drawn from torch's generator."""
        if self.dropout == 0.0 or self.num_layers == 1:
            return []
        keep = 1.0 - self.dropout
        shape = (rows, self.num_directions * self.output_size)
        return [
            torch.empty(shape, dtype=dtype, device=device).bernoulli_(keep).div_(keep)
            for _ in range(self.num_layers - 1)
        ]

    @staticmethod
    def _autocast_bf16(dtype: torch.dtype) -> bool:
        """Whether this forward runs under torch.autocast("cpu", dtype=torch.bfloat16) on float32
        parameters: then a training forward's products take bf16 operands (lstm_fast.LSTM.forward's
        precision="bf16"), and bf16 inputs from the layers before are accepted (widened to float32)."""
        return (
            dtype == torch.float32
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
        )

    @staticmethod
    def _from_autocast(t: Any, bf16: bool) -> Any:
        """A bfloat16 tensor under bf16 autocast, as float32 (the parameters' dtype); else t itself."""
        return t.float() if bf16 and isinstance(t, Tensor) and t.dtype == torch.bfloat16 else t

    def _check_state(
        self, hx: Any, batch: int, unbatched: bool, dtype: torch.dtype, device: torch.device, bf16: bool = False
    ):
        """(h_0, c_0) as (L*D, B, R) and (L*D, B, H) tensors of the parameters' dtype and device, or
        (None, None)."""

        def check(name: str, t: Any) -> Tensor:
            return _torch_checks.check_tensor(name, self._from_autocast(t, bf16), dtype, device, state=True)

        h0, c0 = _torch_checks.check_state(hx, self._lstm_config.state_shapes(None if unbatched else batch), check)
        if h0 is None or not unbatched:
            return h0, c0
        return h0.unsqueeze(1), c0.unsqueeze(1)

    # -- other libraries -----------------------------------------------------------------------------

    def to_numpy(self) -> _NumpyLSTM:
        """An lstm_fast.LSTM (NumPy in and out) with a copy of these parameters (float32 for a bfloat16 or
        float16 module)."""
        dtype = self.weight_ih_l0.dtype
        compute = _COMPUTE_DTYPES.get(dtype, dtype)
        config = self._lstm_config.replace(dtype=_DTYPES[dtype])
        arrays = {k: v.detach().to(compute).numpy().copy() for k, v in self.state_dict().items()}
        return _NumpyLSTM._from_arrays(config, arrays)

    @classmethod
    def from_numpy(cls, model: _NumpyLSTM) -> "LSTM":
        """A module with a copy of an lstm_fast.LSTM's parameters and arguments."""
        if not isinstance(model, _NumpyLSTM):
            raise TypeError(f"model must be an lstm_fast.LSTM, got {type(model).__name__}")
        config = model._lstm_config
        module = cls(
            **{k: v for k, v in config.to_dict().items() if k not in ("dtype", "seed")},
            dtype=torch.float32 if config.dtype == np.float32 else torch.float64,
        )
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(torch.from_numpy(model.state_dict()[name]))
        return module

    def to_onnx(self, path: Any, **kwargs: Any) -> None:
        """Writes an ONNX graph of this model's inference; see lstm_fast.LSTM.to_onnx."""
        self.to_numpy().to_onnx(path, **kwargs)
