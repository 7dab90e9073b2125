"""Model exchange with other runtimes: ONNX (export) and Keras (weights, both ways).

Gate orders differ between the three; each block below is one gate's H rows (ONNX, ours) or H columns
(Keras) of the stacked weight matrices:

    lstm_fast / torch:  i, f, g, o      (g is the cell candidate, tanh)
    ONNX LSTM:          i, o, f, c      (c is the cell candidate); peepholes i, o, f
    Keras LSTM:         i, f, c, o      (transposed: kernels are (inputs, 4H)); one bias
"""

from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional, Tuple

import numpy as np

from ._config import LSTMConfig

# Our gate blocks in ONNX's order (i, o, f, c), and our peephole rows (i, f, o) in ONNX's (i, o, f).
_ONNX_GATES = (0, 3, 1, 2)
_ONNX_PEEPHOLES = (0, 2, 1)
ONNX_OPSET = 17


def _blocks(a: np.ndarray, order, size: int) -> np.ndarray:
    """The size-row blocks of a in the given order (along axis 0)."""
    return np.concatenate([a[k * size : (k + 1) * size] for k in order], axis=0)


def to_onnx(
    model: LSTMConfig,
    params: Mapping[str, np.ndarray],
    path: "os.PathLike[str] | str",
    *,
    with_state: bool = True,
    with_lengths: bool = False,
) -> None:
    """Writes the inference of a model (its config and state_dict) as an ONNX graph of the standard LSTM
    operator, one node per layer.

    Graph inputs: ``x`` ((T, B, I), or (B, T, I) when batch_first; T and B are free), then ``h0``
    (L*D, B, H) and ``c0`` (L*D, B, H) when with_state, then ``lengths`` (B,) int32 when with_lengths
    (the ONNX operator's sequence_lens: torch's packed-sequence semantics). Outputs: ``y`` (the layout
    of x, last dimension D*H), ``h_n`` and ``c_n`` (L*D, B, H). Dropout is not part of inference.
    A projection (proj_size > 0) has no counterpart in the ONNX operator and raises ValueError.
    """
    if model.proj_size:
        raise ValueError(
            f"to_onnx: the ONNX LSTM operator has no projection; this model has proj_size={model.proj_size}"
        )
    if model.zoneout_pair != (0.0, 0.0) or model.layer_norm:
        raise ValueError(
            "to_onnx: the ONNX LSTM operator has no zoneout or layer norm; this model is "
            f"LSTM({model.arguments_repr()})"
        )
    import onnx  # optional: only exporting needs it (after the checks, which need no onnx)
    from onnx import TensorProto, helper, numpy_helper

    H, D, L = model.hidden_size, model.num_directions, model.num_layers
    elem = TensorProto.FLOAT if model.dtype == np.float32 else TensorProto.DOUBLE
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    x_shape = ["B", "T", model.input_size] if model.batch_first else ["T", "B", model.input_size]
    inputs = [helper.make_tensor_value_info("x", elem, x_shape)]
    if with_state:
        inputs += [
            helper.make_tensor_value_info("h0", elem, [L * D, "B", H]),
            helper.make_tensor_value_info("c0", elem, [L * D, "B", H]),
        ]
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["B"]))
    layer_input = "x"
    if model.batch_first:
        nodes.append(helper.make_node("Transpose", ["x"], ["x_time_major"], perm=[1, 0, 2]))
        layer_input = "x_time_major"

    for k in range(L):
        layer_input = _onnx_layer(model, params, k, layer_input, nodes, const, with_state, with_lengths)
    h_parts, c_parts = [f"Y_h_{k}" for k in range(L)], [f"Y_c_{k}" for k in range(L)]

    if model.batch_first:
        nodes.append(helper.make_node("Transpose", [layer_input], ["y"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [layer_input], ["y"]))
    nodes.append(helper.make_node("Concat", h_parts, ["h_n"], axis=0))
    nodes.append(helper.make_node("Concat", c_parts, ["c_n"], axis=0))
    y_shape = ["B", "T", D * H] if model.batch_first else ["T", "B", D * H]
    outputs = [
        helper.make_tensor_value_info("y", elem, y_shape),
        helper.make_tensor_value_info("h_n", elem, [L * D, "B", H]),
        helper.make_tensor_value_info("c_n", elem, [L * D, "B", H]),
    ]
    graph = helper.make_graph(nodes, "lstm_fast", inputs, outputs, initializer=inits)
    onnx_model = helper.make_model(
        graph, producer_name="lstm_fast", opset_imports=[helper.make_opsetid("", ONNX_OPSET)]
    )
    onnx.checker.check_model(onnx_model, full_check=True)
    onnx.save(onnx_model, os.fspath(path))


def _onnx_layer(
    model: LSTMConfig,
    params: Mapping[str, np.ndarray],
    k: int,
    layer_input: str,
    nodes: list,
    const: Any,
    with_state: bool,
    with_lengths: bool,
) -> str:
    """Appends layer k's nodes (the LSTM operator, then its Y (T, D, B, H) reshaped to (T, B, D*H));
    returns the name of the layer's output. Its final states are Y_h_k and Y_c_k (D, B, H)."""
    from onnx import helper

    H, D = model.hidden_size, model.num_directions
    suffixes = ("", "_reverse")[:D]
    W = np.stack([_blocks(params[f"weight_ih_l{k}{s}"], _ONNX_GATES, H) for s in suffixes])
    R = np.stack([_blocks(params[f"weight_hh_l{k}{s}"], _ONNX_GATES, H) for s in suffixes])
    node_inputs = [layer_input, const(f"W_{k}", W), const(f"R_{k}", R)]
    if model.bias:
        B = np.stack(
            [
                np.concatenate(
                    [
                        _blocks(params[f"bias_ih_l{k}{s}"], _ONNX_GATES, H),
                        _blocks(params[f"bias_hh_l{k}{s}"], _ONNX_GATES, H),
                    ]
                )
                for s in suffixes
            ]
        )
        node_inputs.append(const(f"B_{k}", B))
    else:
        node_inputs.append("")
    node_inputs.append("lengths" if with_lengths else "")
    if with_state:  # this layer's rows k*D .. k*D + D - 1 of h0 and c0
        bounds = [
            const(f"state_start_{k}", np.array([k * D], np.int64)),
            const(f"state_end_{k}", np.array([(k + 1) * D], np.int64)),
            const(f"state_axis_{k}", np.array([0], np.int64)),
        ]
        nodes.append(helper.make_node("Slice", ["h0", *bounds], [f"h0_{k}"]))
        nodes.append(helper.make_node("Slice", ["c0", *bounds], [f"c0_{k}"]))
        node_inputs += [f"h0_{k}", f"c0_{k}"]
    else:
        node_inputs += ["", ""]
    if model.peephole:
        P = np.stack([_blocks(params[f"weight_peep_l{k}{s}"], _ONNX_PEEPHOLES, 1).reshape(-1) for s in suffixes])
        node_inputs.append(const(f"P_{k}", P))
    while node_inputs[-1] == "":  # trailing optional inputs are left out
        node_inputs.pop()
    nodes.append(
        helper.make_node(
            "LSTM",
            node_inputs,
            [f"Y_{k}", f"Y_h_{k}", f"Y_c_{k}"],
            name=f"lstm_l{k}",
            hidden_size=H,
            direction="bidirectional" if D == 2 else "forward",
            input_forget=int(model.coupled_gates),
            **({} if model.cell_clip is None else dict(clip=model.cell_clip)),
        )
    )
    # Y is (T, D, B, H); the next layer (and the user) wants (T, B, D*H), directions side by side.
    nodes.append(helper.make_node("Transpose", [f"Y_{k}"], [f"Y_tbdh_{k}"], perm=[0, 2, 1, 3]))
    nodes.append(
        helper.make_node(
            "Reshape", [f"Y_tbdh_{k}", const(f"shape_{k}", np.array([0, 0, -1], np.int64))], [f"layer_out_{k}"]
        )
    )
    return f"layer_out_{k}"


def keras_to_state_dict(kernel: Any, recurrent_kernel: Any, bias: Optional[Any]) -> Tuple[int, int, dict]:
    """(input_size, hidden_size, state_dict) of a Keras LSTM layer's weights (gate order i, f, c, o =
    ours i, f, g, o; kernels transposed; Keras's one bias becomes bias_ih, with bias_hh zero)."""
    kernel, recurrent_kernel = np.asarray(kernel), np.asarray(recurrent_kernel)
    if kernel.ndim != 2 or kernel.shape[1] % 4 or kernel.shape[1] == 0:
        raise ValueError(f"kernel must have shape (input_size, 4 * units), got {kernel.shape}")
    I, H = kernel.shape[0], kernel.shape[1] // 4
    if recurrent_kernel.shape != (H, 4 * H):
        raise ValueError(
            f"recurrent_kernel must have shape ({H}, {4 * H}) (units = kernel.shape[1] / 4), "
            f"got {recurrent_kernel.shape}"
        )
    state = {"weight_ih_l0": kernel.T, "weight_hh_l0": recurrent_kernel.T}
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (4 * H,):
            raise ValueError(f"bias must have shape ({4 * H},), got {bias.shape}")
        state["bias_ih_l0"] = bias
        state["bias_hh_l0"] = np.zeros_like(bias)
    return I, H, state


def to_keras_weights(model: LSTMConfig, p: Mapping[str, np.ndarray]) -> List[np.ndarray]:
    """[kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,)] (no bias when bias=False): the weights of
    the Keras LSTM layer equivalent to a model (its config and state_dict), in the order
    layer.set_weights() takes."""
    if model.num_layers != 1 or model.bidirectional or model.proj_size or model.peephole:
        raise ValueError(
            "to_keras_weights: a Keras LSTM layer is one unidirectional layer without projection "
            f"or peepholes; this model is LSTM({model.arguments_repr()})"
        )
    if model.cell_clip is not None or model.coupled_gates or model.zoneout_pair != (0.0, 0.0) or model.layer_norm:
        raise ValueError(
            "to_keras_weights: a Keras LSTM layer has no cell_clip, coupled_gates, zoneout or layer norm; this "
            "model is "
            f"LSTM({model.arguments_repr()})"
        )
    weights = [np.ascontiguousarray(p["weight_ih_l0"].T), np.ascontiguousarray(p["weight_hh_l0"].T)]
    if model.bias:
        weights.append(p["bias_ih_l0"] + p["bias_hh_l0"])
    return weights
