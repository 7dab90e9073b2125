"""The kernels as torch custom operators, for code that torch traces: torch.compile, torch.export, torch.func.

``torch.ops.lstm_fast.lstm`` runs _core.forward and ``torch.ops.lstm_fast.lstm_backward`` its
backpropagation through time, on the packed layout of lstm_fast.torch._LSTMFunction (x [N, I], the
state in sorted batch order; the cells' present parameters in CELL_KINDS order, and which those are).
Each has a
fake (shapes and dtypes from the inputs, the kernels not called) for torch.compile and torch.export, and
a vmap rule (the op once per vmapped slice, stacked). The forward's autograd formula (register_autograd)
calls the backward op, or, when the backward itself must be differentiable (create_graph=True), the
recompute of _torch_graph. torch.func's grad transforms do not take an op's register_autograd (torch
2.13), so the module calls the op through LSTMFunction (the same formula, on an autograd.Function with
setup_context), and under dynamo the op itself (`apply`).

A custom op returns tensors only, and the kernels' trace is a C++ object: so the backward op runs the
training forward again from the same inputs (masks, zoneout seed and precision included, so it is the
same forward bit for bit) and backpropagates over that trace. That costs one forward more than the eager
path (_LSTMFunction, which keeps the trace on its ctx), so lstm_fast.torch.LSTM uses these ops only while
torch traces (`tracing`). The ops take no _core.Config either: the config comes as a string
(`config_key`) and is made again, once per string (`config_of`).
"""

import functools
import json
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import _core, _torch_graph
from ._config import CELL_KINDS, cell_arrays, cell_weights

_KINDS = len(CELL_KINDS)  # parameters per cell, absent ones included
_CONFIG_FIELDS = ("input_size", "hidden_size", "num_layers", "proj_size", "bias", "bidirectional", "peephole")
_CONFIG_FIELDS += ("cell_clip", "coupled_gates", "zoneout_h", "zoneout_c", "layer_norm")

# The arguments both ops take after their first ones: the layer's inputs, then how it runs.
# params: the present parameters only (a list holding None would be no list of tensors to autograd);
# present: 1 or 0 for each of the cells' CELL_KINDS (ints, as torch.jit.trace records no list of bools).
_LAYER = "Tensor x, Tensor? h0, Tensor? c0, Tensor[] params, int[] present, Tensor[] masks, Tensor? recurrent, "
_LAYER += "int[] batch_sizes, int batch, Tensor? zoneout_seed, bool train, int checkpoint, bool bf16, str config"


def numpy_of(t: Optional[Tensor]) -> Optional[np.ndarray]:
    """The NumPy view of a CPU tensor's memory (no copy; the core re-checks C-contiguity)."""
    return None if t is None else t.detach().numpy()


def cell_weights_of(params: Sequence[Optional[Tensor]]) -> List["_core.CellWeights"]:
    """The core's CellWeights of every cell, from the flat parameters (CELL_KINDS per cell), on their memory."""
    return [cell_weights(map(numpy_of, params[k : k + _KINDS])) for k in range(0, len(params), _KINDS)]


def config_key(config: "_core.Config") -> str:
    """A _core.Config as the string the ops take (JSON of its fields)."""
    return json.dumps({name: getattr(config, name) for name in _CONFIG_FIELDS}, sort_keys=True)


@functools.lru_cache(maxsize=None)
def config_of(key: str) -> "_core.Config":
    """The _core.Config of a config_key string."""
    return _core.Config(**json.loads(key))


def batched(*tensors: Optional[Tensor]) -> bool:
    """Whether any of `tensors` is a vmap BatchedTensor (whose memory the core cannot read): gradients
    vmapped over a backward, as gradcheck's batched-gradient check or torch.autograd.functional's
    vectorize=True do outside any torch.func transform."""
    functorch = torch._C._functorch
    return any(
        t is not None and (functorch.is_legacy_batchedtensor(t) or functorch.is_batchedtensor(t)) for t in tensors
    )


