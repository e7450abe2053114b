"""Train the float MLPs that notebooks 06 and 07 start from and save them as safetensors.

Usage: python scripts/train_digits_baseline.py   (about 10-30 s on a laptop CPU)
Writes qlearn/data/digits_mlp.safetensors (hidden 128, notebook 06's baseline) and
qlearn/data/digits_mlp_h256.safetensors (hidden 256, notebook 07's teacher): the state_dict of
`qlearn.data.digits.mlp(hidden, seed=0)` after
`qlearn.data.digits.train(model, load_digits(), epochs=30, lr=1e-3, seed=0)`, read back by
`qlearn.data.digits.pretrained_mlp(hidden)`. Another CPU trains to slightly different weights (float
sums in another order), which is why the trained weights ship instead of being retrained in the notebooks.
"""

from pathlib import Path

import torch
from safetensors.torch import save_file

from qlearn.data import digits

DATA = Path(__file__).resolve().parent.parent / "qlearn" / "data"


def main(hidden_sizes=(128, 256)):
    torch.set_num_threads(1)  # tiny models: one thread is fastest
    data = digits.load_digits()
    for hidden in hidden_sizes:
        model = digits.mlp(hidden=hidden, seed=0)
        digits.train(model, data, epochs=30, lr=1e-3, seed=0)
        acc = digits.accuracy(model, data)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        out = DATA / digits.PRETRAINED[hidden]
        save_file(state, str(out), metadata={"hidden": str(hidden), "epochs": "30", "lr": "1e-3", "seed": "0",
                                             "test_accuracy": f"{acc:.4f}"})
        print(f"{out}: test accuracy {acc:.2f} %")


if __name__ == "__main__":
    main()
