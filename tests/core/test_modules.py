"""core.modules.replace_module: the one way qlearn swaps a layer, returning the old one."""

import pytest
from torch import nn

from qlearn.core.modules import replace_module


def test_replaces_nested_and_top_level_modules_and_returns_the_old_one():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 2), nn.ReLU()))
    inner = model[1][0]
    new = nn.Linear(4, 2, bias=False)
    assert replace_module(model, "1.0", new) is inner and model[1][0] is new
    first = model[0]
    assert replace_module(model, "0", nn.Identity()) is first and isinstance(model[0], nn.Identity)


@pytest.mark.parametrize("name,error", [("2", ValueError), ("1.5", ValueError), ("", ValueError), (3, ValueError)])
def test_unknown_names_are_refused(name, error):
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 2)))
    with pytest.raises(error):
        replace_module(model, name, nn.Identity())


def test_non_modules_are_refused():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        replace_module(model, "0", "layer")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        replace_module(None, "0", nn.Identity())
