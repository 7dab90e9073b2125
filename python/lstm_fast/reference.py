"""A plain NumPy float64 LSTM: the forward pass and backpropagation through time (BPTT).

This is the oracle the tests compare the C++ core against. It is written from the equations for
reading, not for speed, and it never imports the compiled core.

Equations (those of torch.nn.LSTM, gate order i, f, g, o), for one layer and one direction at
step t, with x_t the layer's input, h_{t-1} and c_{t-1} the previous hidden and cell states:

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi + p_i * c_{t-1})
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf + p_f * c_{t-1})
    g_t = tanh(   W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    c_t = f_t * c_{t-1} + i_t * g_t
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho + p_o * c_t)
    h_t = o_t * tanh(c_t)                         (no projection)
    h_t = W_hr (o_t * tanh(c_t))                  (proj_size > 0)

`*` is elementwise. W_ih = [W_ii; W_if; W_ig; W_io] is weight_ih_l{k} (4H, I_k), W_hh likewise is
weight_hh_l{k} (4H, R), the biases bias_ih_l{k}, bias_hh_l{k} (4H,) are absent when bias=False,
W_hr is weight_hr_l{k} (R, H). The peephole weights (p_i, p_f, p_o) are the rows of
weight_peep_l{k} (3, H) and exist only when peephole=True. The reverse direction (suffix
"_reverse") runs the same equations from the last step down to the first. Layer k > 0 reads the
concatenated outputs of both directions of layer k - 1, times dropout_masks[k - 1] when given.

Reduced precision (`precision=`; the contract of lf.Model's precisions, and of bf16 training): every
matrix product (W_ih x_t, W_hh h_{t-1}, W_hr m_t; in backward() of a bf16 forward also the gradient
products) reads its operands rounded, and everything else stays float64 here (float32 in the kernels):

    "bf16": both operands rounded to bfloat16 (from float32, round to nearest even); the sums exact.
    "int8": the weights quantized per output row, symmetric: q_w = rint(w / s_w), s_w = max|row| / 127;
            the inputs (x_t, h_{t-1}, m_t) likewise per batch row, at every step; the sums of q_a q_w
            exact integers, then times s_a s_w.

Cell variants (keyword arguments of forward; docs/api.md "Constructor" and "Training"):

    layer_norm     Ba, Kiros & Hinton (2016, eqs. 20-22): the two products layer-normalised over the
                   row's 4H pre-activations before the biases are added, and c_t over H before its tanh:
                   z = LN(W_ih x_t; ln_ih) + LN(W_hh h_{t-1}; ln_hh) + b_ih + b_hh,
                   h_t = o_t * tanh(LN(c_t; ln_cell)),  LN(v; g, b) = g * (v - mean v) / sqrt(var v + 1e-5) + b
                   (parameters ln_ih_weight_l{k} (4H,), ln_ih_bias_l{k}, ln_hh_..., ln_cell_... (H,)).
    cell_clip c    ONNX's clip: the inputs of the gates' activations (i, f, g, o) clamped to [-c, c].
    coupled_gates  ONNX's input_forget: f_t = 1 - i_t (the forget gate's rows are not read).
    zoneout        Krueger et al. (2016): with c~_t, h~_t the cell's new state as above,
                   c_t = d_c * c_{t-1} + (1 - d_c) * c~_t and h_t = d_h * h_{t-1} + (1 - d_h) * h~_t;
                   y_t = h_t. d is a 0/1 mask per unit, step and sequence (zoneout_masks) in
                   training, the probabilities themselves (zoneout = z or (z_h, z_c)) in inference.
    recurrent      Gal & Ghahramani (2016): W_hh reads h_{t-1} * r, one mask r per sequence and
      dropout      direction (recurrent_masks, already scaled by 1/(1-p)), the same at every step.

Padded batches (lengths) follow torch's packed sequences: sequence b only runs steps 0..L_b - 1.
We write that as a masked update: at step t, active = t < L_b; the state moves to the new state
only where active, and the output is h_t where active, else 0. The reverse direction then starts
from (h0, c0) at step L_b - 1, since every step above it leaves the state untouched.
"""

import numpy as np

ROLES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_peep")
LN_ROLES = ("ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias", "ln_cell_weight", "ln_cell_bias")
LN_EPS = 1e-5
SUFFIXES = ("", "_reverse")  # direction d = 0, 1
PRECISIONS = ("fp64", "bf16", "int8")


