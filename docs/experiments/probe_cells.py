"""What the probes over repaired grid cells share: their command-line arguments."""

from __future__ import annotations

import argparse


def add_cell_arguments(p: argparse.ArgumentParser) -> None:
    """Grid work folders, the dataset, the split to evaluate on and the repaired column to read."""
    p.add_argument("folders", nargs="+", help="grid work folders with train_*.safetensors and defend_*.safetensors")
    p.add_argument("--data", required=True)
    p.add_argument("--vocab", default="asc10")
    p.add_argument("--split", default="validation", choices=("validation", "test"))
    p.add_argument("--defense", default="gnft@recommended", help="the repaired column: defend_<model>_<attack>_<this>")
