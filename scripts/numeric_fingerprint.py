"""Print a fingerprint of float results that depend on the CPU's code paths (BLAS, ATen, oneDNN, threads).

Run it under different environment settings to see which of them change float results:

    python scripts/numeric_fingerprint.py                                  # native
    MKL_CBWR=COMPATIBLE OMP_NUM_THREADS=1 python scripts/numeric_fingerprint.py

Each line is `operation digest`, where the digest is a hash of the result's bytes; two runs whose
digests differ for an operation computed that operation with another summation order.
`make notebooks-portable` uses `--compare` to check that its configurations really differ.
"""

import hashlib
import json
import subprocess
import sys

import torch
import torch.nn.functional as F


def fingerprint() -> dict[str, str]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 517, generator=g)
    b = torch.randn(517, 283, generator=g)
    img = torch.randn(8, 3, 17, 17, generator=g)
    kernel = torch.randn(16, 3, 3, 3, generator=g)
    ops = {
        "sgemm (torch.mm, float32)": lambda: a @ b,
        "bf16 matmul": lambda: a.bfloat16() @ b.bfloat16(),
        "sum of 1e6 floats": lambda: torch.randn(1_000_000, generator=g).sum(),
        "softmax": lambda: torch.softmax(a * 3, dim=-1),
        "layer_norm": lambda: F.layer_norm(a, (517,)),
        "conv2d (oneDNN)": lambda: F.conv2d(img, kernel),
    }
    out = {}
    for name, op in ops.items():
        result = op().reshape(-1).contiguous()
        out[name] = hashlib.sha1(result.view(torch.uint8).numpy().tobytes()).hexdigest()[:12]
    return out


def compare(configs: list[str]) -> int:
    """Run the fingerprint under each `VAR=value VAR=value` config; print which results differ from the first."""
    import os
    runs = []
    for config in configs:
        env = dict(os.environ, **dict(kv.split("=", 1) for kv in config.split()))
        text = subprocess.run([sys.executable, __file__, "--json"], env=env, capture_output=True, text=True,
                              check=True).stdout
        runs.append(json.loads(text))
    print("float results that differ between the numeric configurations:")
    status = 0
    for i, (config, run) in enumerate(zip(configs, runs)):
        others = [j for j in range(len(runs)) if j != i]
        diff = {j: [op for op in run if run[op] != runs[j][op]] for j in others}
        print(f"  [{i + 1}] {config or 'native'}")
        for j, ops in diff.items():
            print(f"      vs [{j + 1}]: {', '.join(ops) if ops else 'NO DIFFERENCE'}")
            status |= not ops
    return status


if __name__ == "__main__":
    if sys.argv[1:2] == ["--json"]:
        print(json.dumps(fingerprint()))
    elif sys.argv[1:2] == ["--compare"]:
        sys.exit(compare(sys.argv[2:]))
    else:
        for name, digest in fingerprint().items():
            print(f"{name:28s} {digest}")
