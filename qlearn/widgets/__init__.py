"""Interactive explorers built from core ipywidgets only (works on ipywidgets 7.7 and 8)."""

from .bit_layout import bit_layout_explorer
from .compression import sparsity_explorer, temperature_explorer
from .explorer import quantization_explorer
from .gptq import gptq_explorer
from .groups import group_explorer
from .kv_cache import kv_cache_explorer
from .lora import rank_explorer
from .observers import observer_explorer
from .outliers import threshold_explorer
from .pruning import pruning_explorer

__all__ = ["bit_layout_explorer", "quantization_explorer", "group_explorer", "observer_explorer", "sparsity_explorer",
           "temperature_explorer", "threshold_explorer", "gptq_explorer", "pruning_explorer", "kv_cache_explorer",
           "rank_explorer"]