def bf16(v) -> np.ndarray:
    """v rounded to bfloat16 (from float32, round to nearest even; NaN stays NaN), as float64."""
    v = np.asarray(v, dtype=np.float32)
    u = v.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(v), np.nan, rounded).astype(np.float64)


def quantize_rows(v) -> "tuple[np.ndarray, np.ndarray]":
    """Symmetric int8 per row of v (..., K): q (int64, in [-127, 127]) and s (..., 1), v ~ q * s.
    A row of zeros gets s = 1 (and q = 0)."""
    v = np.asarray(v, dtype=np.float64)
    s = np.abs(v).max(axis=-1, keepdims=True) / 127
    s = np.where(s > 0, s, 1.0)
    return np.clip(np.rint(v / s), -127, 127).astype(np.int64), s


def _product(a, w, precision):
    """a @ w.T, (B, K) x (N, K) -> (B, N), with the operands of the precision (module docstring)."""
    if precision == "bf16":
        return bf16(a) @ bf16(w).T
    if precision == "int8":
        q_a, s_a = quantize_rows(a)
        q_w, s_w = quantize_rows(w)
        return (q_a @ q_w.T) * s_a * s_w.T  # integer sums: exact in int64
    return a @ w.T


def _operand(v, precision):
    """v as an operand of backward()'s products: rounded to bfloat16 in bf16 training, else as it is."""
    return bf16(v) if precision == "bf16" else v


def _sigmoid(z):
    with np.errstate(over="ignore"):  # exp(-z) = inf for z << 0 gives the right limit, 0
        return 1.0 / (1.0 + np.exp(-z))


class Variant:
    """The cell variant of one layer and direction (module docstring): layer_norm, clip (None: none),
    coupled, r (B, R) or None: the recurrent dropout mask; d_h, d_c: the zoneout masks (T, B, .),
    probabilities (floats), or None (no zoneout)."""

    def __init__(self, layer_norm=False, clip=None, coupled=False, r=None, d_h=None, d_c=None) -> None:
        self.layer_norm, self.clip, self.coupled, self.r, self.d_h, self.d_c = layer_norm, clip, coupled, r, d_h, d_c

    def zoneout(self, t) -> "tuple | None":
        """(d_h, d_c) of step t, or None."""
        if self.d_h is None:
            return None
        return tuple(d if np.isscalar(d) else d[t] for d in (self.d_h, self.d_c))


PLAIN = Variant()


def _layer_norm(v, gain, bias):
    """LN over the last axis; returns it and what its backward needs (v normalised, the std)."""
    std = np.sqrt(v.var(axis=-1, keepdims=True) + LN_EPS)
    v_hat = (v - v.mean(axis=-1, keepdims=True)) / std
    return gain * v_hat + bias, (v_hat, std)


def _layer_norm_backward(d_out, gain, saved, grads, name):
    """The gradient w.r.t. LN's input; adds those of ln_{name}_weight and ln_{name}_bias into grads."""
    v_hat, std = saved
    grads[f"ln_{name}_weight"] += (d_out * v_hat).sum(axis=0)
    grads[f"ln_{name}_bias"] += d_out.sum(axis=0)
    d_hat = d_out * gain
    return (d_hat - d_hat.mean(axis=-1, keepdims=True) - v_hat * (d_hat * v_hat).mean(axis=-1, keepdims=True)) / std


def _clip(z, clip):
    """z clamped to [-clip, clip] and where it passes the gradient (inside, bounds included)."""
    if clip is None:
        return z, 1.0
    return np.clip(z, -clip, clip), np.abs(z) <= clip