def tracing(tensors: Sequence[Optional[Tensor]]) -> bool:
    """Whether torch traces this call: torch.compile (dynamo), torch.export, a functorch transform
    (vmap, grad, jacrev), torch.jit.trace, tensor subclasses (fake or functional tensors, opcheck's), or
    meta tensors (shapes alone: the ops' fake rules give them)."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch._C._are_functorch_transforms_active():
        return True
    if torch.jit.is_tracing():  # torch.jit.trace records the op (an autograd.Function it cannot)
        return True
    return any(type(t) not in (Tensor, nn.Parameter) or t.is_meta for t in tensors if t is not None)


def full(params: Sequence[Tensor], present: Sequence[int]) -> List[Optional[Tensor]]:
    """The parameters of every cell in CELL_KINDS order, None where absent, from the present ones."""
    given = iter(params)
    return [next(given) if p else None for p in present]


def _seed(zoneout_seed: Optional[Tensor]) -> Optional[int]:
    return None if zoneout_seed is None else int(zoneout_seed.item())


def core_forward(config, cells, x, h0, c0, masks, recurrent, batch_sizes, batch, zoneout, train, checkpoint, bf16):
    """_core.forward on the tensors' memory: (y, h_n, c_n, trace). cells: the core's CellWeights;
    zoneout: the seed (an int) or None; checkpoint and bf16 apply to a training forward only."""
    return _core.forward(
        config,
        cells,
        numpy_of(x),
        batch_sizes=batch_sizes,
        batch=batch,
        h0=numpy_of(h0),
        c0=numpy_of(c0),
        dropout_masks=[numpy_of(m) for m in masks],
        train=train,
        recurrent_masks=numpy_of(recurrent),
        zoneout_seed=zoneout,
        checkpoint=checkpoint if train else 0,
        precision="bf16" if bf16 and train else "fp32",
    )


def core_backward(cells, trace, dy: Tensor, dh_n: Optional[Tensor], dc_n: Optional[Tensor]):
    """_core.backward over a training forward's trace: (dx, dh0, dc0, the cells' gradients as CellWeights)."""
    return _core.backward(
        cells,
        trace,
        numpy_of(dy.contiguous()),
        dh_n=numpy_of(None if dh_n is None else dh_n.contiguous()),
        dc_n=numpy_of(None if dc_n is None else dc_n.contiguous()),
    )


def _run_forward(x, h0, c0, params, present, masks, recurrent, batch_sizes, batch, zoneout_seed, *how):
    """core_forward of the ops' arguments: (y, h_n, c_n, trace). how: train, checkpoint, bf16, config."""
    train, checkpoint, bf16, config = how
    cells = cell_weights_of(full(params, present))
    return core_forward(
        config_of(config),
        cells,
        x,
        h0,
        c0,
        masks,
        recurrent,
        list(batch_sizes),
        batch,
        _seed(zoneout_seed),
        train,
        checkpoint,
        bf16,
    )


@torch.library.custom_op("lstm_fast::lstm", mutates_args=(), schema=f"({_LAYER}) -> (Tensor, Tensor, Tensor)")
def lstm(x, h0, c0, params, present, masks, recurrent, batch_sizes, batch, zoneout_seed, *how):
    """(y [N, D*R], h_n [L*D, B, R], c_n [L*D, B, H]): _LSTMFunction.forward's outputs (the trace dropped).
    how: train, checkpoint, bf16, config."""
    layer = (x, h0, c0, params, present, masks, recurrent, batch_sizes, batch, zoneout_seed)
    y, h_n, c_n, _ = _run_forward(*layer, *how)
    return torch.from_numpy(y), torch.from_numpy(h_n), torch.from_numpy(c_n)


