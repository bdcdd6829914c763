"""The fast CPU dropout drops at rate p, rescales the rest, and is the identity in eval."""

import pytest
import torch

from handbook.models.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_drops_each_element_with_probability_p_and_rescales_the_rest(p: float) -> None:
    torch.manual_seed(0)
    y = dropout(torch.ones(1000, 1000), p)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - p) < 3e-3
    # each of the four elements one 64-bit draw serves drops at the same rate
    for lane in range(4):
        assert abs(dropped.view(-1)[lane::4].float().mean().item() - p) < 5e-3
    torch.testing.assert_close(y[~dropped], torch.full_like(y[~dropped], 1 / (1 - p)))


def test_gradient_flows_only_through_kept_elements() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 33, requires_grad=True)  # not a multiple of 4 elements
    y = dropout(x, 0.3)
    y.sum().backward()
    kept = y != 0
    torch.testing.assert_close(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.7))
    assert (x.grad[~kept] == 0).all()


def test_seeded_and_identity_in_eval() -> None:
    layer = Dropout(0.5)
    x = torch.randn(8, 16)
    torch.manual_seed(1)
    first = layer(x)
    torch.manual_seed(1)
    torch.testing.assert_close(layer(x), first)
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(dropout(x, 0.0), x)


def test_rejects_a_probability_outside_0_1() -> None:
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(torch.ones(3), -0.1)
