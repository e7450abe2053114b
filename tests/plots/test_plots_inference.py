"""The notebook 05 plots draw what they claim: reconstructed points on their group's levels, labelled scatter."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from qlearn.plots.inference import plot_bytes_vs_fidelity, plot_group_reconstruction  # noqa: E402


def test_group_reconstruction_plot():
    torch.manual_seed(0)
    W = torch.randn(8, 128)
    fig = plot_group_reconstruction(W, bits=4, group_size=32, n=64)
    ax = fig.axes[0]
    assert "4 bits, group 32" in ax.get_title() and "dB" in ax.get_title()
    float_line, quant_line = ax.lines[-2], ax.lines[-1]
    assert torch.allclose(torch.tensor(float_line.get_ydata()), W[0, :64])
    assert len(set(quant_line.get_ydata()[:32].tolist())) <= 16  # one group: at most 16 levels
    plt.close(fig)


def test_bytes_vs_fidelity_plot():
    fig = plot_bytes_vs_fidelity([("fp32", 1.0, 1.0), ("int8", 0.3, 0.99)])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["fp32", "int8"]
    plt.close(fig)
