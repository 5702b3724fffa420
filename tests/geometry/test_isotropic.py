"""lasr.geometry.isotropic: well-shaped triangles of the target size on the same surface,
a closed manifold, and exact mirror symmetry kept."""

import numpy as np
import pytest
import torch

from lasr.geometry.isotropic import edge_length_stats, isotropic_remesh, target_edge_length
from lasr.geometry.mesh import icosphere, is_closed_manifold, signed_volume_np
from lasr.geometry.proximity import point_to_mesh_distance
from lasr.geometry.symmetry import mirror_index


def _limb():
    """A sphere with a long limb pulled out of it along +y (symmetric about x = 0): the
    stretched triangles a fit grows."""
    V, F = icosphere(2, dtype=torch.float64)
    V, F = V.numpy().copy(), F.numpy()
    up = V[:, 1] > 0.3
    V[up, 1] = 0.3 + (V[up, 1] - 0.3) * 6.0
    V[:, 0] *= 0.6
    return V, F


@pytest.mark.parametrize("shape", ["ellipsoid", "limb"])
def test_edges_of_the_target_length_on_the_same_surface(shape):
    if shape == "ellipsoid":
        V, F = icosphere(1, dtype=torch.float64)
        V, F = V.numpy() * np.array([2.0, 1.0, 0.5]), F.numpy()
    else:
        V, F = _limb()
    before = edge_length_stats(V, F)
    v, f, m = isotropic_remesh(V, F, target_faces=800)
    after = edge_length_stats(v, f)
    assert m is None and is_closed_manifold(v, f)
    assert signed_volume_np(v, f) > 0  # the input's (outward) orientation
    assert 0.7 * 800 < len(f) < 1.4 * 800
    assert after["cv"] < 0.2 and after["min_angle_deg"] > 20, (before, after)
    assert after["cv"] < before["cv"]
    diag = np.linalg.norm(V.max(0) - V.min(0))
    assert point_to_mesh_distance(v, V, F).max() < 1e-6 * diag  # vertices on the input surface
    assert np.abs(v.max(0) - V.max(0)).max() < 0.03 * diag  # the limb keeps its length
    assert abs(after["mean"] - target_edge_length(V, F, 800)) < 0.25 * after["mean"]


def test_symmetry_stays_exact():
    V, F = _limb()
    m = mirror_index(torch.from_numpy(V)).numpy()
    v, f, m2 = isotropic_remesh(V, F, target_faces=900, mirror=m)
    assert is_closed_manifold(v, f) and m2 is not None
    assert np.array_equal(m2[m2], np.arange(len(v)))  # an involution
    reflected = v[m2] * np.array([-1.0, 1.0, 1.0])
    assert np.abs(reflected - v).max() == 0.0  # exactly symmetric
    assert np.array_equal(mirror_index(torch.from_numpy(v)).numpy(), m2)
    faces = {tuple(sorted(t)) for t in f.tolist()}  # the connectivity mirrors too
    assert all(tuple(sorted(m2[t])) in faces for t in f)
    st = edge_length_stats(v, f)
    assert st["cv"] < 0.2 and st["min_angle_deg"] > 20, st


def test_refuses_an_open_mesh():
    V, F = icosphere(1)
    with pytest.raises(ValueError, match="closed manifold"):
        isotropic_remesh(V.numpy(), F.numpy()[1:], target_faces=100)
    with pytest.raises(ValueError, match="target_length or target_faces"):
        isotropic_remesh(V.numpy(), F.numpy())
