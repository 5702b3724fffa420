import numpy as np
import pytest
import torch

from lasr.geometry.isotropic import isotropic_remesh
from lasr.geometry.mesh import icosphere
from lasr.geometry.proximity import closest_point_on_mesh, closest_point_on_triangles, transfer_vertex_attributes


@pytest.fixture(scope="module")
def blob():
    """A non-convex closed surface: a bent ellipsoid (icosphere level 3)."""
    v, f = icosphere(3, dtype=torch.float64)
    v = v * torch.tensor([1.5, 0.7, 0.5], dtype=torch.float64)
    v[:, 1] += 0.3 * torch.sin(3 * v[:, 0])
    return v, f


@pytest.fixture(scope="module")
def blob_2880(blob):
    v, f = blob
    v2, f2, _ = isotropic_remesh(v, f, target_faces=2880)
    return torch.from_numpy(v2), torch.from_numpy(f2)


def test_closest_point_matches_brute_force():
    v, f = icosphere(2, dtype=torch.float64)
    v, f = v.numpy(), f.numpy()
    q = np.random.default_rng(0).normal(size=(200, 3))
    cp, d, fi, bary = closest_point_on_mesh(q, v, f)
    tri = v[f]
    best = np.full(len(q), np.inf)
    for k in range(len(f)):
        rep = [np.repeat(tri[k : k + 1, j], len(q), 0) for j in range(3)]
        c, _ = closest_point_on_triangles(q, *rep)
        best = np.minimum(best, np.linalg.norm(c - q, axis=1))
    assert np.allclose(d, best, atol=1e-12)
    assert np.allclose(np.einsum("nk,nkd->nd", bary, tri[fi]), cp, atol=1e-12)
    assert (bary >= -1e-12).all() and np.allclose(bary.sum(1), 1)


def test_transfer_linear_colors(blob, blob_2880):
    v, f = blob
    v2, f2 = blob_2880
    a = torch.tensor([[0.3, -0.2, 0.5], [0.1, 0.4, -0.3], [-0.2, 0.1, 0.2]], dtype=torch.float64)
    colors = v @ a + 0.5  # linear color field (V, 3)
    c2 = transfer_vertex_attributes(v, f, colors, v2)
    assert c2.shape == (len(v2), 3) and c2.dtype == colors.dtype
    # new vertices lie on the old surface -> barycentric interpolation of a linear field is exact
    assert (c2 - (v2 @ a + 0.5)).abs().max() < 1e-6
    cn = transfer_vertex_attributes(v, f, colors, v2, method="nearest")
    err_n = (cn - (v2 @ a + 0.5)).abs().max()
    assert 1e-6 < err_n < 0.2
    # 1-D attributes and numpy
    s = transfer_vertex_attributes(v.numpy(), f.numpy(), v[:, 0].numpy(), v2.numpy())
    assert s.shape == (len(v2),) and np.abs(s - v2[:, 0].numpy()).max() < 1e-6
