"""Pure plotting functions: each takes tensors or numbers and returns a matplotlib Figure."""

from .channels import channel_ranges
from .compression import metric_curves, soft_targets, weight_histogram
from .errors import error_histogram, error_histograms
from .formats import format_error_figure, grid_use_histogram
from .heatmaps import quantization_heatmaps
from .inference import plot_bytes_vs_fidelity, plot_group_reconstruction
from .kv_cache import kv_channel_plot, kv_error_plot
from .lora import loss_curves, low_rank_update, memory_bars, rank_sweep
from .outliers import activation_heatmap, alpha_sweep_plot, channel_max_plot, migration_plot, threshold_plot
from .qat import accuracy_vs_bits_plot, observer_ranges_plot, ste_plot
from .sweeps import sqnr_vs_bits, sqnr_vs_effective_bits
from .weight_methods import awq_plot, hqq_error_plot, nf4_codebook_plot, obs_plot, pareto_plot

__all__ = [
    "error_histogram", "error_histograms", "quantization_heatmaps", "sqnr_vs_bits", "channel_ranges",
    "sqnr_vs_effective_bits",
    "plot_group_reconstruction", "plot_bytes_vs_fidelity",
    "ste_plot", "observer_ranges_plot", "accuracy_vs_bits_plot",
    "weight_histogram", "metric_curves", "soft_targets",
    "activation_heatmap", "channel_max_plot", "migration_plot", "alpha_sweep_plot", "threshold_plot",
    "nf4_codebook_plot", "hqq_error_plot", "obs_plot", "awq_plot", "pareto_plot",
    "format_error_figure", "grid_use_histogram",
    "kv_channel_plot", "kv_error_plot",
    "loss_curves", "low_rank_update", "memory_bars", "rank_sweep",
]