@torch.library.custom_op(
    "lstm_fast::lstm_backward",
    mutates_args=(),
    schema=f"(Tensor dy, Tensor? dh_n, Tensor? dc_n, {_LAYER}) -> (Tensor, Tensor, Tensor, Tensor[])",
)
def lstm_backward(dy, dh_n, dc_n, *args):
    """(dx, dh0, dc0, the gradients of the present params in order): the training forward again (the
    trace a custom op cannot keep), then _core.backward over its trace. args: lstm's (its train ignored:
    this forward trains)."""
    *layer, _, checkpoint, bf16, config = args
    params, present = layer[3:5]
    trace = _run_forward(*layer, True, checkpoint, bf16, config)[3]
    dx, dh0, dc0, grads = core_backward(cell_weights_of(full(params, present)), trace, dy, dh_n, dc_n)
    flat = [torch.from_numpy(g) for cell in grads for g in cell_arrays(cell) if g is not None]
    return torch.from_numpy(dx), torch.from_numpy(dh0), torch.from_numpy(dc0), flat


def _state_shapes(config: str, batch):
    """The shapes of h_n [L*D, B, R] and c_n [L*D, B, H]."""
    c = config_of(config)
    cells = c.num_layers * (2 if c.bidirectional else 1)
    return (cells, batch, c.proj_size or c.hidden_size), (cells, batch, c.hidden_size)


def _output_shape(x: Tensor, config: str):
    """The shape of y, [N, D*R]."""
    c = config_of(config)
    return (x.shape[0], (2 if c.bidirectional else 1) * (c.proj_size or c.hidden_size))


@lstm.register_fake
def _(x, h0, c0, params, present, masks, recurrent, batch_sizes, batch, zoneout_seed, train, checkpoint, bf16, config):
    h_shape, c_shape = _state_shapes(config, batch)
    return x.new_empty(_output_shape(x, config)), x.new_empty(h_shape), x.new_empty(c_shape)


@lstm_backward.register_fake
def _(dy, dh_n, dc_n, x, h0, c0, params, present, masks, recurrent, batch_sizes, batch, zoneout_seed, *rest):
    h_shape, c_shape = _state_shapes(rest[-1], batch)
    grads = [torch.empty_like(p) for p in params]
    return torch.empty_like(x), x.new_empty(h_shape), x.new_empty(c_shape), grads


# -- autograd ----------------------------------------------------------------------------------------


def _setup_context(ctx, inputs, output):
    """Saves the op's inputs (x, h0, c0, params, present, masks, recurrent, *how) for _gradients."""
    x, h0, c0, params, present, masks, recurrent, *how = inputs
    ctx.how = (present, *how)  # present, batch_sizes, batch, zoneout_seed, train, checkpoint, bf16, config
    ctx.given = [t is not None for t in (x, h0, c0, recurrent, how[2])]
    ctx.counts = len(params), len(masks)
    ctx.save_for_backward(*(t for t in (x, h0, c0, recurrent, how[2]) if t is not None), *params, *masks)


def _saved(ctx):
    """(x, h0, c0, params, masks, recurrent, zoneout_seed) as _setup_context saved them."""
    saved = iter(ctx.saved_tensors)
    x, h0, c0, recurrent, zoneout_seed = [next(saved) if given else None for given in ctx.given]
    params, masks = [[next(saved) for _ in range(n)] for n in ctx.counts]
    return x, h0, c0, params, masks, recurrent, zoneout_seed


def _gradients(ctx, outputs: tuple, wanted: Sequence[bool]):
    """(dx, dh0, dc0, [the present params' gradients]) from the gradients of (y, h_n, c_n), those of the
    inputs (x, h0, c0, present params) not `wanted` None; with a graph (the recompute) when one is asked
    for, else by the backward op."""
    x, h0, c0, params, masks, recurrent, zoneout_seed = _saved(ctx)
    present, batch_sizes, batch, _, train, checkpoint, bf16, config = ctx.how
    if _graph_asked([t for t in (*outputs, x, h0, c0, *params) if t is not None]):
        layer = (config_of(config), list(batch_sizes), masks, recurrent, _seed(zoneout_seed), bf16)
        wanted = [*wanted[:3], *full(wanted[3:], present)]
        found = differentiable_backward(layer, outputs, [x, h0, c0, *full(params, present)], wanted)
        return (*found[:3], [g for g, p in zip(found[3:], present) if p])
    dy, dh_n, dc_n = outputs
    if dy is None:  # only the final state was used
        dy = x.new_zeros(_output_shape(x, config))
    layer = (x, h0, c0, params, present, masks, recurrent, batch_sizes, batch, zoneout_seed)
    with torch.no_grad():  # (a torch.func transform's backward runs in grad mode; no graph is asked for)
        dx, dh0, dc0, grads = lstm_backward(dy, dh_n, dc_n, *layer, train, checkpoint, bf16, config)
    return dx, None if h0 is None else dh0, None if c0 is None else dc0, grads


