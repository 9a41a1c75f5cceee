"""C2AM model and losses against hand-computed small cases (docs/method.md §3)."""

import math

import pytest
import torch

from c2am.losses import (
    SIM_MAX,
    SIM_MIN,
    c2am_loss,
    negative_loss,
    positive_loss,
    rank_weights,
    row_ranks,
    similarity_matrix,
)
from c2am.models.c2am_net import C2AM, border_mean, decide_inverted, pool_fg_bg

torch.set_num_threads(1)

R2 = 1 / math.sqrt(2)
# v1 = (1, 0), v2 = (0, 1), v3 = (1, 1): cos(v1, v2) = 0 (clamped up), cos(v1, v3) = cos(v2, v3) = 1/sqrt(2).
V3 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def test_similarity_matrix_is_clamped_cosine():
    s = similarity_matrix(V3, V3)
    expected = torch.tensor([[SIM_MAX, SIM_MIN, R2], [SIM_MIN, SIM_MAX, R2], [R2, R2, SIM_MAX]])
    assert torch.allclose(s, expected, atol=1e-6)
    # Negative cosines clamp to the floor too.
    assert similarity_matrix(torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]])).item() == pytest.approx(SIM_MIN)


def test_row_ranks_self_first_then_descending_with_stable_ties():
    # row 0: self, v3 (0.707), v2 (clamped 5e-4); row 2: self, then v1 and v2 tie at 0.707 -> column order.
    expected = torch.tensor([[0, 2, 1], [2, 0, 1], [1, 2, 0]])
    assert torch.equal(row_ranks(similarity_matrix(V3, V3)), expected)
    # Self stays rank 0 even when another pair also sits at the clamp ceiling.
    same = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert torch.equal(row_ranks(similarity_matrix(same, same)), torch.tensor([[0, 1], [1, 0]]))


def test_positive_loss_hand_computed_n3():
    alpha = 0.25
    ea, e1, em = math.exp(alpha), 1.0, math.exp(-alpha)
    nl = lambda s: -math.log(s)
    rows = [
        ea * nl(SIM_MAX) + em * nl(SIM_MIN) + e1 * nl(R2),  # v1: self, v2 rank 2, v3 rank 1
        em * nl(SIM_MIN) + ea * nl(SIM_MAX) + e1 * nl(R2),  # v2: v1 rank 2, self, v3 rank 1
        e1 * nl(R2) + em * nl(R2) + ea * nl(SIM_MAX),  # v3: v1 rank 1, v2 rank 2 (tie), self
    ]
    expected = sum(rows) / 9
    assert positive_loss(V3, alpha).item() == pytest.approx(expected, rel=1e-5)
    # alpha = 0: plain mean of -log s over all 9 pairs.
    plain = (3 * nl(SIM_MAX) + 2 * nl(SIM_MIN) + 4 * nl(R2)) / 9
    assert positive_loss(V3, 0.0).item() == pytest.approx(plain, rel=1e-5)


def test_negative_loss_hand_computed_n3():
    v_b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    v_f = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    # s(b_i, f_j): row b1=(1,0): [5e-4, 1/sqrt2, 0.9995]; b2=(0,1): [0.9995, 1/sqrt2, 5e-4]; b3 = b1.
    nl = lambda s: -math.log(1 - s)
    row13 = nl(SIM_MIN) + nl(R2) + nl(SIM_MAX)
    expected = (2 * row13 + row13) / 9  # row 2 holds the same three values
    assert negative_loss(v_b, v_f).item() == pytest.approx(expected, rel=1e-5)


def test_rank_weights_values_and_no_gradient():
    v = V3.clone().requires_grad_(True)
    sim = similarity_matrix(v, v)
    w = rank_weights(sim, 0.25)
    assert not w.requires_grad and w.grad_fn is None
    assert w[0].tolist() == pytest.approx([math.exp(0.25), math.exp(-0.25), 1.0])


# v1 = (1, 0), v2 = (3, 4), v3 = (0, 1); unit vectors u1 = (1, 0), u2 = (0.6, 0.8), u3 = (0, 1).
# cos: c12 = 0.6, c13 = 0, c23 = 0.8, self 1. Clamped to [5e-4, 0.9995]:
#   s = [[0.9995, 0.6,    5e-4  ],
#        [0.6,    0.9995, 0.8   ],
#        [5e-4,   0.8,    0.9995]]
# 0-based ranks, descending per row, self forced to 0: row 1 [0, 1, 2], row 2 [2, 0, 1], row 3 [2, 1, 0].
# w = exp(-alpha (r - 1)): rank 0 -> e^a, rank 1 -> 1, rank 2 -> e^-a:
#   w = [[e^a, 1, e^-a], [e^-a, e^a, 1], [e^-a, 1, e^a]]
V_HAND = [[1.0, 0.0], [3.0, 4.0], [0.0, 1.0]]


