"""The constructor arguments of an LSTM, checked once: lf.LSTM, lstm_fast.torch.LSTM, model files and the
ONNX/Keras exchange all read their sizes, parameter names and shapes from one LSTMConfig.

A new constructor argument is a new field here (with its check in ``_validate``) plus its use.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np

from . import _core
from ._checks import MAX_SIZE, bool_arg, float_arg, int_arg

DTYPE_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}

# The parameters of one cell (layer k, direction d at k*D + d) in the order the core takes them; the
# last six are layer norm's gains and biases.
LN_KINDS = ("ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias", "ln_cell_weight", "ln_cell_bias")
CELL_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_peep") + LN_KINDS


def cell_weights(arrays: Iterable[Optional[np.ndarray]]) -> _core.CellWeights:
    """The core's CellWeights of one cell's arrays in CELL_KINDS order (None where absent)."""
    return _core.CellWeights(**dict(zip(CELL_KINDS, arrays)))


def cell_arrays(weights: _core.CellWeights) -> Tuple[Optional[np.ndarray], ...]:
    """The arrays of a CellWeights (the core's weights or gradients) in CELL_KINDS order."""
    return tuple(getattr(weights, kind) for kind in CELL_KINDS)


@dataclasses.dataclass(frozen=True, repr=False)
class LSTMConfig:
    """torch.nn.LSTM's constructor arguments plus peephole, forget_bias, dtype and seed, validated.

    Sizes: I = input_size, H = hidden_size, L = num_layers, D = directions (2 when bidirectional),
    R = output_size (proj_size when > 0, else H). Every field is normalised by the checks (ints as int,
    dtype as np.dtype), so two configs of the same model compare equal.
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0
    peephole: bool = False
    layer_norm: bool = False
    cell_clip: Optional[float] = None
    coupled_gates: bool = False
    recurrent_dropout: float = 0.0
    zoneout: Any = 0.0  # z, or a pair (z_h, z_c)
    forget_bias: float = 0.0
    dtype: Any = np.float32
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        for name, value in self._validate().items():
            object.__setattr__(self, name, value)
        # The cached sizes computed now: a first read under torch.compile would trace cached_property's
        # lock (Python < 3.12), which dynamo cannot enter.
        for name in ("num_directions", "output_size", "num_cells"):
            getattr(self, name)

    def _validate(self) -> Dict[str, Any]:
        """The fields checked and normalised; raises TypeError or ValueError naming the argument."""
        v: Dict[str, Any] = {}
        v["input_size"] = int_arg("input_size", self.input_size, 1)
        v["hidden_size"] = int_arg("hidden_size", self.hidden_size, 1)
        v["num_layers"] = int_arg("num_layers", self.num_layers, 1)
        v["proj_size"] = int_arg("proj_size", self.proj_size, 0)
        if v["proj_size"] >= v["hidden_size"]:
            raise ValueError(f"proj_size must be < hidden_size ({v['hidden_size']}), got {v['proj_size']}")
        for name in ("bias", "batch_first", "bidirectional", "peephole", "layer_norm", "coupled_gates"):
            v[name] = bool_arg(name, getattr(self, name))
        v["cell_clip"] = None if self.cell_clip is None else float_arg("cell_clip", self.cell_clip)
        if v["cell_clip"] is not None and not 0 < v["cell_clip"] < float("inf"):
            raise ValueError(f"cell_clip must be None or a finite number > 0, got {v['cell_clip']}")
        for name in ("dropout", "recurrent_dropout"):
            v[name] = float_arg(name, getattr(self, name))
            if not 0.0 <= v[name] < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {v[name]}")
        v["zoneout"] = _zoneout_arg(self.zoneout)
        v["forget_bias"] = float_arg("forget_bias", self.forget_bias)
        if v["forget_bias"] != 0.0 and not v["bias"]:
            raise ValueError(f"forget_bias needs bias=True, got forget_bias={v['forget_bias']} with bias=False")
        v["dtype"] = _dtype_arg(self.dtype)
        v["seed"] = None if self.seed is None else int_arg("seed", self.seed, 0)
        for name in ("input_size", "hidden_size", "num_layers"):
            if v[name] > MAX_SIZE:
                raise ValueError(f"{name} must be <= {MAX_SIZE}, got {v[name]}")
        return v

    # -- sizes ---------------------------------------------------------------------------------------

    # Cached: the streaming step reads them every call. (cached_property writes the instance's
    # __dict__ directly, which a frozen dataclass allows.)
    @functools.cached_property
    def num_directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @functools.cached_property
    def output_size(self) -> int:
        """R: proj_size when > 0, else hidden_size (per direction)."""
        return self.proj_size or self.hidden_size

    @functools.cached_property
    def num_cells(self) -> int:
        """L*D: the rows of h and c."""
        return self.num_layers * self.num_directions

    @property
    def zoneout_pair(self) -> Tuple[float, float]:
        """(z_h, z_c): the zoneout probabilities of h and c."""
        return self.zoneout if isinstance(self.zoneout, tuple) else (self.zoneout, self.zoneout)

    def layer_input_size(self, layer: int) -> int:
        """I_k: I for layer 0, D*R above it."""
        return self.input_size if layer == 0 else self.num_directions * self.output_size

    # -- parameters ----------------------------------------------------------------------------------

    def cell_names(self) -> Iterator[Tuple[int, str]]:
        """(layer, suffix) of each cell in the core's order k*D + d; suffix "" or "_reverse"."""
        for k in range(self.num_layers):
            for suffix in ("", "_reverse")[: self.num_directions]:
                yield k, suffix

    def cell_param_names(self) -> list:
        """Per cell, the names of its parameters in CELL_KINDS order (absent ones included)."""
        return [tuple(f"{kind}_l{k}{sfx}" for kind in CELL_KINDS) for k, sfx in self.cell_names()]

    def num_params(self) -> int:
        """The number of parameters, from the sizes alone (param_shapes would list 2^31 layers)."""
        H, R, D = self.hidden_size, self.output_size, self.num_directions

        def layer(input_size: int) -> int:
            return D * (
                4 * H * (input_size + R)
                + 8 * H * self.bias
                + R * H * (self.proj_size > 0)
                + 3 * H * self.peephole
                + 18 * H * self.layer_norm
            )

        return layer(self.input_size) + (self.num_layers - 1) * layer(D * R)

    def param_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """torch.nn.LSTM's state_dict keys and shapes in its order, then the peephole weights (3, H), then
        layer norm's gains and biases ((4H,) for ih and hh, (H,) for the cell)."""
        H, R = self.hidden_size, self.output_size
        shapes: Dict[str, Tuple[int, ...]] = {}
        for k, sfx in self.cell_names():
            shapes[f"weight_ih_l{k}{sfx}"] = (4 * H, self.layer_input_size(k))
            shapes[f"weight_hh_l{k}{sfx}"] = (4 * H, R)
            if self.bias:
                shapes[f"bias_ih_l{k}{sfx}"] = (4 * H,)
                shapes[f"bias_hh_l{k}{sfx}"] = (4 * H,)
            if self.proj_size:
                shapes[f"weight_hr_l{k}{sfx}"] = (R, H)
        if self.peephole:
            for k, sfx in self.cell_names():
                shapes[f"weight_peep_l{k}{sfx}"] = (3, H)
        if self.layer_norm:
            for k, sfx in self.cell_names():
                for kind in LN_KINDS:
                    shapes[f"{kind}_l{k}{sfx}"] = (H,) if kind.startswith("ln_cell") else (4 * H,)
        return shapes

    def state_shapes(self, batch: Optional[int]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """Shapes of (h, c): (L*D, B, R) and (L*D, B, H); without B when batch is None (unbatched)."""
        LD, R, H = self.num_cells, self.output_size, self.hidden_size
        if batch is None:
            return (LD, R), (LD, H)
        return (LD, batch, R), (LD, batch, H)

    # -- conversions ---------------------------------------------------------------------------------

    def to_dict(self) -> Dict[str, Any]:
        """The constructor arguments with dtype as a string: a model file's "config" metadata (JSON)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["dtype"] = DTYPE_NAMES[self.dtype]
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "LSTMConfig":
        """The inverse of to_dict; unknown keys raise TypeError, as the constructor does."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        return cls(**d)

    def __reduce__(self) -> Tuple[Any, Tuple[Dict[str, Any]]]:
        """pickle and copy: through to_dict and from_dict, so that the copy is validated and its dtype is
        NumPy's own np.dtype (an unpickled np.dtype is an equal but distinct object, which the core's
        array checks refuse)."""
        return LSTMConfig.from_dict, (self.to_dict(),)

    @classmethod
    def from_arguments(cls, arguments: Dict[str, Any], exclude: Tuple[str, ...] = ()) -> "LSTMConfig":
        """The config of a constructor's arguments (its ``locals()``): every field found there by name,
        but those in `exclude`, which keep their defaults."""
        names = [f.name for f in dataclasses.fields(cls) if f.name in arguments and f.name not in exclude]
        return cls(**{name: arguments[name] for name in names})

    def replace(self, **changes: Any) -> "LSTMConfig":
        """A validated copy with some arguments changed."""
        return dataclasses.replace(self, **changes)

    def core(self) -> "_core.Config":
        """The compiled core's Config: the arguments that shape the computation."""
        return _core.Config(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            proj_size=self.proj_size,
            bias=self.bias,
            bidirectional=self.bidirectional,
            peephole=self.peephole,
            cell_clip=self.cell_clip or 0.0,
            coupled_gates=self.coupled_gates,
            zoneout_h=self.zoneout_pair[0],
            zoneout_c=self.zoneout_pair[1],
            layer_norm=self.layer_norm,
        )

    def arguments_repr(self, dtype: bool = True) -> str:
        """The arguments as a call would write them, defaults left out: "3, 4, num_layers=2, dtype=float32"."""
        args = [f"{self.input_size}", f"{self.hidden_size}"]
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        for field in dataclasses.fields(self):  # the options, shown when they differ from the default
            if field.name not in ("input_size", "hidden_size", "num_layers", "dtype", "seed"):
                if getattr(self, field.name) != field.default:
                    args.append(f"{field.name}={getattr(self, field.name)!r}")
        if dtype:
            args.append(f"dtype={DTYPE_NAMES[self.dtype]}")
        return ", ".join(args)

    def __repr__(self) -> str:
        return f"LSTMConfig({self.arguments_repr()})"


def _zoneout_arg(zoneout: Any) -> "float | Tuple[float, float]":
    """zoneout as a float z, or a pair (z_h, z_c) (a list, as JSON gives it, too), each in [0, 1)."""
    pair = isinstance(zoneout, (tuple, list))
    if pair and len(zoneout) != 2:
        raise ValueError(f"zoneout must be a float or a pair (z_h, z_c), got {len(zoneout)} values")
    values = tuple(float_arg("zoneout", z) for z in (zoneout if pair else (zoneout,)))
    if not all(0.0 <= z < 1.0 for z in values):
        raise ValueError(f"zoneout must be in [0, 1), got {zoneout}")
    return values if pair else values[0]


def _dtype_arg(dtype: Any) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dtype!r}") from exc
    if dtype not in DTYPE_NAMES:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dtype}")
    return dtype