def _graph_asked(tensors: Sequence[Tensor]) -> bool:
    """Whether this backward's gradients must carry a graph: grad mode on (create_graph=True) and
    something to differentiate them. Under torch.func every backward runs in grad mode; there that
    something is a differentiating transform (grad, vjp, jvp) other than the one this backward is for,
    or a tensor beneath them all requiring grad (regular autograd outside), so vmap(grad(f)) and jacrev
    take the backward op, grad(grad(f)) the recompute."""
    if not torch.is_grad_enabled():
        return False
    stack = _functorch_stack()
    if not stack:
        return any(t.requires_grad for t in tensors)
    current = max(torch._C._functorch.maybe_get_level(t) for t in tensors)  # the innermost wrapper: ours
    differentiating = (torch._C._functorch.TransformType.Grad, torch._C._functorch.TransformType.Jvp)
    if any(i.key() in differentiating and i.level() != current for i in stack):
        return True
    return any(_unwrapped(t).requires_grad for t in tensors)


def _functorch_stack() -> list:
    """The torch.func transforms active, outermost first (torch 2.13's interpreter stack)."""
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    return retrieve_all_functorch_interpreters()


def _unwrapped(t: Tensor) -> Tensor:
    """The plain tensor beneath t's torch.func wrappers."""
    while torch._C._functorch.is_functorch_wrapped_tensor(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t


def _backward(ctx, dy, dh_n, dc_n):
    """The op's autograd formula: gradients in the structure of its inputs (none for the masks, the seed
    and the arguments that are not tensors)."""
    needs = ctx.needs_input_grad
    dx, dh0, dc0, grads = _gradients(ctx, (dy, dh_n, dc_n), [*needs[:3], *needs[3]])
    return (dx, dh0, dc0, grads, None, [None] * ctx.counts[1]) + (None,) * 8


lstm.register_autograd(_backward, setup_context=_setup_context)


class LSTMFunction(torch.autograd.Function):
    """The op as an autograd.Function with setup_context, which torch.func's transforms (grad, vjp,
    jacrev) accept (an op's register_autograd they do not, in torch 2.13); its vmap rule is generated
    from the ops' own. apply(present, masks, recurrent, batch_sizes, batch, zoneout_seed, train,
    checkpoint, bf16, config, x, h0, c0, *params): the op's arguments, the tensors that get gradients
    last (the present params one by one)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(present, masks, recurrent, batch_sizes, batch, zoneout_seed, *rest):
        *how, x, h0, c0 = rest[:7]
        layer = (x, h0, c0, list(rest[7:]), present, masks, recurrent, batch_sizes, batch, zoneout_seed)
        return lstm(*layer, *how)

    @staticmethod
    def setup_context(ctx, inputs, output):
        present, masks, recurrent, batch_sizes, batch, zoneout_seed, *rest = inputs
        *how, x, h0, c0 = rest[:7]
        layer = (x, h0, c0, list(rest[7:]), present, masks, recurrent, batch_sizes, batch, zoneout_seed)
        _setup_context(ctx, (*layer, *how), output)

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        dx, dh0, dc0, grads = _gradients(ctx, (dy, dh_n, dc_n), ctx.needs_input_grad[10:])
        return (None,) * 10 + (dx, dh0, dc0, *grads)


def differentiable_backward(layer: tuple, grads: tuple, inputs: list, wanted: Sequence[bool]) -> list:
    """The gradients of `inputs` (x, h0, c0, *params; None where not `wanted`) with a graph
    (create_graph=True): the layer recomputed from them in torch operations (_torch_graph.forward) and
    differentiated, as torch's oneDNN path. layer: (config, batch_sizes, masks, recurrent, zoneout seed,
    bf16). bf16 products have no such graph: that raises."""
    config, batch_sizes, masks, recurrent, zoneout, bf16 = layer
    if bf16:
        raise RuntimeError(
            "lstm_fast.torch.LSTM: second-order gradients (create_graph=True) are not supported for a bf16 "
            "training forward (bfloat16 module or bf16 autocast); run the float32 module without autocast"
        )
    indices = [i for i, w in enumerate(wanted) if w]

    def recompute(*chosen: Tensor):
        ins = list(inputs)
        for i, t in zip(indices, chosen):
            ins[i] = t
        x, h0, c0, *params = ins
        return _torch_graph.forward(config, batch_sizes, x, h0, c0, params, masks, recurrent, zoneout)

    # torch.func.vjp rather than autograd.grad on the saved tensors: under a torch.func transform those
    # are not on the graph (autograd.grad would return zeros); vjp differentiates them either way, and its
    # result stays differentiable by the autograd or the transform outside.
    outputs, pull = torch.func.vjp(recompute, *[inputs[i] for i in indices])
    found = pull(tuple(torch.zeros_like(out) if g is None else g for out, g in zip(outputs, grads)))
    result = [None] * len(inputs)
    for i, g in zip(indices, found):
        result[i] = g
    return result


def apply(how: tuple, x: Tensor, h0: Optional[Tensor], c0: Optional[Tensor], *params: Tensor):
    """The layer's outputs (y, h_n, c_n), differentiable; how: (present, masks, recurrent, batch_sizes,
    batch, zoneout_seed, train, checkpoint, bf16, config). Under dynamo the op itself (its
    register_autograd, which AOTAutograd traces, rather than dynamo's speculation of an autograd.Function)
    and under torch.jit.trace (which records the op, not an autograd.Function), else LSTMFunction (for
    torch.func)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        present, masks, recurrent, batch_sizes, batch, zoneout_seed, *rest = how
        return lstm(x, h0, c0, list(params), present, masks, recurrent, batch_sizes, batch, zoneout_seed, *rest)
    return LSTMFunction.apply(*how, x, h0, c0, *params)


# -- vmap: the op once per slice ---------------------------------------------------------------------


def _slice(arg, dim, i: int):
    """arg's i-th slice along the vmapped dim (a list arg: each element along its own)."""
    if isinstance(dim, (list, tuple)):
        return [_slice(a, d, i) for a, d in zip(arg, dim)]
    return arg if dim is None or arg is None else arg.select(dim, i)


def _stack(results: list):
    """The per-slice outputs stacked on a new dim 0 (lists of tensors element by element)."""
    first = results[0]
    if isinstance(first, (list, tuple)):
        return [_stack([r[k] for r in results]) for k in range(len(first))]
    return torch.stack(results)


def _out_dims(output):
    return [_out_dims(o) for o in output] if isinstance(output, (list, tuple)) else 0


def _vmap_rule(op):
    """The vmap rule of `op`: the op on each slice of the vmapped arguments, the results stacked on dim 0
    (the kernels are per call; an unbatched argument is passed as it is)."""

    def rule(info, in_dims, *args):
        results = [op(*(_slice(a, d, i) for a, d in zip(args, in_dims))) for i in range(info.batch_size)]
        output = tuple(_stack(list(results)))
        return output, tuple(_out_dims(o) for o in output)

    return rule


torch.library.register_vmap(lstm, _vmap_rule(lstm))
torch.library.register_vmap(lstm_backward, _vmap_rule(lstm_backward))
