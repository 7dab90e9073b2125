"""How far bf16 and int8 move an LSTM's outputs, for lstm_fast's frozen models and for the peers a user
would take instead (ONNX Runtime's dynamic int8 LSTM, OpenVINO's default bf16), on the same models:

  - default-initialised models (torch's initialisation) over T=1000 steps of standard-normal input:
    max and mean |y - y_fp32| over every output;
  - trained models, the two the 1997 paper starts from: the adding problem (the demo's
    LSTM(2, 32) + linear readout, trained until a validation batch is solved) and the embedded Reber
    grammar (LSTM(7, 16) + softmax readout, trained until all 512 training and test strings are
    predicted): the same errors, and whether the readout on the reduced-precision LSTM still solves a
    fresh test set (2560 sequences, the paper's size).

    python benchmarks/accuracy_precision.py [--json out.json] [--seconds 120]

Peers are optional (`pip install onnx onnxruntime openvino`); a missing one leaves its rows out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings

import numpy as np

import lstm_fast as lf
from lstm_fast import nn, optim, tasks
from lstm_fast.__main__ import AddingModel


def engines(lstm, tmp):
    """{name: run(x) -> y} for lstm_fast's precisions and the peers that are installed."""
    runs = {}
    for precision in ("fp32", "bf16", "int8"):
        frozen = lstm.freeze(precision)
        runs[precision] = lambda x, m=frozen: m(x)[0]
    path = os.path.join(tmp, "model.onnx")
    lstm.to_onnx(path, with_state=False)
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8_path = os.path.join(tmp, "model.int8.onnx")
        quantize_dynamic(path, int8_path, weight_type=QuantType.QInt8)
        session = ort.InferenceSession(int8_path, providers=["CPUExecutionProvider"])
        runs["ORT int8"] = lambda x: session.run(None, {"x": x})[0]
    except ImportError:
        pass
    try:
        import openvino as ov

        compiled = ov.Core().compile_model(path, "CPU")  # the default precision: bf16 where the CPU has it
        hint = str(compiled.get_property("INFERENCE_PRECISION_HINT")).split("'")[-2]  # "<Type: 'bfloat16'>"
        runs[f"OpenVINO default ({hint})"] = lambda x: compiled({0: x})[0]
    except ImportError:
        pass
    return runs


def errors(runs, x):
    """{name: (max, mean) |y - y_fp32|} over every output of x."""
    y32 = runs["fp32"](x)
    out = {}
    for name, run in runs.items():
        if name != "fp32":
            d = np.abs(np.asarray(run(x), np.float64).reshape(y32.shape) - y32)
            out[name] = (float(d.max()), float(d.mean()))
    return out


def default_models(tmp, rng):
    rows = []
    for I, H in ((64, 256), (16, 128)):
        lstm = lf.LSTM(I, H, seed=0)
        x = rng.standard_normal((1000, 4, I), dtype=np.float32)
        for name, (top, mean) in errors(engines(lstm, tmp), x).items():
            rows.append(dict(model=f"default LSTM({I}, {H}), T=1000", engine=name, max=top, mean=mean))
    return rows


def train_adding(seconds, rng):
    model = AddingModel(32, seed=0)
    opt = optim.Adam(model.params(), lr=1e-3)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            x, target = tasks.adding_problem(50, 64, rng)
            model.train_step(x, target, opt, 1.0)
        x, target = tasks.adding_problem(50, 2000, rng)
        if tasks.adding_correct(model.predict(x), target).all():
            return model, True
    return model, False


def adding_rows(tmp, rng, seconds):
    model, solved = train_adding(seconds, rng)
    x, target = tasks.adding_problem(50, 2560, rng)
    runs = engines(model.lstm, tmp)
    rows = []
    errs = errors(runs, x)
    for name, run in runs.items():
        correct = tasks.adding_correct(model.head(np.asarray(run(x), np.float32).reshape(50, 2560, -1)[-1]), target)
        top, mean = errs.get(name, (0.0, 0.0))
        rows.append(
            dict(
                model=f"adding problem (trained, solved={solved}), T=50",
                engine=name,
                max=top,
                mean=mean,
                solved=f"{int(correct.sum())}/2560",
            )
        )
    return rows


def train_reber(seconds, rng):
    strings = tasks.reber_strings(256, rng)
    known = set(strings)
    test = []
    while len(test) < 256:
        s = tasks.reber_strings(1, rng)[0]
        if s not in known:
            test.append(s)
    lstm, head = lf.LSTM(7, 16, forget_bias=1.0, seed=0), nn.Linear(16, 7, seed=1)
    opt = optim.Adam(optim.combine(core=lstm.state_dict(), head=head.params), lr=1e-2)
    xc, _, possible, lc = tasks.reber_batch(strings + test)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        x, targets, _, lengths = tasks.reber_batch([strings[i] for i in rng.integers(0, 256, 16)])
        y, _ = lstm.forward(x, None, lengths, train=True)
        valid = np.arange(x.shape[0])[:, None] < lengths[None, :]
        out = head(y)
        _, dvalid = nn.softmax_cross_entropy(out[valid], targets[valid])
        dout = np.zeros_like(out)
        dout[valid] = dvalid
        lstm.backward(head.backward(dout))
        grads = optim.combine(core=lstm.grads, head=head.grads)
        optim.clip_grad_norm(grads, 1.0)
        opt.step(grads)
        if tasks.reber_correct(head(lstm(xc, lengths=lc)[0]), possible, lc).all():
            return lstm, head, True
    return lstm, head, False


def reber_rows(tmp, rng, seconds):
    lstm, head, solved = train_reber(seconds, rng)
    x, _, possible, lengths = tasks.reber_batch(tasks.reber_strings(2560, rng))
    runs = engines(lstm, tmp)
    # Padded steps differ between engines that do not take lengths; compare the valid steps only.
    valid = (np.arange(x.shape[0])[:, None] < lengths[None, :])[:, :, None]
    y32 = runs["fp32"](x)
    rows = []
    for name, run in runs.items():
        y = np.asarray(run(x), np.float32).reshape(y32.shape) * valid
        d = np.abs(y - y32 * valid)[np.broadcast_to(valid, y.shape)]
        correct = tasks.reber_correct(head(y), possible, lengths)
        rows.append(
            dict(
                model=f"embedded Reber (trained, solved={solved})",
                engine=name,
                max=float(d.max()),
                mean=float(d.mean()),
                solved=f"{int(correct.sum())}/2560",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--seconds", type=float, default=120.0, help="training budget of each trained model")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    tmp, rng = tempfile.mkdtemp(), np.random.default_rng(0)
    rows = default_models(tmp, rng) + adding_rows(tmp, rng, args.seconds) + reber_rows(tmp, rng, args.seconds)
    print(f"{'model':44} {'engine':30} {'max |dy|':>9} {'mean |dy|':>9} {'test solved':>11}")
    for r in rows:
        print(f"{r['model']:44} {r['engine']:30} {r['max']:9.2e} {r['mean']:9.2e} {r.get('solved', ''):>11}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(isa=lf.isa(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
