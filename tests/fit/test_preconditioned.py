"""lasr.fit.preconditioned: the Laplacian-preconditioned step is Adam-uniform in
u = (I + λL) x (against a dense oracle), and it fits a shape to silhouettes without the
folds plain Adam leaves."""

import math

import numpy as np
import torch

from lasr.fit.preconditioned import LaplacianAdam, system_matrix
from lasr.geometry.mesh import face_pairs, folded_edges, icosphere, laplacian_matrix
from lasr.geometry.rotations import axis_angle_to_matrix
from lasr.render import RasterSettings, render


def test_laplacian_matrix_is_degree_minus_adjacency():
    V, F = icosphere(1)
    L = laplacian_matrix(F, len(V)).to_dense()
    assert torch.equal(L, L.T) and torch.allclose(L.sum(1), torch.zeros(len(V)))
    assert set(torch.diag(L).tolist()) == {5.0, 6.0}  # icosphere valences
    M = system_matrix(F, len(V), 3.0).to_dense()
    assert torch.allclose(M, torch.eye(len(V)) + 3.0 * L)


def test_steps_match_adam_uniform_in_differential_coordinates():
    torch.manual_seed(0)
    V, F = icosphere(1, dtype=torch.float64)
    lam, lr = 5.0, 0.05
    M = torch.eye(len(V), dtype=torch.float64) + lam * laplacian_matrix(F, len(V), torch.float64).to_dense()
    target = V * torch.tensor([1.5, 0.7, 1.0], dtype=torch.float64)
    x = torch.nn.Parameter(V.clone())
    opt = LaplacianAdam([x], F, lam, lr=lr)
    u = (M @ V).clone()  # the oracle: Adam-uniform on u, x = M^-1 u
    g1, g2 = torch.zeros_like(u), torch.zeros_like(u)
    for step in range(1, 6):
        loss = ((x - target) ** 4).sum()
        opt.zero_grad()
        loss.backward()
        grad_x = x.grad.clone()
        opt.step()
        grad_u = torch.linalg.solve(M, grad_x)
        g1 = 0.9 * g1 + 0.1 * grad_u
        g2 = 0.999 * g2 + 0.001 * grad_u**2
        m1, m2 = g1 / (1 - 0.9**step), g2 / (1 - 0.999**step)
        u = u - lr * m1 / (1e-8 + m2.sqrt().max())
        np.testing.assert_allclose(x.detach().numpy(), torch.linalg.solve(M, u).numpy(), atol=2e-5)


def _fit(optimizer_of, steps=150):
    """Fit an icosphere to 6 silhouettes of a peanut-shaped target."""
    Vt, Ft = icosphere(3)
    Vt = Vt * torch.tensor([1.4, 0.6, 0.6]) * (1 + 0.35 * torch.cos(3.0 * Vt[:, 0:1]))
    S, views = 48, 6
    K = torch.tensor([S * 1.2, S * 1.2, (S - 1) / 2, (S - 1) / 2]).expand(views, 4)
    Rs = [axis_angle_to_matrix(torch.tensor([0.4 * math.sin(k), 2 * math.pi * k / views, 0.0])) for k in range(views)]

    def cam(V):
        return torch.stack([V @ R.T + torch.tensor([0.0, 0.0, 4.0]) for R in Rs])

    hard = RasterSettings(image_size=(S, S), sigma=0.0, faces_per_pixel=1)
    soft = RasterSettings(image_size=(S, S), sigma=0.5, faces_per_pixel=8)
    with torch.no_grad():
        target = render(cam(Vt), Ft, K, hard, silhouette=False).mask.float()
    V0, F0 = icosphere(3)
    V = torch.nn.Parameter(V0.clone())
    opt = optimizer_of(V, F0)
    for _ in range(steps):
        loss = ((render(cam(V), F0, K, soft).silhouette - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mask = render(cam(V), F0, K, hard, silhouette=False).mask.float()
    iou = float((mask * target).sum() / (mask + target).clamp(max=1).sum())
    return iou, float(folded_edges(V.detach(), F0, face_pairs(F0)))


def test_preconditioned_steps_fit_without_folds_where_adam_leaves_them():
    iou_adam, folds_adam = _fit(lambda V, F: torch.optim.Adam([V], lr=0.01))
    iou_ls, folds_ls = _fit(lambda V, F: LaplacianAdam([V], F, 20.0, lr=0.02))
    assert folds_adam > 0.1 and folds_ls < 0.005, (folds_adam, folds_ls)
    assert iou_ls > 0.8 and iou_ls > iou_adam - 0.05, (iou_adam, iou_ls)
