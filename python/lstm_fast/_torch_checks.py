"""The torch module's checks of its arguments and inputs: lstm_fast's errors (naming the argument, what
was expected and what came), which are also the exceptions torch.nn.LSTM raises in the same case and
carry its words, so that code written for torch.nn.LSTM catches and matches them.

Where torch raises RuntimeError (a wrong size, a sequence of no steps, a tensor on another device) and
lstm_fast ValueError, the error is a ValueAndRuntimeError; where torch raises ValueError on an input
of another dtype and lstm_fast TypeError, a TypeAndValueError; where torch raises RuntimeError for a
state of another kind or dtype and lstm_fast TypeError, a TypeAndRuntimeError. Imported by
lstm_fast.torch only (it imports torch).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from torch import Tensor, nn

from ._checks import _part_names, check_pair, check_sequence_shape, shape_str


class ValueAndRuntimeError(ValueError, RuntimeError):
    """A wrong shape, size or device: a ValueError for lstm_fast, a RuntimeError as torch.nn.LSTM's."""


class TypeAndValueError(TypeError, ValueError):
    """A wrong kind or dtype where torch.nn.LSTM raises ValueError: a TypeError for lstm_fast too."""


class TypeAndRuntimeError(TypeError, RuntimeError):
    """A wrong kind or dtype where torch.nn.LSTM raises RuntimeError: a TypeError for lstm_fast too."""


# hx's part names ("hx[0] (h_0)", ...) memoised now: made on a first call under torch.export(strict=True),
# the memo's write is a side effect of the traced forward, which export warns of.
_part_names("hx", ("h_0", "c_0"))

for _error in (ValueAndRuntimeError, TypeAndValueError, TypeAndRuntimeError):
    _error.__module__ = "lstm_fast.torch"  # where users find them

_BOTH = {
    frozenset((ValueError, RuntimeError)): ValueAndRuntimeError,
    frozenset((TypeError, ValueError)): TypeAndValueError,
    frozenset((TypeError, RuntimeError)): TypeAndRuntimeError,
}


def both(ours: Exception, theirs: type, words: Optional[str]) -> Exception:
    """`ours` (a TypeError or ValueError of lstm_fast's) as an exception that is also `theirs`, what
    torch.nn.LSTM raises in the case, its message followed by torch's `words`."""
    message = str(ours) if words is None else f"{ours} (torch.nn.LSTM: {words})"
    if isinstance(ours, theirs):
        return type(ours)(message)
    kind = TypeError if isinstance(ours, TypeError) else ValueError
    return _BOTH.get(frozenset((kind, theirs)), type(ours))(message)


# torch's own LSTM class, taken at import: torch.nn.LSTM may later be lstm_fast's (a program or a test suite
# puts it in torch.nn's place), whose constructor would come back to constructor_error without end.
_TORCH_LSTM = nn.LSTM