class ConfigAttributes:
    """Mixin of the model classes: the config's fields (and D, R) as read-only instance attributes
    (``model.hidden_size``). Plain attributes, so reading one costs no more than any attribute (the
    streaming step reads a dozen); assigning one raises AttributeError, since the parameters and
    buffers were made for the old value and a changed value would be silently ignored.

    A class sets ``_config_exclude`` to leave fields out (torch's module: dtype and seed).
    """

    _config_exclude: Tuple[str, ...] = ()

    def _set_config(self, config: LSTMConfig) -> None:
        """Keeps `config` as ``_lstm_config`` and its values as the attributes."""
        values = {name: getattr(config, name) for name in _ATTRIBUTES if name not in self._config_exclude}
        self.__dict__.update(values, _lstm_config=config)

    def __setattr__(self, name: str, value: Any) -> None:
        # (Before _set_config, a base class's constructor may set them: torch.nn.RNNBase's does.)
        if name in _ATTRIBUTES and name not in self._config_exclude and "_lstm_config" in self.__dict__:
            raise AttributeError(
                f"{name} is fixed at construction ({getattr(self, name)!r}): build a new model "
                f"with {name}={value!r} instead"
            )
        super().__setattr__(name, value)


_ATTRIBUTES = frozenset([f.name for f in dataclasses.fields(LSTMConfig)] + ["num_directions", "output_size"])