def test_positive_loss_value_and_gradient_hand_computed_n3():
    alpha = 0.25
    ea, em = math.exp(alpha), math.exp(-alpha)  # 1.2840254, 0.7788008
    # L = (1/9) sum_ij w_ij (-log s_ij), grouped by similarity value:
    #   0.9995: 3 self pairs, w = e^a          -> 3 * 1.2840254 * 0.000500125 = 0.0019265
    #   0.6:    (1,2) w = 1, (2,1) w = e^-a     -> 1.7788008 * 0.5108256 = 0.9086570
    #   5e-4:   (1,3), (3,1), both w = e^-a     -> 2 * 0.7788008 * 7.6009025 = 11.8391776
    #   0.8:    (2,3), (3,2), both w = 1        -> 2 * 0.2231436 = 0.4462871
    #   sum 13.1960482, / 9 = 1.4662276
    expected = (3 * ea * -math.log(SIM_MAX) + (1 + em) * -math.log(0.6) + 2 * em * -math.log(SIM_MIN)
                + 2 * -math.log(0.8)) / 9
    assert expected == pytest.approx(1.4662276, abs=1e-6)
    v = torch.tensor(V_HAND, requires_grad=True)
    loss = positive_loss(v, alpha)
    assert loss.item() == pytest.approx(expected, rel=1e-6)

    # Gradient, with the weights as constants: d cos(a, b) / da = (b/|b| - cos(a, b) a/|a|) / |a|.
    # Self pairs (cos = 1, and clamped) and the floor-clamped pair (1,3) contribute nothing.
    #   dc12/dv1 = ((0.6, 0.8) - 0.6 (1, 0)) / 1 = (0, 0.8)
    #   dc12/dv2 = ((1, 0) - 0.6 (0.6, 0.8)) / 5 = (0.128, -0.096)
    #   dc23/dv2 = ((0, 1) - 0.8 (0.6, 0.8)) / 5 = (-0.096, 0.072)
    #   dc23/dv3 = ((0.6, 0.8) - 0.8 (0, 1)) / 1 = (0.6, 0)
    # dL/ds_ij = -w_ij / (9 s_ij); pair 1-2 carries w = 1 + e^-a in total, pair 2-3 carries w = 2:
    #   dL/dv1 = -(1 + e^-a) / (9 * 0.6) * (0, 0.8)                   = (0, -(4/27)(1 + e^-a)) = (0, -0.2635261)
    #   dL/dv2 = -(1 + e^-a) / (9 * 0.6) * (0.128, -0.096)
    #            - 2 / (9 * 0.8) * (-0.096, 0.072)                   = (-0.0154976, 0.0116231)
    #   dL/dv3 = -2 / (9 * 0.8) * (0.6, 0)                            = (-1/6, 0)
    # (Each row is orthogonal to its v: the loss does not change with a vector's length.)
    k = 1 + em
    expected_grad = torch.tensor([
        [0.0, -4 / 27 * k],
        [(-16 / 75 * k + 0.24) / 9, (0.16 * k - 0.18) / 9],
        [-1 / 6, 0.0],
    ])
    assert expected_grad[0, 1].item() == pytest.approx(-0.2635261, abs=1e-6)
    assert expected_grad[1].tolist() == pytest.approx([-0.0154976, 0.0116231], abs=1e-6)
    loss.backward()
    assert torch.allclose(v.grad, expected_grad, atol=1e-6), v.grad


def test_c2am_loss_hand_computed_n2():
    alpha = 0.25
    # v_f: (1, 0), (3, 4) -> cos 0.6;  v_b: (0, 1), (4, 3) -> cos 0.6 too (unit (0, 1), (0.8, 0.6)).
    v_f = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    v_b = torch.tensor([[0.0, 1.0], [4.0, 3.0]])
    # L_pos, N = 2: ranks [[0, 1], [1, 0]] -> w = [[e^a, 1], [1, e^a]];
    #   (2 e^a (-log 0.9995) + 2 (-log 0.6)) / 4 = (0.0012843 + 1.0216512) / 4 = 0.2557339, for v_f and for v_b.
    pos = (2 * math.exp(alpha) * -math.log(SIM_MAX) + 2 * -math.log(0.6)) / 4
    assert pos == pytest.approx(0.2557339, abs=1e-6)
    # L_neg: s(b_i, f_j) = [[(0,1).(1,0), (0,1).(0.6,0.8)], [(0.8,0.6).(1,0), (0.8,0.6).(0.6,0.8)]]
    #                    = [[0 -> 5e-4, 0.8], [0.8, 0.96]]
    #   (-log(1 - 5e-4) - 2 log 0.2 - log 0.04) / 4 = (0.0005001 + 3.2188758 + 3.2188758) / 4 = 1.6095629
    neg = (-math.log(1 - SIM_MIN) - 2 * math.log(0.2) - math.log(0.04)) / 4
    assert neg == pytest.approx(1.6095629, abs=1e-6)
    total, parts = c2am_loss(v_f, v_b, alpha)
    assert parts["pos_fg"].item() == pytest.approx(pos, rel=1e-6)
    assert parts["pos_bg"].item() == pytest.approx(pos, rel=1e-6)
    assert parts["neg"].item() == pytest.approx(neg, rel=1e-6)
    assert total.item() == pytest.approx(2 * pos + neg, rel=1e-6)  # 2.1210307


