"""Train the float MLP baseline that the QAT notebook starts from and save it as safetensors.

Usage: python scripts/train_digits_baseline.py   (about 10-30 s on a laptop CPU)
Writes qlearn/data/digits_mlp.safetensors: the state_dict of `qlearn.digits.mlp(hidden=128, seed=0)`
after `qlearn.digits.train(model, load_digits(), epochs=30, lr=1e-3, seed=0)`, read back by
`qlearn.digits.pretrained_mlp()`.
"""

from pathlib import Path

import torch
from safetensors.torch import save_file

from qlearn import digits

OUT = Path(__file__).resolve().parent.parent / "qlearn" / "data" / "digits_mlp.safetensors"


def main():
    torch.set_num_threads(1)  # a tiny model: one thread is fastest and the most reproducible
    data = digits.load_digits()
    model = digits.mlp(hidden=128, seed=0)
    digits.train(model, data, epochs=30, lr=1e-3, seed=0)
    acc = digits.accuracy(model, data)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(OUT), metadata={"hidden": "128", "epochs": "30", "lr": "1e-3", "seed": "0",
                                         "test_accuracy": f"{acc:.4f}"})
    print(f"{OUT}: test accuracy {acc:.2f} %")


if __name__ == "__main__":
    main()
