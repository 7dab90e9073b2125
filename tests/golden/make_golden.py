"""Writes tests/golden/golden_<isa>.npz: every case of cases.py run at one thread with each instruction
set this machine runs, with the inputs and parameters used (with --team: TEAM_CASES at two threads, to
team_<isa>.npz). Run once on the build before a redesign; test_golden.py then holds later builds to
these bits. Usage: python tests/golden/make_golden.py [--team]
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from cases import CASES, TEAM_CASES, inputs, run  # noqa: E402

import lstm_fast as lf  # noqa: E402
from lstm_fast import _core  # noqa: E402


def main():
    team = "--team" in sys.argv[1:]  # TEAM_CASES at two threads, to team_<isa>.npz
    lf.set_num_threads(2 if team else 1)
    folder = os.path.dirname(os.path.abspath(__file__))
    for isa in lf.supported_isas():
        _core.set_isa(isa)
        arrays = {}
        for name in TEAM_CASES if team else CASES:
            model, x, state, lengths, dy, dstate = inputs(name)
            arrays.update({f"{name}/param/{k}": v for k, v in model.state_dict().items()})
            arrays.update(
                {
                    f"{name}/in/x": x,
                    f"{name}/in/h0": state[0],
                    f"{name}/in/c0": state[1],
                    f"{name}/in/dy": dy,
                    f"{name}/in/dh_n": dstate[0],
                    f"{name}/in/dc_n": dstate[1],
                }
            )
            if lengths is not None:
                arrays[f"{name}/in/lengths"] = lengths
            arrays.update({f"{name}/out/{k}": v for k, v in run(model, x, state, lengths, dy, dstate).items()})
        np.savez_compressed(os.path.join(folder, f"{'team' if team else 'golden'}_{isa}.npz"), **arrays)
        print(isa, len(arrays), "arrays")


if __name__ == "__main__":
    main()
