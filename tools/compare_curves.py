"""The learning curves of example runs side by side: one panel per group of result JSONs (examples/
write <out>/<task>_<model>.json), each run a line labelled with its model, sequences and test errors.

    python tools/compare_curves.py out.png a_fp32.json a_bf16.json :: b_fp32.json b_bf16.json
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("runs", nargs="+", help="result JSONs; '::' starts the next panel")
    parser.add_argument("--titles", default="", help="comma-separated panel titles (default: the task)")
    args = parser.parse_args()
    panels, current = [], []
    for path in args.runs:
        if path == "::":
            panels.append(current)
            current = []
        else:
            current.append(path)
    panels.append(current)
    titles = args.titles.split(",") if args.titles else []
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for k, (paths, ax) in enumerate(zip(panels, axes[0])):
        for path, style in zip(paths, ["-", "--", ":", "-."]):
            with open(path) as f:
                run = json.load(f)
            sequences, loss = [c[0] for c in run["curve"]], [c[1] for c in run["curve"]]
            wrong = "" if run.get("test_wrong") is None else f", {run['test_wrong']} of {run['test_size']} wrong"
            reached = f"{run['sequences']:,} sequences" if run["solved"] else f"not solved in {run['sequences']:,}"
            ax.semilogy(sequences, loss, style, label=f"{run['model']}: {reached}{wrong}")
        ax.set_title(titles[k] if k < len(titles) else run["task"])
        ax.set_xlabel("training sequences")
        ax.set_ylabel("training loss (moving average)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
