"""What QAT costs per training epoch on the digits MLP, as ratios to float training.

Usage: python benchmarks/bench_qat.py [--epochs 3] [--threads 1]
Prints seconds per epoch and the ratio to fp32 for: fp32, QAT min-max (fixed scale), QAT min-max
recalibrated every step, QAT LSQ. Timings are noisy on a shared machine: compare the ratios.
"""

import argparse
import time

import torch

from qlearn.data import digits
from qlearn.training.qat import prepare_qat


def per_epoch(model, data, epochs):
    digits.train(model, data, epochs=1, seed=0)  # warm-up
    start = time.perf_counter()
    digits.train(model, data, epochs=epochs, seed=0)
    return (time.perf_counter() - start) / epochs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data, fp32 = digits.load_digits(), digits.pretrained_mlp()
    variants = {
        "fp32": lambda: digits.pretrained_mlp(),
        "QAT 2-bit min-max": lambda: prepare_qat(fp32, bits=2),
        "QAT 2-bit recalibrated every step": lambda: prepare_qat(fp32, bits=2, recalibrate_every=1),
        "QAT 2-bit LSQ": lambda: prepare_qat(fp32, bits=2, lsq=True),
    }
    base = None
    print(f"digits MLP, {args.epochs} epochs each, {args.threads} thread(s)")
    for name, make in variants.items():
        t = per_epoch(make(), data, args.epochs)
        base = base or t
        print(f"{name:>36}: {t * 1000:8.1f} ms/epoch   {t / base:5.2f}x fp32")


if __name__ == "__main__":
    main()