def _cell_forward(x_t, h_prev, c_prev, p, precision="fp64", v=PLAIN, t=0):
    """Step t of one direction. x_t (B, I_k), h_prev (B, R), c_prev (B, H); p maps the roles
    (weight_ih, ...) to arrays. Returns h_t (B, R), c_t (B, H) and what the backward step needs."""
    h_in = h_prev if v.r is None else h_prev * v.r  # what W_hh reads
    a_x, a_h, ln = _product(x_t, p["weight_ih"], precision), _product(h_in, p["weight_hh"], precision), {}
    if v.layer_norm:
        a_x, ln["ih"] = _layer_norm(a_x, p["ln_ih_weight"], p["ln_ih_bias"])
        a_h, ln["hh"] = _layer_norm(a_h, p["ln_hh_weight"], p["ln_hh_bias"])
    gates = a_x + a_h + p.get("bias_ih", 0.0) + p.get("bias_hh", 0.0)  # (B, 4H): i, f, g, o
    i_pre, f_pre, g_pre, o_pre = np.split(gates, 4, axis=1)
    if "weight_peep" in p:
        p_i, p_f, p_o = p["weight_peep"]
        i_pre = i_pre + p_i * c_prev
        f_pre = f_pre + p_f * c_prev
    (i_pre, pass_i), (f_pre, pass_f), (g_pre, pass_g) = (_clip(z, v.clip) for z in (i_pre, f_pre, g_pre))
    i, g = _sigmoid(i_pre), np.tanh(g_pre)
    f = 1 - i if v.coupled else _sigmoid(f_pre)
    c = f * c_prev + i * g
    if "weight_peep" in p:
        o_pre = o_pre + p_o * c  # the output gate looks at c_t, not c_{t-1}
    o_pre, pass_o = _clip(o_pre, v.clip)
    o = _sigmoid(o_pre)
    n = c
    if v.layer_norm:
        n, ln["cell"] = _layer_norm(c, p["ln_cell_weight"], p["ln_cell_bias"])
    tanh_n = np.tanh(n)
    m = o * tanh_n  # the cell output before the projection, (B, H)
    h = _product(m, p["weight_hr"], precision) if "weight_hr" in p else m
    step = dict(x=x_t, h_in=h_in, c_prev=c_prev, i=i, f=f, g=g, o=o, c=c, tanh_n=tanh_n, m=m, ln=ln)
    step.update(passes=(pass_i, pass_f, pass_g, pass_o), zoneout=v.zoneout(t))
    if step["zoneout"] is not None:
        d_h, d_c = step["zoneout"]
        h, c = d_h * h_prev + (1 - d_h) * h, d_c * c_prev + (1 - d_c) * c
    return h, c, step


def _cell_backward(dh, dc, step, p, grads, v=PLAIN, precision="fp64"):
    """Backward of one step. dh (B, R), dc (B, H): the loss gradients reaching h_t and c_t from
    above and from later steps. Adds the parameter gradients into grads (keyed by role) and returns
    dx_t (B, I_k), dh_{t-1} (B, R), dc_{t-1} (B, H). dz is the loss gradient w.r.t. z, and z_pre
    is a gate before its nonlinearity: sigmoid' = s (1 - s), tanh' = 1 - tanh^2."""
    i, f, g, o, c, c_prev = (step[name] for name in ("i", "f", "g", "o", "c", "c_prev"))
    tanh_n, m, ln = step["tanh_n"], step["m"], step["ln"]
    dh_prev = dc_prev = 0.0
    if step["zoneout"] is not None:  # the part of h_t, c_t that is h_{t-1}, c_{t-1} itself
        d_h, d_c = step["zoneout"]
        dh_prev, dc_prev, dh, dc = d_h * dh, d_c * dc, (1 - d_h) * dh, (1 - d_c) * dc
    if "weight_hr" in p:  # h = W_hr m
        grads["weight_hr"] += _operand(dh, precision).T @ _operand(m, precision)
        dm = _operand(dh, precision) @ _operand(p["weight_hr"], precision)
    else:
        dm = dh
    pass_i, pass_f, pass_g, pass_o = step["passes"]
    do_pre = dm * tanh_n * o * (1 - o) * pass_o
    dn = dm * o * (1 - tanh_n**2)
    dc = dc + (_layer_norm_backward(dn, p["ln_cell_weight"], ln["cell"], grads, "cell") if v.layer_norm else dn)
    if "weight_peep" in p:
        p_i, p_f, p_o = p["weight_peep"]
        dc = dc + do_pre * p_o
    di, dg, df = dc * g, dc * i, dc * c_prev
    if v.coupled:  # f = 1 - i
        di, df = di - df, 0.0 * df
    di_pre = di * i * (1 - i) * pass_i
    df_pre = df * f * (1 - f) * pass_f
    dg_pre = dg * (1 - g**2) * pass_g
    dc_prev = dc_prev + dc * f
    if "weight_peep" in p:
        dc_prev = dc_prev + di_pre * p_i + df_pre * p_f
        grads["weight_peep"] += np.stack(
            [(di_pre * c_prev).sum(axis=0), (df_pre * c_prev).sum(axis=0), (do_pre * c).sum(axis=0)]
        )
    dgates = np.concatenate([di_pre, df_pre, dg_pre, do_pre], axis=1)  # (B, 4H)
    for bias in ("bias_ih", "bias_hh"):
        if bias in p:
            grads[bias] += dgates.sum(axis=0)
    da_x = da_h = dgates
    if v.layer_norm:
        da_x = _layer_norm_backward(dgates, p["ln_ih_weight"], ln["ih"], grads, "ih")
        da_h = _layer_norm_backward(dgates, p["ln_hh_weight"], ln["hh"], grads, "hh")
    da_x, da_h = _operand(da_x, precision), _operand(da_h, precision)
    grads["weight_ih"] += da_x.T @ _operand(step["x"], precision)
    grads["weight_hh"] += da_h.T @ _operand(step["h_in"], precision)
    dh_in = da_h @ _operand(p["weight_hh"], precision)
    dx = da_x @ _operand(p["weight_ih"], precision)
    return dx, dh_prev + (dh_in if v.r is None else dh_in * v.r), dc_prev


