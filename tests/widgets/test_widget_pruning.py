"""The pruning explorer: its numbers are the methods' own, SparseGPT beats magnitude on a layer with outliers,
and moving the controls redraws with the new setting."""

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from qlearn.methods import sparsegpt  # noqa: E402
from qlearn.widgets.pruning import pruning_explorer, pruning_sweep  # noqa: E402


def layer():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(512, 64, generator=g) @ torch.randn(64, 64, generator=g) * 0.3  # correlated features
    X[:, [5, 40]] *= 15.0
    return torch.randn(24, 64, generator=g), X[:384], X[384:]


def test_sweep_reports_each_methods_surviving_weights_and_error():
    W, X, X_test = layer()
    result = pruning_sweep(W, X, X_test, sparsity=0.5)
    W_p = sparsegpt.prune_weight(W, X, 0.5)
    assert torch.equal(result["kept"]["sparsegpt"], W_p[W_p != 0])
    Y = X_test @ W.T
    assert abs(result["error"]["sparsegpt"] - float((Y - X_test @ W_p.T).norm() / Y.norm())) < 1e-6
    assert result["error"]["sparsegpt"] < result["error"]["wanda"] < result["error"]["magnitude"]
    assert all(k.numel() == 24 * 32 for k in result["kept"].values())


def test_explorer_redraws_on_each_control():
    W, X, X_test = layer()
    explorer = pruning_explorer(W, X, X_test, title="toy")
    assert explorer.calls == 1 and explorer.last["sparsity"] == 0.5 and explorer.last["pattern"] is None
    explorer.controls["sparsity"].value = 0.8
    assert explorer.calls == 2 and explorer.last["sparsity"] == 0.8
    explorer.controls["pattern"].value = "2:4"
    assert explorer.last["pattern"] == "2:4" and explorer.last["sparsity"] == 0.5
    assert explorer.figure is not None
