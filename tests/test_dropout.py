"""The CPU's cheap dropout masks and the written-out attention that uses them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fdt.models.dropout import Dropout, dropout, keep_scale
from fdt.models.transformer import (
    CausalSelfAttention,
    DecisionTransformer,
    model_config_for,
)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_masks_drop_p_and_scale_the_rest(p: float) -> None:
    torch.manual_seed(0)
    mask = keep_scale((1000, 1000), p)
    assert mask.shape == (1000, 1000) and mask.dtype == torch.float32
    assert mask.unique().tolist() == [0.0, pytest.approx(1 / (1 - p))]
    dropped = float((mask == 0).float().mean())
    assert abs(dropped - p) < 0.002  # 1e6 draws: 5 standard deviations at most
    # No pattern across positions: each column drops p of its rows too.
    assert float((mask == 0).float().mean(0).std()) < 0.03


def test_masks_follow_torchs_seed() -> None:
    torch.manual_seed(7)
    first = keep_scale((64, 90), 0.1)
    second = keep_scale((64, 90), 0.1)
    torch.manual_seed(7)
    assert torch.equal(keep_scale((64, 90), 0.1), first)
    assert not torch.equal(first, second)


def test_dropout_passes_gradients_through_the_kept_elements() -> None:
    torch.manual_seed(1)
    x = torch.ones(300, 40, requires_grad=True)
    y = dropout(x, 0.2, training=True)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # x is ones: the gradient is the mask itself
    assert torch.equal(dropout(x, 0.2, training=False), x)
    module = Dropout(0.2).eval()
    assert torch.equal(module(x), x) and module.state_dict() == {}
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(x, 1.0, training=True)


def test_written_out_attention_is_the_fused_one() -> None:
    torch.manual_seed(2)
    attention = CausalSelfAttention(model_config_for("dt", num_actions=4, context_length=5,
                                                     max_timestep=10, n_head=4, n_embd=32))
    q, k, v = torch.randn(3, 3, 4, 15, 8).unbind(0)
    attention.attn_dropout = 0.0  # dropout off: the two paths must agree
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(attention._attention_with_dropout(q, k, v), fused, atol=1e-6)


def test_attention_dropout_drops_weights_in_training_only() -> None:
    torch.manual_seed(3)
    attention = CausalSelfAttention(model_config_for("dt", num_actions=4, context_length=5,
                                                     max_timestep=10, n_head=4, n_embd=32))
    x = torch.randn(2, 15, 32)
    attention.eval()
    evaluated = attention(x)
    attention.train()
    trained = attention(x)
    assert trained.shape == evaluated.shape == (2, 15, 32)
    assert not torch.allclose(trained, evaluated)
    attention.attn_dropout, attention.resid_drop.p = 0.0, 0.0
    assert torch.allclose(attention(x), evaluated, atol=1e-6)


def test_compiled_model_keeps_one_graph() -> None:
    """Under torch.compile the masks are torch's own: no numpy call breaks the graph."""
    torch.manual_seed(4)
    model = DecisionTransformer(model_config_for("dt", num_actions=4, context_length=3,
                                                 max_timestep=10, n_layer=1, n_head=2,
                                                 n_embd=16)).train()
    tokens, actions = torch.randn(2, 3, 16), torch.randint(0, 4, (2, 3))
    explained = torch._dynamo.explain(model.forward_tokens)(tokens, actions, torch.randn(2, 3),
                                                           torch.zeros(2, dtype=torch.long))
    assert explained.graph_break_count == 0