def _direction_forward(x, h0, c0, active, p, reverse, precision, v=PLAIN):
    """Runs one direction over the sequence. x (T, B, I_k), h0 (B, R), c0 (B, H), active (T, B, 1).
    Returns y (T, B, R), the final h (B, R) and c (B, H), and the per-step caches indexed by t."""
    T = x.shape[0]
    h, c = h0, c0
    y = np.zeros((T,) + h0.shape)
    steps = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        h_new, c_new, steps[t] = _cell_forward(x[t], h, c, p, precision, v, t)
        h = np.where(active[t], h_new, h)
        c = np.where(active[t], c_new, c)
        y[t] = np.where(active[t], h_new, 0.0)
    return y, h, c, steps


def _direction_backward(dy, dh, dc, active, p, steps, reverse, v=PLAIN, precision="fp64"):
    """BPTT through one direction: dy (T, B, R); dh (B, R) and dc (B, H) are the gradients w.r.t.
    its final state. Returns dx (T, B, I_k), dh0, dc0 and the parameter gradients keyed by role."""
    T = len(steps)
    grads = {role: np.zeros_like(value) for role, value in p.items()}
    dx = np.zeros((T,) + steps[0]["x"].shape)
    for t in range(T) if reverse else reversed(range(T)):
        a = active[t]
        dx[t], dh_prev, dc_prev = _cell_backward(
            np.where(a, dy[t] + dh, 0.0), np.where(a, dc, 0.0), steps[t], p, grads, v, precision
        )
        # An inactive step passed the state through unchanged, so its gradient passes through too.
        dh = np.where(a, dh_prev, dh)
        dc = np.where(a, dc_prev, dc)
    return dx, dh, dc, grads


def _split_params(params, num_layers, D, proj_size, peephole, layer_norm=False):
    """One dict per (layer, direction), in torch's order k*D + d, mapping roles to float64 arrays.
    The bias keys are optional (bias=False); any other missing or unused key is an error."""
    required = ["weight_ih", "weight_hh"]
    required += ["weight_hr"] * (proj_size > 0) + ["weight_peep"] * peephole + list(LN_ROLES) * layer_norm
    layers, used = [], set()
    for k in range(num_layers):
        for sfx in SUFFIXES[:D]:
            p = {}
            for role in ROLES + LN_ROLES:
                name = f"{role}_l{k}{sfx}"
                if name in params and (role in required or role.startswith("bias")):
                    p[role] = np.asarray(params[name], dtype=np.float64)
                    used.add(name)
                elif role in required:
                    raise ValueError(f"params is missing {name}")
            layers.append(p)
    if set(params) != used:
        unused = sorted(set(params) - used)
        raise ValueError(f"params has keys this configuration does not use: {unused}")
    return layers


def _state_pair(name, pair, h_shape, c_shape):
    """(h, c) as float64 arrays of the given shapes; zeros for None."""
    if pair is None:
        return np.zeros(h_shape), np.zeros(c_shape)
    h, c = (np.asarray(s, dtype=np.float64) for s in pair)
    if (h.shape, c.shape) != (h_shape, c_shape):
        raise ValueError(f"{name} must have shapes {h_shape} and {c_shape}, got {h.shape} and {c.shape}")
    return h, c


def _checked_masks(dropout_masks, num_layers, shape):
    """None, or the num_layers - 1 masks as float64 arrays of `shape` (T, B, D*R)."""
    if dropout_masks is None:
        return None
    dropout_masks = [np.asarray(mask, dtype=np.float64) for mask in dropout_masks]
    if [mask.shape for mask in dropout_masks] != [shape] * (num_layers - 1):
        raise ValueError(
            f"dropout_masks must be {num_layers - 1} arrays of shape {shape}, got {[m.shape for m in dropout_masks]}"
        )
    return dropout_masks