def constructor_error(ours: Exception, arguments: Dict[str, Any]) -> Exception:
    """`ours`, raised by lstm_fast's checks of the constructor's arguments, joined with what torch's own
    LSTM class (_TORCH_LSTM) raises for the same torch arguments (built on the meta device, where nothing
    is allocated); `ours` alone where torch accepts them (lstm_fast is stricter there)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _TORCH_LSTM(**arguments, device="meta")
    except (TypeError, ValueError, RuntimeError) as theirs:
        kind = next(k for k in (TypeError, ValueError, RuntimeError) if isinstance(theirs, k))
        return both(ours, kind, str(theirs))
    except Exception:  # anything else torch raises says nothing a caller of nn.LSTM would catch
        return ours
    return ours


def check_tensor(name: str, t: Any, dtype: Any, device: Any, state: bool = False) -> Tensor:
    """`t` as a tensor of the parameters' `dtype` and `device` (the CPU, or meta for shapes alone): the
    input, or with `state` a part of hx."""
    if not isinstance(t, Tensor):
        kinds = "a torch.Tensor" if state else "a torch.Tensor or PackedSequence"
        raise TypeError(f"{name} must be {kinds}, got {type(t).__name__}")
    if t.device.type != device.type:
        words = (
            f"Input and hidden tensors are not at the same device, found input tensor at {device} and hidden "
            f"tensor at {t.device}"
            if state
            else f"Input and parameter tensors are not at the same device, found input tensor at {t.device} and "
            f"parameter tensor at {device}"
        )
        where = "the CPU (lstm_fast runs on CPUs)" if device.type == "cpu" else f"the parameters' device {device}"
        raise ValueAndRuntimeError(f"{name} must be on {where}, got device {t.device}{_in(words)}")
    if t.dtype != dtype:
        ours = f"{name} must have the parameters' dtype {dtype}, got {t.dtype}"
        if state:
            raise TypeAndRuntimeError(ours)
        words = (
            f"RNN input dtype ({t.dtype}) does not match weight dtype ({dtype}). Convert input: input.to({dtype}), "
            f"or convert model: model.to({t.dtype})"
        )
        raise TypeAndValueError(ours + _in(words))
    return t


def _in(words: str) -> str:
    return f" (torch.nn.LSTM: {words})"


def check_input_shape(shape: Tuple[int, ...], input_size: int, batch_first: bool) -> bool:
    """A dense input's shape, (T, B, I) ((B, T, I) when batch_first) or (T, I) with T >= 1; returns
    whether it is unbatched."""
    try:
        return check_sequence_shape("input", shape, input_size, batch_first)
    except ValueError as ours:
        if len(shape) not in (2, 3):
            raise both(ours, ValueError, f"LSTM: Expected input to be 2D or 3D, got {len(shape)}D instead") from None
        if shape[-1] != input_size:
            words = f"input.size(-1) must be equal to input_size. Expected {input_size}, got {shape[-1]}"
            raise both(ours, RuntimeError, words) from None
        raise both(ours, RuntimeError, "Expected sequence length to be larger than 0 in RNN") from None


def check_packed_shape(shape: Tuple[int, ...], input_size: int) -> None:
    """A PackedSequence's data: (N, I)."""
    if len(shape) == 2 and shape[1] == input_size:
        return
    ours = f"input.data must have shape (N, {input_size}), got {shape_str(shape)}"
    if len(shape) != 2:
        raise ValueAndRuntimeError(ours + _in(f"input must have 2 dimensions, got {len(shape)}"))
    words = f"input.size(-1) must be equal to input_size. Expected {input_size}, got {shape[-1]}"
    raise ValueAndRuntimeError(ours + _in(words))


def check_state(
    hx: Any,
    shapes: Tuple[Tuple[int, ...], Tuple[int, ...]],
    convert: Callable[[str, Any], Tensor],
) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """hx: None, or (h_0, c_0) of `shapes` ((L*D, B, R), (L*D, B, H), without B for unbatched input),
    each part converted and checked by `convert(name, part)`."""
    if isinstance(hx, (tuple, list)) and len(hx) != 2:
        raise TypeAndRuntimeError(
            f"hx must be a pair (h_0, c_0) or None, got a {type(hx).__name__} of {len(hx)}"
            + _in("lstm expects two hidden states")
        )
    try:
        return check_pair("hx", hx, ("h_0", "c_0"), shapes, convert)
    except ValueError as ours:
        if type(ours) is not ValueError:  # convert's, already in both wordings
            raise
        raise both(ours, RuntimeError, _state_words(hx, shapes)) from None


def _state_words(hx: Sequence[Tensor], shapes: Tuple[Tuple[int, ...], Tuple[int, ...]]) -> str:
    """torch.nn.LSTM's words for a state of the wrong shape."""
    dims = len(shapes[0])
    if any(t.dim() != dims for t in hx):
        input_kind = "unbatched 2-D" if dims == 2 else "batched 3-D"
        got = ", ".join(f"{t.dim()}-D" for t in hx)
        return f"For {input_kind} input, hx and cx should also be {dims}-D but got ({got}) tensors"
    for k, (t, shape) in enumerate(zip(hx, shapes)):
        if tuple(t.shape) != shape:
            return f"Expected hidden[{k}] size {shape}, got {list(t.shape)}"
    return "Expected hidden size"  # (not reached: check_pair raised for one of them)
