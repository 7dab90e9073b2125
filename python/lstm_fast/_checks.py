"""Argument checks shared by every public entry point, so that each error names the argument, what was
expected and what came.

Policy: the wrong *kind* of value (a float where an int belongs, a string for an array, an array of
strings) is a TypeError; a value of the right kind that is out of range or of the wrong shape is a
ValueError. Real numbers of any dtype and layout are accepted for arrays and converted, not rejected.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

# Sizes the C++ core accepts (its kMaxSize and kMaxElements). Checked here first so that the error names
# the Python argument.
MAX_SIZE = 2**31 - 1
MAX_ELEMENTS = 2**48


def int_arg(name: str, value: Any, minimum: int) -> int:
    """`value` as an int >= minimum (bools refused: True is not a size)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def bool_arg(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def checkpoint_arg(value: Any, train: bool) -> int:
    """forward()'s `checkpoint` as the core takes it: 0 (None), -1 ("auto") or the steps k >= 1."""
    if value is None:
        return 0
    if not train:
        raise ValueError(f"checkpoint is a training option (train=True), got checkpoint={value!r} with train=False")
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f'checkpoint must be None, "auto" or an int >= 1, got {value!r}')
        return -1
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f'checkpoint must be None, "auto" or an int >= 1, got {type(value).__name__} {value!r}')
    return int_arg("checkpoint", value, 1)


def float_arg(name: str, value: Any) -> float:
    """`value` as a finite float (ints accepted, bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _physical_memory() -> Optional[int]:
    """Bytes of RAM of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits(what: str, count: int, dtype: np.dtype) -> None:
    """Refuses, before anything is allocated, `count` numbers of `dtype` that could never be held: more
    than the core's limit, or more bytes than this machine has RAM. (NumPy would raise MemoryError only
    after trying, or the OS would start swapping.)"""
    nbytes = count * np.dtype(dtype).itemsize
    memory = _physical_memory()
    if count > MAX_ELEMENTS or (memory is not None and nbytes > memory):
        limit = f"this machine's memory ({memory / 2**30:.1f} GiB)" if memory is not None else "2^48 numbers"
        raise ValueError(
            f"{what}: {count} numbers ({nbytes / 2**30:.3g} GiB of {np.dtype(dtype)}) are more than {limit}"
        )


def _as_array(name: str, value: Any, what: str) -> np.ndarray:
    """np.asarray(value), torch tensors included; TypeError naming `what` it should hold if it is none."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of {what}, got {type(value).__name__}") from exc


def as_float_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """`value` as a C-contiguous array of `dtype`; real numbers of any dtype are converted."""
    array = _as_array(name, value, "real numbers")
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {array.dtype}")
    return core_ready(array, dtype)


def as_int_array(name: str, value: Any) -> np.ndarray:
    """`value` as an array of integers (not converted from floats: 2.5 steps is a bug upstream)."""
    array = _as_array(name, value, "integers")
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    return array


def core_ready(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`array` itself when it is C-contiguous, of `dtype` and aligned to it, else such a copy. (A view
    into a byte buffer at an odd offset is contiguous but not aligned: the core must not read a double
    at an address that is not a multiple of 8, which is undefined behaviour in C++.)"""
    flags = array.flags
    if array.dtype == dtype and flags.c_contiguous and flags.aligned:  # the common case, without np.require's cost
        return array
    return np.require(array, dtype=dtype, requirements=["C_CONTIGUOUS", "ALIGNED"])


def shape_str(shape: Sequence[int]) -> str:
    """(2, 3) -> "(2, 3)", (4,) -> "(4,)": Python's tuple notation for any sequence of ints."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_shape(name: str, array: Any, expected: Tuple[int, ...]) -> None:
    """ValueError unless `array.shape` (a NumPy array's or a tensor's) is `expected`."""
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {shape_str(expected)}, got {shape_str(tuple(array.shape))}")


def check_sequence_shape(name: str, shape: Sequence[int], input_size: int, batch_first: bool) -> bool:
    """Holds a sequence's shape to (T, B, I) ((B, T, I) when batch_first) or (T, I), with T >= 1 (B = 0,
    a batch of no sequences, is allowed, as torch.nn.LSTM allows it); returns whether it is unbatched."""
    I = input_size
    layout = "(B, T, I)" if batch_first else "(T, B, I)"
    if len(shape) not in (2, 3) or shape[-1] != I:
        raise ValueError(f"{name} must have shape {layout.replace('I', str(I))} or (T, {I}), got {shape_str(shape)}")
    steps = shape[1] if batch_first and len(shape) == 3 else shape[0]
    if steps == 0:
        raise ValueError(f"{name} must have >= 1 step (a sequence length T >= 1), got shape {shape_str(shape)}")
    return len(shape) == 2


def check_pair(
    name: str,
    pair: Any,
    labels: Tuple[str, str],
    shapes: Tuple[Tuple[int, ...], Tuple[int, ...]],
    convert: Callable[[str, Any], Any],
) -> Tuple[Any, Any]:
    """A state pair such as (h0, c0), each part converted by `convert(part_name, value)` (which checks its
    type) and then held to its shape; (None, None) for None.

    The part names read ``state[0] (h0)``: the argument, the index and what the index holds.
    """
    if pair is None:
        return None, None
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{name} must be a pair ({labels[0]}, {labels[1]}) or None, got {type(pair).__name__}")
    first_name, second_name = _part_names(name, labels)
    first, second = convert(first_name, pair[0]), convert(second_name, pair[1])
    if first is not None:
        check_shape(first_name, first, shapes[0])
    if second is not None:
        check_shape(second_name, second, shapes[1])
    return first, second


_PART_NAMES: Dict[Tuple[str, Tuple[str, str]], Tuple[str, str]] = {}


def _part_names(name: str, labels: Tuple[str, str]) -> Tuple[str, str]:
    """("state[0] (h0)", "state[1] (c0)"), made once per argument (the streaming step checks a state
    every call, in microseconds)."""
    parts = _PART_NAMES.get((name, labels))
    if parts is None:
        parts = _PART_NAMES[(name, labels)] = (f"{name}[0] ({labels[0]})", f"{name}[1] ({labels[1]})")
    return parts
