"""Loss terms: exact values on tiny cases and gradients against finite differences."""

from __future__ import annotations

import math

import pytest
import torch

from lasr import losses as L
from lasr.data import distance_maps as _distance_maps


def _square_mask(size=32, lo=8, hi=24):
    m = torch.zeros(1, size, size)
    m[0, lo:hi, lo:hi] = 1.0
    return m


def test_coverage_pulls_nearest_vertex_towards_uncovered_mask():
    mask = _square_mask()
    dist = _distance_maps(mask)
    # render covers only the left half of the square; three vertices sit inside it
    rendered = torch.zeros_like(mask)
    rendered[0, 8:24, 8:16] = 1.0
    uv = torch.tensor([[[10.0, 10.0], [14.0, 16.0], [10.0, 22.0]]], requires_grad=True)
    loss = L.coverage_loss(uv, mask, rendered, dist, max_points=10_000)
    # oracle: mean over uncovered mask pixels of the distance to the nearest vertex,
    # times the uncovered fraction, in units of the image size
    ys, xs = torch.nonzero(mask[0] * (1 - rendered[0]), as_tuple=True)
    pts = torch.stack([xs, ys], -1).float()
    d = torch.cdist(pts, uv[0].detach()).min(1).values
    expected = 0.5 * d.mean() / 32
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-7)
    loss.backward()
    # the middle vertex is the nearest to the uncovered half: it is pulled right (+u)
    assert uv.grad[0, 1, 0] < 0  # descending the loss moves it to +u
    assert uv.grad[0, 1].norm() > uv.grad[0, 0].norm()


def test_coverage_is_zero_when_covered_and_pushes_outside_vertices_in():
    mask = _square_mask()
    dist = _distance_maps(mask)
    uv = torch.tensor([[[12.0, 12.0], [20.0, 20.0]]], requires_grad=True)
    assert L.coverage_loss(uv, mask, mask.clone(), dist).item() == 0.0
    out = torch.tensor([[[12.0, 12.0], [29.0, 16.0]]], requires_grad=True)  # 5+ px right of the mask
    loss = L.coverage_loss(out, mask, mask.clone(), dist)
    assert loss.item() > 0
    loss.backward()
    assert out.grad[0, 1, 0] > 0 and out.grad[0, 0].abs().sum() == 0  # only the outside one moves, leftwards


def test_soft_iou_loss_on_hard_masks_and_its_gradient():
    g = torch.Generator().manual_seed(0)
    pred = (torch.rand(3, 16, 20, generator=g) > 0.5).float()
    obs = (torch.rand(3, 16, 20, generator=g) > 0.4).float()
    valid = torch.ones(3, 16, 20)
    valid[2, :, :5] = 0
    expect = 1 - L.mask_iou(pred, obs, valid).mean()
    assert torch.allclose(L.soft_iou_loss(pred, obs, valid), expect, atol=1e-6)
    assert float(L.soft_iou_loss(obs, obs, valid)) == 0.0
    # a missed observed pixel costs more than a rendered pixel the mask lacks
    p = torch.full((1, 4, 4), 0.5, requires_grad=True)
    m = torch.zeros(1, 4, 4)
    m[0, :2] = 1
    L.soft_iou_loss(p, m, torch.ones(1, 4, 4)).backward()
    assert (p.grad[0, :2] < 0).all() and (p.grad[0, 2:] > 0).all()
    assert p.grad[0, :2].abs().min() > p.grad[0, 2:].abs().max()
    torch.autograd.gradcheck(lambda x: L.soft_iou_loss(x, m.double(), torch.ones(1, 4, 4, dtype=torch.double)),
                             (torch.rand(1, 4, 4, dtype=torch.double, generator=g).requires_grad_(),))


