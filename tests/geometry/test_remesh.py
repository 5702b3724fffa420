import numpy as np
import pytest
import torch

from lasr.geometry.mesh import icosphere, is_closed_manifold, signed_volume
from lasr.geometry.proximity import closest_point_on_mesh, closest_point_on_triangles, hausdorff_distance
from lasr.geometry.remesh import (
    delaunay_flip,
    remesh,
    split_longest_edges,
    transfer_vertex_attributes,
    triangle_quality,
)


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
    return remesh(v, f, 2880)


def _edge_len(v, f):
    v, f = np.asarray(v), np.asarray(f)
    return np.linalg.norm(v[f[:, 0]] - v[f[:, 1]], axis=1).mean()


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


@pytest.mark.parametrize("src_level,target", [(3, 2880), (3, 640), (2, 1280)])
def test_remesh_sphere_counts_manifold_close(src_level, target):
    v, f = icosphere(src_level)
    v2, f2 = remesh(v, f, target)
    assert v2.dtype == torch.float32 and f2.dtype == torch.long
    assert abs(len(f2) - target) <= 0.1 * target
    assert is_closed_manifold(v2, f2, require_single_component=True)
    assert signed_volume(v2.double(), f2) > 0  # orientation kept (outward)
    h = hausdorff_distance(v.numpy(), f.numpy(), v2.numpy(), f2.numpy(), samples=5000)
    assert h < 0.5 * max(_edge_len(v, f), _edge_len(v2, f2)), h
    # vertices sit on the input surface (projected), up to float32 rounding
    d = closest_point_on_mesh(v2.numpy(), v.numpy(), f.numpy())[1]
    assert d.max() < 1e-5
    assert triangle_quality(v2.numpy(), f2.numpy()).min() > 0.3


def test_remesh_up_and_down_on_blob(blob, blob_2880):
    v, f = blob
    v2, f2 = blob_2880
    assert v2.dtype == torch.float64
    assert abs(len(f2) - 2880) <= 288 and is_closed_manifold(v2, f2, require_single_component=True)
    scale = (v.max(0).values - v.min(0).values).norm().item()
    assert hausdorff_distance(v, f, v2, f2, samples=5000) < 0.02 * scale
    v3, f3 = remesh(v2, f2, 1280)
    assert abs(len(f3) - 1280) <= 128 and is_closed_manifold(v3, f3, require_single_component=True)
    assert hausdorff_distance(v, f, v3, f3, samples=5000) < 0.02 * scale
    assert signed_volume(v3, f3) > 0
    assert abs(signed_volume(v3, f3) / signed_volume(v, f) - 1) < 0.05


def test_remesh_without_relaxation_and_numpy_io(blob):
    v, f = blob
    v2, f2 = remesh(v.numpy(), f.numpy(), 2000, relax_iters=0, return_numpy=True)
    assert isinstance(v2, np.ndarray) and abs(len(f2) - 2000) <= 200
    assert is_closed_manifold(v2, f2)
    # plain decimation stays very close to the input surface
    assert closest_point_on_mesh(v2, v.numpy(), f.numpy())[1].max() < 0.01


def test_remesh_rejects_open_mesh():
    v, f = icosphere(1)
    with pytest.raises(ValueError):
        remesh(v, f[1:], 200)


def test_delaunay_flip_keeps_manifold_and_improves_angles():
    v, f = icosphere(2, dtype=torch.float64)
    v, f = v.numpy(), f.numpy().copy()
    # a triangulation that is Delaunay for a stretched copy is poor on the sphere
    bad = delaunay_flip(v * np.array([3.0, 1.0, 1.0]), f)
    assert is_closed_manifold(v, bad) and not np.array_equal(bad, f)
    assert triangle_quality(v, bad).mean() < triangle_quality(v, f).mean()
    fixed = delaunay_flip(v, bad)
    assert is_closed_manifold(v, fixed)
    assert triangle_quality(v, fixed).mean() > triangle_quality(v, bad).mean()
    assert triangle_quality(v, fixed).min() >= triangle_quality(v, bad).min() - 1e-12


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


def test_split_longest_edges_keeps_the_surface_exactly():
    V, F = icosphere(2)
    V = V.numpy().astype(np.float64) * np.array([1.0, 0.3, 0.5])
    # a thin spike (a limb grown from the blob): pull one vertex far out
    V[0] = V[0] * 4.0
    F = F.numpy()
    V2, F2 = split_longest_edges(V, F, F.shape[0] + 600)
    assert F2.shape[0] == F.shape[0] + 600 and is_closed_manifold(V2, F2)
    np.testing.assert_array_equal(V2[: len(V)], V)  # every old vertex, spike tip included, stays

    def volume(v, f):
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        return np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6

    assert volume(V2, F2) == pytest.approx(volume(V, F), rel=1e-12)
    # same surface: every new vertex lies on an old face (distance ~ 0)
    d = np.linalg.norm(closest_point_on_mesh(V2[len(V):], V, F)[0] - V2[len(V):], axis=1)
    assert d.max() < 1e-12

    # the longest edges were split first: the longest remaining edge is shorter than before
    def longest(v, f):
        e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        return np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1).max()

    assert longest(V2, F2) < longest(V, F)
    with pytest.raises(ValueError):
        split_longest_edges(V, F, F.shape[0] + 1)  # parity