def test_loss_symmetric_under_p_to_one_minus_p():
    torch.manual_seed(1)
    z = torch.rand(4, 6, 3, 3)
    p = torch.rand(4, 1, 3, 3)
    v_f, v_b = pool_fg_bg(z, p)
    v_f2, v_b2 = pool_fg_bg(z, 1 - p)
    assert torch.allclose(v_f2, v_b) and torch.allclose(v_b2, v_f)
    total, parts = c2am_loss(v_f, v_b, 0.25)
    total2, parts2 = c2am_loss(v_f2, v_b2, 0.25)
    assert total.item() == pytest.approx(total2.item(), rel=1e-6)
    assert parts["pos_fg"].item() == pytest.approx(parts2["pos_bg"].item(), rel=1e-6)
    assert total.item() == pytest.approx(sum(v.item() for v in parts.values()), rel=1e-6)


def test_pooling_hand_values():
    z = torch.tensor([[[[2.0, 4.0]], [[1.0, 1.0]]]])  # 1 x 2 x 1 x 2
    p = torch.tensor([[[[1.0, 0.5]]]])
    v_f, v_b = pool_fg_bg(z, p)
    assert v_f.tolist() == [[(2 + 2) / 2, (1 + 0.5) / 2]]
    assert v_b.tolist() == [[(0 + 2) / 2, (0 + 0.5) / 2]]


class FakeTrunk(torch.nn.Module):
    """Returns fixed features: f3 at 2 channels, f4 at 1 channel, stride 4 (for shape checks only)."""

    channels = (2, 1)

    def forward(self, x):
        f = torch.nn.functional.avg_pool2d(x, 4)
        return f[:, :2], f[:, 2:]


def test_c2am_forward_shapes_and_head():
    model = C2AM(FakeTrunk())
    conv, bn = model.head
    assert conv.bias is None and conv.kernel_size == (3, 3) and conv.in_channels == 3
    assert isinstance(bn, torch.nn.BatchNorm2d) and bn.num_features == 1
    v_f, v_b, p = model(torch.rand(2, 3, 16, 16))
    assert v_f.shape == v_b.shape == (2, 3) and p.shape == (2, 1, 4, 4)
    assert 0 <= p.min() and p.max() <= 1
    model.eval()
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(model.foreground_map(x, True), 1 - model.foreground_map(x, False))
    assert {id(q) for q in model.head_parameters()} == {id(conv.weight), id(bn.weight), id(bn.bias)}


def test_polarity_rule_border_bright_map_is_inverted():
    border_bright = torch.ones(2, 1, 20, 20)
    border_bright[:, :, 4:16, 4:16] = 0.0  # dark centre, bright frame
    centre_bright = 1 - border_bright
    # Border strip of width round(0.1 * 20) = 2 lies entirely in the bright frame.
    assert border_mean(border_bright, 0.1) == pytest.approx(1.0)
    assert border_mean(centre_bright, 0.1) == pytest.approx(0.0)
    assert decide_inverted(border_mean(border_bright, 0.1)) is True
    assert decide_inverted(border_mean(centre_bright, 0.1)) is False
    # The config override wins over the measurement.
    assert decide_inverted(1.0, "normal") is False
    assert decide_inverted(0.0, "inverted") is True
    # Hand case: 4x4 map with border 0.25 -> 1-pixel frame of 12 pixels.
    m = torch.arange(16, dtype=torch.float32).view(1, 4, 4) / 15
    frame = [0, 1, 2, 3, 4, 7, 8, 11, 12, 13, 14, 15]
    assert border_mean(m, 0.25) == pytest.approx(sum(frame) / 12 / 15)


def test_loss_stays_float32_under_autocast():
    """Under AMP the loss must not run in half precision (the clamp margin is about fp16's spacing below 1)."""
    from c2am.losses import c2am_loss

    torch.manual_seed(0)
    v_f, v_b = torch.rand(6, 16), torch.rand(6, 16)
    v_f_half, v_b_half = v_f.bfloat16(), v_b.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, parts = c2am_loss(v_f_half, v_b_half, 0.25)
    exact, _ = c2am_loss(v_f_half.float(), v_b_half.float(), 0.25)  # same inputs, no autocast
    assert loss.dtype == torch.float32 and all(p.dtype == torch.float32 for p in parts.values())
    assert loss.item() == exact.item()