def test_deformation_is_the_mean_distance_over_the_radius_and_its_gradient():
    rest = torch.zeros(3, 3, dtype=torch.float64)
    posed = rest.expand(2, 3, 3).clone()
    posed[0, 0] = torch.tensor([3.0, 4.0, 0.0])  # one vertex 5 away, one frame: mean over 6 vertices
    posed[1, 2] = torch.tensor([0.0, 0.0, 1.0])
    assert float(L.deformation_loss(posed, rest, 2.0)) == pytest.approx((5 + 1) / 6 / 2, rel=1e-5)  # sqrt(d² + 1e-12)
    moved = posed + 0.1 * torch.randn(2, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: L.deformation_loss(p, rest, 2.0), (moved.requires_grad_(),))


def test_arap_is_zero_for_a_rigid_motion_and_charges_stretching():
    from lasr.geometry.mesh import edges_unique, icosphere
    from lasr.geometry.rotations import axis_angle_to_matrix

    V, F = icosphere(1, dtype=torch.float64)
    E = edges_unique(F)
    R = axis_angle_to_matrix(torch.tensor([0.3, -0.5, 0.2], dtype=torch.float64))
    rigid = (V @ R.T + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))[None]
    assert float(L.arap_edge_loss(rigid, V, E)) < 1e-12
    stretched = (V * torch.tensor([1.5, 1.0, 1.0], dtype=torch.float64))[None]
    lr = (V[E[:, 0]] - V[E[:, 1]]).norm(dim=-1)
    ls = (stretched[0, E[:, 0]] - stretched[0, E[:, 1]]).norm(dim=-1)
    assert float(L.arap_edge_loss(stretched, V, E)) == pytest.approx(float((ls - lr).abs().mean() / lr.mean()), rel=1e-9)
    posed = (V + 0.05 * torch.randn_like(V))[None].requires_grad_()
    assert torch.autograd.gradcheck(lambda p: L.arap_edge_loss(p, V, E), (posed,))


def test_motion_smoothness_on_known_transforms_and_its_gradient():
    from lasr.geometry.rotations import axis_angle_to_matrix

    T = torch.eye(4, dtype=torch.float64).repeat(3, 2, 1, 1)  # 3 frames, 2 bones
    assert float(L.motion_smoothness(T, 1.0)) == 0.0
    assert float(L.motion_smoothness(T[:1], 1.0)) == 0.0  # one frame: nothing to agree with
    T[2, 1, :3, 3] = torch.tensor([0.0, 2.0, 0.0])  # bone 1 jumps by 2 at the last frame
    T[1, 0, :3, :3] = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64))
    rot = 2 * 2 * (2 - 2 * math.cos(0.5)) / 4  # ||R - I||_F^2 = 4 - 4cos, twice (in and out), mean over 2x2
    assert float(L.motion_smoothness(T, 2.0)) == pytest.approx(rot + 4 / 4 / 4, rel=1e-9)
    x = (T + 0.01 * torch.randn_like(T)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: L.motion_smoothness(t, 2.0), (x,))


def test_trajectory_prior_forgives_one_rotation_of_the_whole_clip_only():
    from lasr.geometry.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(0)
    P = axis_angle_to_matrix(torch.randn(6, 3, generator=g, dtype=torch.float64))
    G = axis_angle_to_matrix(torch.tensor([0.4, -1.1, 0.3], dtype=torch.float64))
    assert float(L.trajectory_prior(P @ G, P)) < 1e-12  # the whole clip turned: no cost
    # one frame turned on its own by 0.3 rad: it costs, about ||R_t - P_t||^2 / T
    # (the best G moves a little towards the turned frame, so a little less)
    R = P.clone()
    R[2] = P[2] @ axis_angle_to_matrix(torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64))
    alone = float((R[2] - P[2]).square().sum()) / 6
    assert 0.6 * alone < float(L.trajectory_prior(R, P)) <= alone
    # the gradient (G held at its optimum) against finite differences
    aa = (torch.randn(6, 3, generator=g, dtype=torch.float64) * 0.2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: L.trajectory_prior(P @ axis_angle_to_matrix(a), P), (aa,),
                                    eps=1e-6, atol=1e-5)
