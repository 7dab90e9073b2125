"""Data-parallel training of lstm_fast.torch.LSTM with torch.distributed (DistributedDataParallel, gloo).

The model (an LSTM and a linear readout) learns the 1997 paper's adding problem. Every step draws one
global batch from a seed shared by all processes; process r trains on its slice of it, and DDP averages
the gradients, so N processes take exactly the steps one process takes on the whole batch.

On one machine, two processes started by this script:

    python examples/ddp_train.py --world-size 2 --out ddp.safetensors

With torchrun (one or several machines; see docs/distributed.md):

    torchrun --nproc-per-node 2 examples/ddp_train.py --out ddp.safetensors

``--world-size 1`` trains one process, without DDP, on the same global batches: the reference the
parallel run must equal (tests/test_distributed.py checks it).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel

import lstm_fast.torch as lft
from lstm_fast import tasks


class AddingModel(torch.nn.Module):
    """LSTM over (value, marker) pairs, then a linear readout of the last step's output."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lstm = lft.LSTM(2, hidden, forget_bias=1.0, dtype=torch.float64)
        self.readout = torch.nn.Linear(hidden, 1, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (T, B, 2) -> (B, 1)
        y, _ = self.lstm(x)
        return self.readout(y[-1])


def train(rank: int, world_size: int, args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)  # the same initial parameters in every process
    model = AddingModel(args.hidden)
    if world_size > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        model = DistributedDataParallel(model)  # broadcasts rank 0's parameters, then averages gradients
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    shard = args.batch // world_size
    for step in range(args.steps):
        x, target = tasks.adding_problem(args.seq_len, args.batch, rng=args.seed * 100_003 + step)
        x = torch.from_numpy(x[:, rank * shard : (rank + 1) * shard].astype(np.float64))
        target = torch.from_numpy(target[rank * shard : (rank + 1) * shard].astype(np.float64))
        loss = torch.nn.functional.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if rank == 0 and (step % 10 == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {loss.item():.5f} (process 0's shard)", flush=True)
    if rank == 0 and args.out:
        module = model.module if world_size > 1 else model
        save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, args.out)
    if world_size > 1:
        # Every process waits here until rank 0 has saved, then all leave together.
        dist.barrier()
        del model  # DDP's reducer holds the process group
        dist.destroy_process_group()
        # torch 2.13's gloo can abort a process while the interpreter shuts down ("terminate called
        # without an active exception"; pytorch/pytorch#190489, #179291): seen here in about 1 run of
        # 20, with torch.nn.LSTM in lstm_fast's place too. The work is saved and the group destroyed,
        # so the process leaves without the interpreter's teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _spawned(rank: int, world_size: int, args: argparse.Namespace) -> None:
    train(rank, world_size, args)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--world-size", type=int, default=2, help="processes to start on this machine (ignored under torchrun)"
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32, help="global batch, split evenly across processes")
    parser.add_argument("--seq-len", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="where process 0 writes the trained parameters (safetensors)")
    args = parser.parse_args(argv)

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # started by torchrun
        world_size = int(os.environ["WORLD_SIZE"])
        if args.batch % world_size:
            parser.error(f"--batch ({args.batch}) must divide evenly across {world_size} processes")
        train(int(os.environ["RANK"]), world_size, args)
        return
    if args.world_size < 1 or args.batch % args.world_size:
        parser.error(f"--batch ({args.batch}) must divide evenly across --world-size ({args.world_size})")
    if args.world_size == 1:
        train(0, 1, args)
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    torch.multiprocessing.spawn(_spawned, args=(args.world_size, args), nprocs=args.world_size, join=True)


if __name__ == "__main__":
    main()