def _active_steps(lengths, T, B):
    """(T, B, 1) booleans: step t of sequence b is within its length (all of them when lengths is None)."""
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    if lengths.shape != (B,) or lengths.min() < 1 or lengths.max() > T:
        raise ValueError(f"lengths must have shape ({B},) and values in 1..{T}, got {lengths}")
    return (np.arange(T)[:, None] < lengths[None, :])[:, :, None]


def _variants(cells, sizes, layer_norm, cell_clip, coupled_gates, zoneout, zoneout_masks, recurrent_masks):
    """The Variant of each of the `cells` (layer, direction) pairs; sizes (T, B, R, H)."""
    T, B, R, H = sizes
    if cell_clip is not None and not cell_clip > 0:
        raise ValueError(f"cell_clip must be None or > 0, got {cell_clip}")
    z_h, z_c = (zoneout, zoneout) if np.isscalar(zoneout) else zoneout
    if not (0 <= z_h < 1 and 0 <= z_c < 1):
        raise ValueError(f"zoneout must be in [0, 1), got {zoneout}")
    zones = [(z_h, z_c) if z_h or z_c else (None, None)] * cells
    if zoneout_masks is not None:
        zones = [tuple(np.asarray(d, dtype=np.float64) for d in pair) for pair in zoneout_masks]
        if [(d_h.shape, d_c.shape) for d_h, d_c in zones] != [((T, B, R), (T, B, H))] * cells:
            raise ValueError(f"zoneout_masks must be {cells} pairs of shapes {(T, B, R)} and {(T, B, H)}")
    masks = [None] * cells
    if recurrent_masks is not None:
        masks = [np.asarray(r, dtype=np.float64) for r in recurrent_masks]
        if [r.shape for r in masks] != [(B, R)] * cells:
            raise ValueError(f"recurrent_masks must be {cells} arrays of shape {(B, R)}")
    return [Variant(layer_norm, cell_clip, coupled_gates, r, d_h, d_c) for r, (d_h, d_c) in zip(masks, zones)]


