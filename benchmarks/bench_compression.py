"""How much faster and smaller each compression step makes the digits MLP: prints ratios, not absolute times.

Stages: the 64 -> 256 -> 256 -> 10 teacher; 90 % unstructured zeros (dense storage); 87.5 % of the
neurons removed (structured); that model with int8 and int4 QuantLinear weights. Latency is the median
of repeated forward passes over the test set (one thread, after warm-up, stages taking turns). Run it on a
quiet machine:

    python benchmarks/bench_compression.py [--repeats 200] [--threads 1]
"""

import argparse
import copy

import torch

import qlearn
from qlearn.compression.prune import prune_model, remove_masks
from qlearn.compression.structured import prune_units
from qlearn.data import digits
from qlearn.teaching.timing import median_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = digits.load_digits()
    teacher = digits.mlp(hidden=256, seed=0)  # untrained weights time the same as trained ones
    stages = {"teacher float32": teacher}
    # A second copy of the same model: its ratio (ideally 1.00x) shows how noisy this machine is right now.
    stages["teacher copy (control)"] = copy.deepcopy(teacher)
    zeros = copy.deepcopy(teacher)
    prune_model(zeros, 0.9, scope="global")
    stages["90% zeros (dense)"] = remove_masks(zeros)
    small = prune_units(teacher, [("0", "2"), ("2", "4")], 0.875)
    stages["87.5% neurons removed"] = small
    for bits, gran in ((8, qlearn.PerChannel()), (4, qlearn.PerGroup(16))):
        q = copy.deepcopy(small)
        qlearn.quantize_model(q, bits=bits, granularity=gran)
        stages[f"  + int{bits} weights"] = q
    times = median_ms(stages, data.X_test, rounds=args.repeats, budget_s=60.0)  # interleaved medians
    base_t, base_b = times["teacher float32"], qlearn.model_size_bytes(teacher)
    print(f"{'stage':<24} {'bytes ratio':>11} {'speed-up':>9}   (vs the teacher; {args.threads} thread(s), "
          f"{len(data.X_test)} images per pass)")
    for name, model in stages.items():
        print(f"{name:<24} {qlearn.model_size_bytes(model) / base_b:>11.3f} {base_t / times[name]:>8.2f}x")

if __name__ == "__main__":
    main()
