# Type stub for the compiled extension lstm_fast._core (private: use lstm_fast.LSTM).
from typing import Dict, Final, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

_Array = Optional[npt.NDArray[np.floating]]

class CellWeights:
    """The arrays of one cell (layer k, direction d at k*D + d), weights or their gradients, by the
    names of CELL_KINDS (_config.py); None where the config has none (an array there is ignored)."""
    def __init__(
        self,
        *,
        weight_ih: _Array = None,  # [4H, I_k]
        weight_hh: _Array = None,  # [4H, R]
        bias_ih: _Array = None,  # [4H], bias
        bias_hh: _Array = None,  # [4H], bias
        weight_hr: _Array = None,  # [R, H], proj_size > 0
        weight_peep: _Array = None,  # [3, H], peephole
        ln_ih_weight: _Array = None,  # [4H], layer_norm
        ln_ih_bias: _Array = None,  # [4H]
        ln_hh_weight: _Array = None,  # [4H]
        ln_hh_bias: _Array = None,  # [4H]
        ln_cell_weight: _Array = None,  # [H]
        ln_cell_bias: _Array = None,  # [H]
    ) -> None: ...
    weight_ih: _Array
    weight_hh: _Array
    bias_ih: _Array
    bias_hh: _Array
    weight_hr: _Array
    weight_peep: _Array
    ln_ih_weight: _Array
    ln_ih_bias: _Array
    ln_hh_weight: _Array
    ln_hh_bias: _Array
    ln_cell_weight: _Array
    ln_cell_bias: _Array

class CoreError(ValueError): ...

class Config:
    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        proj_size: int,
        bias: bool,
        bidirectional: bool,
        peephole: bool,
        cell_clip: float = 0.0,
        coupled_gates: bool = False,
        zoneout_h: float = 0.0,
        zoneout_c: float = 0.0,
        layer_norm: bool = False,
    ) -> None: ...
    # Read-only (Final): a Config is fixed once made.
    input_size: Final[int]
    hidden_size: Final[int]
    num_layers: Final[int]
    proj_size: Final[int]
    bias: Final[bool]
    bidirectional: Final[bool]
    peephole: Final[bool]
    cell_clip: Final[float]  # 0: none
    coupled_gates: Final[bool]
    zoneout_h: Final[float]  # inference probabilities; 0: none
    zoneout_c: Final[float]
    layer_norm: Final[bool]

MAX_THREADS: Final[int]  # the most threads set_num_threads accepts (the core's kMaxThreads)

def set_num_threads(num_threads: int) -> None: ...
def get_num_threads() -> int: ...
def isa() -> str: ...
def supported_isas() -> list[str]: ...
def set_isa(name: str) -> None: ...
def _dot_instructions() -> dict[str, bool | str]: ...
def _emulate_tiles(emulated: bool) -> None: ...
def _allow_dot_instructions(allowed: bool) -> None: ...
def _plan(
    config: Config,
    layer: int,
    steps: int,
    batch: int,
    training: bool = False,
    precision: str = "fp32",
    float64: bool = False,
) -> dict[str, int | str | bool]: ...
def _cache_sizes() -> dict[str, int]: ...
def _set_cache_sizes(l1d: int, l2: int) -> None: ...
def fma_peak_gflops(seconds: float, threads: int) -> float: ...
def dot_peak_gops(precision: str, seconds: float, threads: int) -> float: ...

class Trace32: ...
class Trace64: ...

def forward(
    config: Config,
    weights: Sequence[CellWeights],
    x: npt.NDArray[np.floating],
    *,
    batch_sizes: Sequence[int],
    batch: int,
    h0: _Array = None,
    c0: _Array = None,
    dropout_masks: Sequence[_Array] = (),
    train: bool = False,
    recurrent_masks: _Array = None,
    zoneout_seed: Optional[int] = None,
    checkpoint: int = 0,
    precision: str = "fp32",
) -> Tuple[npt.NDArray[np.floating], npt.NDArray[np.floating], npt.NDArray[np.floating], Optional[Trace32 | Trace64]]:
    """Runs the stack (weights: one CellWeights per cell, k*D + d) over packed x [N, I] (batch_sizes [T]
    of the B = batch rows; h0 [L*D, B, R], c0 [L*D, B, H] or None for zeros; dropout_masks () or L-1
    arrays [N, D*R], each None or the mask of layer k's output; recurrent_masks None or [L*D, B, R];
    zoneout_seed None or the seed of zoneout's masks, training only; checkpoint: training only, 0 the
    whole trace, k > 0 segments of k steps, -1 about sqrt(T); precision: "fp32", or "bf16" in training,
    the products' operands rounded to bfloat16; anything else a ValueError); returns
    (y [N, D*R], h_n [L*D, B, R], c_n [L*D, B, H], trace or None)."""

def backward(
    weights: Sequence[CellWeights],
    trace: Trace32 | Trace64,
    dy: npt.NDArray[np.floating],
    *,
    dh_n: _Array = None,
    dc_n: _Array = None,
) -> Tuple[
    npt.NDArray[np.floating],
    npt.NDArray[np.floating],
    npt.NDArray[np.floating],
    list[CellWeights],
]:
    """Backpropagation through time over a training forward's trace with the same weights; returns
    (dx [N, I], dh0, dc0, grads: one CellWeights per cell, None where the config has no such array)."""

def read_model_file(path: str) -> Tuple[str, Dict[str, npt.NDArray[np.floating]]]:
    """Reads and checks a model file as the C++ Model::load does (container, format, config, exactly the
    tensors and shapes the config implies, dtypes F32/F64); returns (config_json, {name: array}), each
    array in the file's dtype. OSError (FileNotFoundError, ...) when it cannot be opened; CoreError
    (a ValueError) naming the path and the problem otherwise."""

State = Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]  # (h [L, R], c [L, H]) of a stream

class Model:
    """lstm_fast::Model: a frozen inference model (use lstm_fast.Model)."""
    @staticmethod
    def load(path: str, precision: Optional[str] = None) -> Model: ...
    @staticmethod
    def from_bytes(data: bytes, name: str, precision: Optional[str] = None) -> Model: ...
    @property
    def precision(self) -> str: ...
    @property
    def config(self) -> Config: ...
    @property
    def config_json(self) -> str: ...
    # packed x [N, I] with batch_sizes [T]; h0 [L*D, B, R], c0 [L*D, B, H] or None -> (y, h_n, c_n)
    def forward(
        self,
        x: npt.NDArray[np.float32],
        batch_sizes: Sequence[int],
        batch: int,
        h0: Optional[npt.NDArray[np.float32]],
        c0: Optional[npt.NDArray[np.float32]],
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    # x [B, I], h [L, B, R], c [L, B, H] or None -> (y [B, R], h_n, c_n)
    def step(
        self,
        x: npt.NDArray[np.float32],
        h: Optional[npt.NDArray[np.float32]],
        c: Optional[npt.NDArray[np.float32]],
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    def save(self, path: str) -> None: ...

class Streams:
    """lstm_fast::Streams: many streams over one model (use lstm_fast.Streams)."""
    def __init__(self, model: Model) -> None: ...
    def open(self, h: Optional[npt.NDArray[np.float32]], c: Optional[npt.NDArray[np.float32]]) -> int: ...
    def close(self, id: int) -> State: ...
    def state(self, id: int) -> State: ...
    # ids [n] int64 distinct open ids, x [n, I] -> y [n, R]
    def step(self, ids: npt.NDArray[np.int64], x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
    def __len__(self) -> int: ...
    def ids(self) -> list[int]: ...