def _stack_forward(x, state, active, layers, variants, dropout_masks, D, precision):
    """The layers in turn, each direction of a layer over the previous layer's output (dropped out):
    y (T, B, D*R), h_n, c_n and every cell's per-step caches."""
    h0, c0 = state
    h_n, c_n, all_steps = np.zeros_like(h0), np.zeros_like(c0), []
    layer_input = x
    for k in range(len(layers) // D):
        if k > 0 and dropout_masks is not None:
            layer_input = layer_input * dropout_masks[k - 1]
        outputs = []
        for d in range(D):
            j = k * D + d
            y_d, h_n[j], c_n[j], steps = _direction_forward(
                layer_input, h0[j], c0[j], active, layers[j], (d == 1), precision, variants[j]
            )
            outputs.append(y_d)
            all_steps.append(steps)
        layer_input = np.concatenate(outputs, axis=2)
    return layer_input, h_n, c_n, all_steps


def forward(
    x,
    params,
    *,
    num_layers=1,
    bidirectional=False,
    proj_size=0,
    peephole=False,
    state=None,
    lengths=None,
    dropout_masks=None,
    precision="fp64",
    layer_norm=False,
    cell_clip=None,
    coupled_gates=False,
    zoneout=0.0,
    zoneout_masks=None,
    recurrent_masks=None,
) -> "tuple[np.ndarray, tuple[np.ndarray, np.ndarray], dict]":
    """x: (T, B, I) array (time-major, batched only). Returns (y, (h_n, c_n), cache).

    params: dict with torch.nn.LSTM's state_dict names and shapes: weight_ih_l{k}{sfx} (4H, I_k),
      weight_hh_l{k}{sfx} (4H, R), bias_ih_l{k}{sfx} (4H,), bias_hh_l{k}{sfx} (4H,) [bias keys
      may be absent = bias=False], weight_hr_l{k}{sfx} (R, H) when proj_size > 0, and when
      peephole=True weight_peep_l{k}{sfx} (3, H) with rows (i, f, o). sfx is "" or "_reverse".
      H is inferred from the shapes; R = proj_size if > 0 else H; D = 2 if bidirectional else 1;
      I_k = I for k = 0 else D*R.
    state: None (zeros) or (h0 (num_layers*D, B, R), c0 (num_layers*D, B, H)); layer k direction d
      is at index k*D + d (torch's order).
    lengths: None or ints (B,), 1 <= L_b <= T, with torch's packed-sequence semantics (see the
      module docstring): outputs at t >= L_b are 0, the final state is the one after the last
      valid step, and the reverse direction starts at step L_b - 1.
    dropout_masks: None or a list of num_layers - 1 arrays (T, B, D*R), already scaled by
      1/(1-p): the output of layer k is multiplied by dropout_masks[k] before it becomes the input
      of layer k + 1.
    precision: "fp64", "bf16" or "int8": every matrix product's operands rounded (module docstring);
      backward() of a "bf16" cache rounds its products' too (bf16 training), of an "int8" one refuses.
    layer_norm (needs the ln_* parameters), cell_clip (None or > 0), coupled_gates: the variants.
    zoneout: z or (z_h, z_c), the inference form (d = z) when zoneout_masks is None;
      zoneout_masks: None or num_layers*D pairs (d_h (T, B, R), d_c (T, B, H)) of 0/1, the
      training form (1: the unit keeps its previous state).
    recurrent_masks: None or num_layers*D arrays (B, R), already scaled by 1/(1-p).
    y: (T, B, D*R); h_n (num_layers*D, B, R); c_n (num_layers*D, B, H). The cache is opaque: pass
      it to backward() unchanged.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I), got {x.shape}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    layers = _split_params(params, num_layers, D, proj_size, peephole, layer_norm)
    H = layers[0]["weight_hh"].shape[0] // 4
    R = proj_size if proj_size > 0 else H
    variants = _variants(
        num_layers * D, (T, B, R, H), layer_norm, cell_clip, coupled_gates, zoneout, zoneout_masks, recurrent_masks
    )

    h_shape, c_shape = (num_layers * D, B, R), (num_layers * D, B, H)
    h0, c0 = _state_pair("state", state, h_shape, c_shape)
    dropout_masks = _checked_masks(dropout_masks, num_layers, (T, B, D * R))
    active = _active_steps(lengths, T, B)

    y, h_n, c_n, all_steps = _stack_forward(x, (h0, c0), active, layers, variants, dropout_masks, D, precision)
    cache = dict(
        layers=layers,
        variants=variants,
        steps=all_steps,
        active=active,
        names=list(params),
        num_layers=num_layers,
        D=D,
        R=R,
        dropout_masks=dropout_masks,
        y_shape=y.shape,
        state_shapes=(h_shape, c_shape),
        precision=precision,
    )
    return y, (h_n, c_n), cache


def backward(dy, cache, dstate=None) -> "tuple[np.ndarray, tuple[np.ndarray, np.ndarray], dict]":
    """dy: (T, B, D*R) gradient of the loss w.r.t. y; dstate: None (zeros) or (dh_n, dc_n) shaped
    like (h_n, c_n). Returns (dx, (dh0, dc0), grads) with dx (T, B, I), dh0/dc0 shaped like h0/c0,
    and grads a dict with exactly the keys of params."""
    if cache["precision"] not in ("fp64", "bf16"):
        raise ValueError(
            f"backward differentiates the fp64 and bf16 forwards only; this cache is {cache['precision']!r}"
        )
    dy = np.asarray(dy, dtype=np.float64)
    if dy.shape != cache["y_shape"]:
        raise ValueError(f"dy must have shape {cache['y_shape']}, got {dy.shape}")
    h_shape, c_shape = cache["state_shapes"]
    dh_n, dc_n = _state_pair("dstate", dstate, h_shape, c_shape)
    D, R, masks = cache["D"], cache["R"], cache["dropout_masks"]

    dh0, dc0, grads = np.zeros(h_shape), np.zeros(c_shape), {}
    d_output = dy  # the gradient w.r.t. the output of layer k
    for k in reversed(range(cache["num_layers"])):
        d_input = 0.0
        for d in range(D):
            j = k * D + d
            dx_d, dh0[j], dc0[j], layer_grads = _direction_backward(
                d_output[:, :, d * R : (d + 1) * R],
                dh_n[j],
                dc_n[j],
                cache["active"],
                cache["layers"][j],
                cache["steps"][j],
                (d == 1),
                cache["variants"][j],
                cache["precision"],
            )
            d_input = d_input + dx_d  # both directions read the same input
            grads.update({f"{role}_l{k}{SUFFIXES[d]}": g for role, g in layer_grads.items()})
        if k > 0 and masks is not None:
            d_input = d_input * masks[k - 1]
        d_output = d_input
    return d_output, (dh0, dc0), {name: grads[name] for name in cache["names"]}
