"""The methods `quantize_model` can run, and the protocol a method follows to plug in.

    QuantMethod(name="gptq", quantize_layer=fn, needs_calibration=True, sequential=True)
    fn(name, linear, X, bits, granularity, symmetric, **options) -> nn.Module    # the replacement layer

X is (tokens, in) float32, the inputs captured for that layer (None for a data-free method). A sequential
method gets X from the model whose earlier blocks are already quantized (GPTQ); the others get it from the
float model. `prepare(model, batches, layer_names, bits, granularity, symmetric, **options)` runs once before
any layer (AWQ folds its scales there) and may return a state that reaches every `quantize_layer` call as
`state=`; `finish(model, state, **options)` runs once after the swap and returns per-layer notes for the report.

The options a method takes are the keyword parameters of its functions (beyond the fixed ones), so an
option no function takes fails before anything runs. `activations`, `activation_granularity` and `kernel`
reach only a method whose `quantize_layer` takes them. "rtn" lives here; `import qlearn.methods` registers the others.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..core.granularity import Granularity, PerChannel, PerGroup, PerTensor, PerToken
from ..core.validation import check_bits, check_bool, check_inputs, check_module
from .linear import QuantLinear

__all__ = ["METHODS", "PASSED_BY_DRIVER", "POSITIONAL", "QuantMethod", "get_method", "register_method"]

POSITIONAL = {"quantize_layer": 6, "prepare": 6, "finish": 2}  # see the module docstring
PASSED_BY_DRIVER = {"state", "activations", "activation_granularity", "kernel"}


def _keywords(fn, fn_name: str) -> set[str]:
    """The option names `fn` takes: its keyword parameters after the fixed positional ones."""
    if fn is None:
        return set()
    params = list(inspect.signature(fn).parameters.values())[POSITIONAL[fn_name]:]
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - PASSED_BY_DRIVER


@dataclass(frozen=True)
class QuantMethod:
    """A weight-quantization method for `quantize_model` (see the module docstring for the protocol).

    bits / symmetric / granularities: what the method supports. The default of `symmetric` (None) follows the
    ecosystem: below 8 bits a zero point wherever the method allows one (torchao's int4, optimum-quanto's qint4,
    GPTQ and AWQ all use one there), at 8 bits the first `symmetric` value.
    """

    name: str
    quantize_layer: Callable[..., nn.Module]
    needs_calibration: bool = False
    sequential: bool = False
    prepare: Callable | None = None
    finish: Callable | None = None
    bits: tuple[int, ...] = tuple(range(2, 9))
    symmetric: tuple[bool, ...] = (True, False)
    granularities: tuple[type, ...] = (PerTensor, PerChannel, PerGroup)
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a method name must be a non-empty string, got {self.name!r}")
        for fn_name in ("quantize_layer", "prepare", "finish"):
            fn = getattr(self, fn_name)
            if (fn is not None or fn_name == "quantize_layer") and not callable(fn):
                raise TypeError(f"{fn_name} must be callable, got {type(fn).__name__}")
        check_bool(self.needs_calibration, "needs_calibration")
        check_bool(self.sequential, "sequential")
        if not isinstance(self.bits, tuple) or not self.bits:
            raise TypeError(f"bits must be a non-empty tuple of ints such as (4, 8), got {self.bits!r}")
        for b in self.bits:
            check_bits(b, "each of bits")
        if not isinstance(self.symmetric, tuple) or not self.symmetric:
            raise TypeError(f"symmetric must be a non-empty tuple of bools such as (True, False), got "
                            f"{self.symmetric!r}")
        for value in self.symmetric:
            check_bool(value, "each of symmetric")
        if not isinstance(self.granularities, tuple) or not self.granularities or not all(
                isinstance(g, type) and issubclass(g, Granularity) for g in self.granularities):
            raise TypeError(f"granularities must be a non-empty tuple of Granularity classes such as (PerChannel, "
                            f"PerGroup), got {self.granularities!r}")
        if not isinstance(self.description, str):
            raise TypeError(f"description must be a string, got {type(self.description).__name__}")
        if self.sequential and not self.needs_calibration:
            raise ValueError("a sequential method reads calibration inputs: set needs_calibration=True")

    @property
    def options(self) -> frozenset[str]:
        """The keyword options this method takes (from the signatures of its functions)."""
        return frozenset().union(*(_keywords(getattr(self, f), f) for f in POSITIONAL))

    def takes(self, fn_name: str, option: str) -> bool:
        """Whether the method's `fn_name` function takes the keyword `option` (an option, state, activations,
        kernel)."""
        fn = getattr(self, fn_name)
        if fn is None:
            return False
        return option in _keywords(fn, fn_name) or (option in PASSED_BY_DRIVER
                                                    and option in inspect.signature(fn).parameters)

    def default_symmetric(self, bits: int) -> bool:
        """Asymmetric below 8 bits when the method allows it, else the first value of `symmetric`."""
        return False if bits < 8 and False in self.symmetric else self.symmetric[0]

    def check(self, bits, granularity, symmetric, options: dict) -> bool:
        """Raise for bits, a granularity type, a symmetric value or an option this method does not take.

        Returns the symmetric value to use (the method's default when `symmetric` is None).
        """
        check_bits(bits)
        if bits not in self.bits:
            raise ValueError(f"method {self.name!r} takes bits in {list(self.bits)}, got {bits}")
        if not isinstance(granularity, Granularity) or not isinstance(granularity, self.granularities):
            allowed = ", ".join(f"{g.__name__}()" for g in self.granularities)
            raise TypeError(f"method {self.name!r} takes granularity {allowed}, got {granularity!r}")
        if symmetric is None:
            symmetric = self.default_symmetric(bits)
        if not isinstance(symmetric, bool) or symmetric not in self.symmetric:
            raise ValueError(f"method {self.name!r} takes symmetric in {list(self.symmetric)} (or None for its "
                             f"default, {self.default_symmetric(bits)} at {bits} bits), got {symmetric!r}")
        unknown = sorted(set(options) - self.options)
        if unknown:
            raise TypeError(f"method {self.name!r} takes no option {unknown}; its options: {sorted(self.options)}")
        return symmetric

    def check_layer(self, linear, X, bits, granularity, symmetric) -> None:
        """Raise for arguments of a direct `quantize_layer` call that `quantize_model` would have refused."""
        check_module(linear, "linear")
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        check_inputs(X, linear.weight, self.needs_calibration, self.name)
        check_bool(symmetric, "symmetric")
        self.check(bits, granularity, symmetric, {})


METHODS: dict[str, QuantMethod] = {}


def register_method(method: QuantMethod, replace: bool = False) -> QuantMethod:
    """Add `method` under `method.name` (a second registration of a name needs replace=True)."""
    if not isinstance(method, QuantMethod):
        raise TypeError(f"register_method needs a QuantMethod(name=..., quantize_layer=...), "
                        f"got {type(method).__name__}")
    check_bool(replace, "replace")
    if method.name in METHODS and not replace and METHODS[method.name] is not method:
        raise ValueError(f"a method named {method.name!r} is already registered; pass replace=True to replace it")
    METHODS[method.name] = method
    return method


def get_method(name) -> QuantMethod:
    """The registered method called `name`; an unknown name lists the known ones."""
    if isinstance(name, QuantMethod):
        return name
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {sorted(METHODS)}"
                         + ("" if len(METHODS) > 1 else " (import qlearn.methods to register the others)"))
    return METHODS[name]


def _rtn_layer(name, linear, X, bits, granularity, symmetric, activations=None, kernel="auto",
               activation_granularity=PerToken()) -> QuantLinear:
    """Round to nearest with min-max scales (QuantLinear.from_linear): the baseline."""
    return QuantLinear.from_linear(linear, bits=bits, granularity=granularity, symmetric=symmetric,
                                   activations=activations, kernel=kernel,
                                   activation_granularity=activation_granularity)


register_method(QuantMethod("rtn", _rtn_layer, description="min-max round to nearest (QuantLinear)"))
