"""lstm_fast's frozen models (lf.Model) at each precision against the engines a speed-seeking user
would pick at that precision, in one run, on the same threads and the shapes of bench_torch.py:

    fp32   lf.Model("fp32") and lf.LSTM  against torch.nn.LSTM, ONNX Runtime, OpenVINO (f32 hint)
    bf16   lf.Model("bf16")              against OpenVINO's default precision (bf16 where the CPU has it)
                                         and torch's bf16 module (torch.nn.LSTM in bfloat16, no_grad)
    int8   lf.Model("int8")              against torch's quantize_dynamic and ONNX Runtime's
                                         quantize_dynamic (DynamicQuantizeLSTM)
    step   Model.step, one call per time step with the state fed back, at the shape's batch, against an
           ONNX Runtime session of one step with h0 and c0 inputs

Each shape's lstm_fast side and peer side run in processes of their own, one after the other, so that
no engine's threads or sessions are around while another is timed. Prints medians, the ratio to the
best peer of the same precision (below 1: lstm_fast is faster), GOP/s (a multiply-add counting 2:
forward 2*T*B*4H*(I+H) per layer and direction) and the fraction of the precision's measured peak on
these threads (FMA for fp32, vdpbf16ps for bf16, vpdpbusd for int8, or what this CPU runs instead:
lstm_fast._core.dot_peak_gops). --json writes the rows.

    python benchmarks/bench_precision.py [--repeats 7] [--rounds 3] [--shapes small,long] [--json out.json]

Peers are benchmark-only: `pip install torch==2.13.0 onnx onnxruntime openvino`. A missing one
leaves its column empty.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from bench_torch import SHAPES, cpu_model, gflops, median_ms

import lstm_fast as lf
from lstm_fast import _core

PRECISIONS = ("fp32", "bf16", "int8")


def optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def peers(name, model, x, tmp, threads):
    """{precision: {peer: call}} for the case; each call runs inference on x."""
    torch, ort, ov = optional("torch"), optional("onnxruntime"), optional("openvino")
    found = {p: {} for p in PRECISIONS}
    if torch is not None:
        torch.set_num_threads(threads)
        module = torch.nn.LSTM(model.input_size, model.hidden_size, model.num_layers, bidirectional=model.bidirectional)
        module.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
        quantized = torch.ao.quantization.quantize_dynamic(module, {torch.nn.LSTM}, dtype=torch.qint8)
        xt = torch.from_numpy(x)

        def run(m):
            def call():
                with torch.no_grad():
                    m(xt)

            return call

        found["fp32"]["torch"] = run(module)
        found["int8"]["torch int8"] = run(quantized)
        bf16 = copy.deepcopy(module).to(torch.bfloat16)  # oneDNN's bf16 kernels (AMX where the CPU has it)
        x_bf16 = xt.to(torch.bfloat16)

        def bf16_call():
            with torch.no_grad():
                bf16(x_bf16)

        found["bf16"]["torch bf16"] = bf16_call
    path = os.path.join(tmp, f"{name}.onnx")
    model.to_onnx(path, with_state=False)
    if ort is not None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        int8_path = os.path.join(tmp, f"{name}.int8.onnx")
        quantize_dynamic(path, int8_path, weight_type=QuantType.QInt8)
        for precision, file in (("fp32", path), ("int8", int8_path)):
            session = ort.InferenceSession(file, options, providers=["CPUExecutionProvider"])
            found[precision]["ORT" if precision == "fp32" else "ORT int8"] = lambda s=session: s.run(None, {"x": x})
    if ov is not None:
        core = ov.Core()
        for precision, hint in (("fp32", {"INFERENCE_PRECISION_HINT": "f32"}), ("bf16", {})):
            compiled = core.compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": threads, **hint})
            request = compiled.create_infer_request()
            # The default hint is bf16 where the CPU has AVX512_BF16 or AMX, else f32.
            hint = str(compiled.get_property("INFERENCE_PRECISION_HINT")).split("'")[-2]  # "<Type: 'bfloat16'>"
            label = "OpenVINO f32" if precision == "fp32" else f"OpenVINO {hint}"
            found[precision][label] = lambda r=request: r.infer({0: x})
    return found


def ort_step(model, B, tmp, threads):
    """An ONNX Runtime session of one step with h0, c0 fed back, as a user would stream; None without ORT."""
    ort = optional("onnxruntime")
    if ort is None:
        return None
    path = os.path.join(tmp, f"step{B}.onnx")
    model.to_onnx(path, with_state=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x_t = np.random.default_rng(1).standard_normal((1, B, model.input_size), dtype=np.float32)
    state = [np.zeros((1, B, model.hidden_size), np.float32)] * 2

    def call():
        _, h, c = session.run(None, {"x": x_t, "h0": state[0], "c0": state[1]})
        state[0], state[1] = h, c

    return call


def model_step(frozen, B):
    x_t = np.random.default_rng(1).standard_normal((B, frozen.input_size), dtype=np.float32)
    state = [frozen.initial_state(B)]

    def call():
        _, state[0] = frozen.step(x_t, state[0])

    return call


HEADER = (
    f"{'shape':7} {'precision':9} {'lstm_fast ms':>12} {'best peer':>16} {'peer ms':>9} {'ratio':>6} "
    f"{'GOP/s':>7} {'of peak':>7}  others"
)


def ours(model, x):
    """(label, precision, call, (T, B) of the work) of lstm_fast at one shape."""
    T, B = x.shape[:2]
    for precision in PRECISIONS:
        frozen = model.freeze(precision)
        yield precision, precision, (lambda m=frozen: m(x)), (T, B)
    yield "fp32 LSTM", "fp32", (lambda: model(x)), (T, B)
    if not model.bidirectional:
        for precision in PRECISIONS:
            yield f"step {precision}", precision, model_step(model.freeze(precision), B), (1, B)


def row_of(name, label, precision, ours_ms, peer_ms, work, peak):
    """One row: our median, the peers', the ratio to the best, GOP/s and the fraction of the peak."""
    T, B, I, H, layers, bidirectional = SHAPES[name]
    best = min(peer_ms, key=peer_ms.get) if peer_ms else None
    steps, batch = work
    gops = gflops(steps, batch, I, H, layers, bidirectional, ours_ms)
    return dict(
        shape=name,
        precision=label,
        T=steps,
        B=batch,
        I=I,
        H=H,
        layers=layers,
        bidirectional=bidirectional,
        lstm_fast_ms=ours_ms,
        peers_ms=peer_ms,
        best_peer=best,
        ratio=ours_ms / peer_ms[best] if best else None,
        gops=gops,
        fraction_of_peak=gops / peak[precision],
    )


