"""Notebook 06: ranges chosen from data, and quantization-aware training.

    observers  min-max, moving average, percentile, MSE search
    calibrate  activation statistics by forward hooks
    lsq        learned step size (LSQ)
    qat        QATLinear, prepare_qat, recalibration, convert to QuantLinear

Imports core, data and inference.
"""

from . import calibrate, lsq, observers, qat

__all__ = ["calibrate", "lsq", "observers", "qat"]