def case(name):
    """The model and input of shape `name`, the same in every process (seeded)."""
    T, B, I, H, layers, bidirectional = SHAPES[name]
    model = lf.LSTM(I, H, layers, bidirectional=bidirectional, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I), dtype=np.float32)
    return model, x


def time_part(part, name, repeats, threads):
    """One engine side of one shape, timed in this process: lstm_fast's medians by label, or the peers'
    by precision and peer (the step under "step")."""
    model, x = case(name)
    if part == "ours":
        return {label: median_ms(call, repeats) for label, _, call, _ in ours(model, x)}
    tmp = tempfile.mkdtemp()
    theirs = peers(name, model, x, tmp, threads)
    timed = {p: {peer: median_ms(call, repeats) for peer, call in group.items()} for p, group in theirs.items()}
    step = ort_step(model, x.shape[1], tmp, threads) if not model.bidirectional else None
    timed["step"] = {"ORT step": median_ms(step, repeats)} if step else {}
    return timed


def medians(runs):
    """The per-key medians of `runs` (dicts of numbers, or of dicts of numbers)."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: medians([run[key] for run in runs]) for key in first}
    return statistics.median(runs)


def shape_rows(name, repeats, rounds, peak, threads):
    """The rows of one shape. Each side runs in a process of its own (in one process, with OpenVINO's and
    ONNX Runtime's sessions alive, idle, lstm_fast's small int8 inference took 3.6 ms against 2.9 once
    they were freed), the two sides alternating for `rounds` rounds, and each time is the median over
    the rounds: this machine has spells in which one side runs at half speed."""
    timed = {"ours": [], "peers": []}
    for _ in range(rounds):
        for part in ("ours", "peers"):
            command = [sys.executable, __file__, "--part", part, "--shapes", name, "--repeats", str(repeats)]
            timed[part].append(json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
    mine, theirs = medians(timed["ours"]), medians(timed["peers"])
    model, x = case(name)
    for label, precision, _, work in ours(model, x):
        peer_ms = theirs["step" if label.startswith("step") else precision]
        yield row_of(name, label, precision, mine[label], peer_ms, work, peak)


def show(row):
    best, peer_ms = row["best_peer"], row["peers_ms"]
    others = ", ".join(f"{k} {v:.2f}" for k, v in peer_ms.items() if k != best)
    ratio = f"{row['ratio']:6.2f}" if best else f"{'':6}"
    peer_text = f"{best:>16} {peer_ms[best]:9.3f}" if best else f"{'':16} {'':9}"
    print(
        f"{row['shape']:7} {row['precision']:9} {row['lstm_fast_ms']:12.3f} {peer_text} {ratio} "
        f"{row['gops']:7.1f} {row['fraction_of_peak']:7.0%}  {others}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of lstm_fast's and the peers' processes")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated subset of " + ",".join(SHAPES))
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--part", choices=["ours", "peers"], help=argparse.SUPPRESS)  # one side, as JSON
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # torch.ao's deprecation notice of quantize_dynamic
    logging.getLogger().setLevel(logging.ERROR)  # ORT quantization's advice to pre-process
    threads = lf.get_num_threads()
    if args.part:
        print(json.dumps(time_part(args.part, args.shapes, args.repeats, threads)))
        return
    peak = {p: _core.dot_peak_gops(p, 1.0, threads) for p in PRECISIONS}
    tiles = _core._dot_instructions()["tiles"]
    print(f"cpu: {cpu_model()}; AMX tiles: {'yes, for bf16 and int8 from B >= 4' if tiles == 'amx' else 'no'}")
    print(
        f"lstm_fast {lf.__version__} ({lf.isa()}, {threads} threads); measured peaks, GOP/s: "
        + ", ".join(f"{p} {v:.0f}" for p, v in peak.items())
    )
    print(HEADER)
    print("-" * len(HEADER))
    rows = []
    for name in args.shapes.split(","):
        for row in shape_rows(name, args.repeats, args.rounds, peak, threads):
            rows.append(row)
            show(row)
    print(
        f"ratio: lstm_fast / the fastest peer of the same precision in this run (medians over {args.rounds} "
        "alternating rounds); step: one call a step."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                dict(cpu=cpu_model(), tiles=tiles, peaks_gops=peak, isa=lf.isa(), threads=threads, rows=rows),
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
