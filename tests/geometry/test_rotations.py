import math

import pytest
import torch

from lasr.geometry.rotations import (
    apply_transform,
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    invert_transform,
    make_transform,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_multiply,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    random_rotations,
    rotation_6d_to_matrix,
    split_transform,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _random_axis_angles(n, max_angle=math.pi * 0.999, seed=0, dtype=torch.float64):
    g = _gen(seed)
    axis = torch.randn(n, 3, generator=g, dtype=dtype)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    angle = torch.rand(n, 1, generator=g, dtype=dtype) * max_angle
    return axis * angle


def _assert_rotation(r, atol=1e-10):
    eye = torch.eye(3, dtype=r.dtype).expand_as(r)
    assert torch.allclose(r @ r.transpose(-1, -2), eye, atol=atol)
    assert torch.allclose(torch.linalg.det(r), torch.ones(r.shape[:-2], dtype=r.dtype), atol=atol)


def test_axis_angle_matrix_round_trip():
    aa = _random_axis_angles(500)
    r = axis_angle_to_matrix(aa)
    _assert_rotation(r)
    assert torch.allclose(matrix_to_axis_angle(r), aa, atol=1e-9)


def test_axis_angle_small_and_zero():
    aa = torch.tensor([[0.0, 0.0, 0.0], [1e-9, -2e-9, 3e-9], [1e-4, 0.0, 0.0], [0.0, 5e-4, -5e-4]], dtype=torch.float64)
    r = axis_angle_to_matrix(aa)
    _assert_rotation(r, atol=1e-14)
    assert torch.equal(r[0], torch.eye(3, dtype=torch.float64))
    assert torch.allclose(matrix_to_axis_angle(r), aa, atol=1e-15, rtol=1e-8)


def test_rodrigues_matches_known_rotation():
    r = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    x = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(r @ x, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-15)


def test_near_pi_round_trip():
    axis = torch.nn.functional.normalize(torch.tensor([[0.3, -0.5, 0.8]], dtype=torch.float64), dim=-1)
    for angle in (math.pi - 1e-6, math.pi - 1e-3):
        aa = axis * angle
        back = matrix_to_axis_angle(axis_angle_to_matrix(aa))
        assert torch.allclose(back, aa, atol=1e-7)


def test_quaternion_round_trip_and_kornia_agreement():
    import kornia
    r = random_rotations(300, generator=_gen(1), dtype=torch.float64)
    _assert_rotation(r)
    q = matrix_to_quaternion(r)
    assert (q[:, 0] >= 0).all()
    assert torch.allclose(q.norm(dim=-1), torch.ones(300, dtype=torch.float64))
    assert torch.allclose(quaternion_to_matrix(q), r, atol=1e-12)
    # same (w, x, y, z) convention as kornia
    rk = kornia.geometry.conversions.quaternion_to_rotation_matrix(q)
    assert torch.allclose(rk, r, atol=1e-12)
    # axis-angle <-> quaternion consistency
    aa = _random_axis_angles(100, seed=3)
    assert torch.allclose(quaternion_to_matrix(axis_angle_to_quaternion(aa)), axis_angle_to_matrix(aa), atol=1e-12)
    assert torch.allclose(quaternion_to_axis_angle(axis_angle_to_quaternion(aa)), aa, atol=1e-10)


def test_quaternion_multiply_composes_rotations():
    q1 = matrix_to_quaternion(random_rotations(20, generator=_gen(2), dtype=torch.float64))
    q2 = matrix_to_quaternion(random_rotations(20, generator=_gen(3), dtype=torch.float64))
    lhs = quaternion_to_matrix(quaternion_multiply(q1, q2))
    rhs = quaternion_to_matrix(q1) @ quaternion_to_matrix(q2)
    assert torch.allclose(lhs, rhs, atol=1e-12)


def test_matrix_to_quaternion_special_cases():
    # 180 degree rotations about each axis and identity
    mats = torch.stack(
        [torch.diag(torch.tensor(d, dtype=torch.float64)) for d in ([1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1])]
    )
    q = matrix_to_quaternion(mats)
    assert torch.allclose(quaternion_to_matrix(q), mats, atol=1e-14)


def test_6d_round_trip_and_gram_schmidt():
    r = random_rotations(100, generator=_gen(4), dtype=torch.float64)
    assert torch.allclose(rotation_6d_to_matrix(matrix_to_rotation_6d(r)), r, atol=1e-12)
    raw = torch.randn(100, 6, generator=_gen(5), dtype=torch.float64)
    m = rotation_6d_to_matrix(raw)
    _assert_rotation(m)
    # first column is the normalized first 3 entries
    assert torch.allclose(m[:, :, 0], torch.nn.functional.normalize(raw[:, :3], dim=-1))


def test_random_rotations_determinism_and_validity():
    a = random_rotations(10, generator=_gen(7))
    b = random_rotations(10, generator=_gen(7))
    assert a.dtype == torch.float32 and torch.equal(a, b)
    _assert_rotation(a.double(), atol=1e-6)


def test_rigid_transform_helpers():
    r = random_rotations(5, generator=_gen(8), dtype=torch.float64)
    t = torch.randn(5, 3, generator=_gen(9), dtype=torch.float64)
    tf = make_transform(r, t)
    assert tf.shape == (5, 4, 4)
    assert torch.equal(tf[:, 3], torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(5, 4))
    r2, t2 = split_transform(tf)
    assert torch.equal(r2, r) and torch.equal(t2, t)
    pts = torch.randn(5, 7, 3, generator=_gen(10), dtype=torch.float64)
    moved = apply_transform(tf, pts)
    assert torch.allclose(moved, torch.einsum("bij,bnj->bni", r, pts) + t[:, None], atol=1e-12)
    assert torch.allclose(apply_transform(invert_transform(tf), moved), pts, atol=1e-12)
    assert torch.allclose(tf @ invert_transform(tf), torch.eye(4, dtype=torch.float64).expand(5, 4, 4), atol=1e-12)
    # broadcasting a single transform over a batch of point sets
    moved1 = apply_transform(tf[0], pts)
    assert moved1.shape == pts.shape


def test_rodrigues_gradcheck_generic_and_near_zero():
    aa = _random_axis_angles(4, seed=11).requires_grad_(True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,), eps=1e-6, atol=1e-7)
    for v in ([0.0, 0.0, 0.0], [1e-7, -2e-7, 1e-7], [2e-4, 1e-4, -3e-4], [1.2e-3, 0.0, 0.0]):
        x = torch.tensor([v], dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(axis_angle_to_matrix, (x,), eps=1e-7, atol=1e-7)


def test_rodrigues_gradient_at_zero_is_skew_basis():
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(axis_angle_to_matrix, x)  # (3, 3, 3)
    assert torch.isfinite(jac).all()
    # dR/dw_k at 0 is the generator [e_k]_x
    from lasr.geometry.rotations import skew

    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = 1
        assert torch.allclose(jac[..., k], skew(e))


def test_other_conversions_gradcheck():
    q = torch.randn(3, 4, dtype=torch.float64, generator=_gen(12)).requires_grad_(True)
    assert torch.autograd.gradcheck(quaternion_to_matrix, (q,))
    r6 = torch.randn(3, 6, dtype=torch.float64, generator=_gen(13)).requires_grad_(True)
    assert torch.autograd.gradcheck(rotation_6d_to_matrix, (r6,))
    aa = _random_axis_angles(3, max_angle=2.5, seed=14).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: matrix_to_axis_angle(axis_angle_to_matrix(a)), (aa,))
    small = torch.tensor([[1e-5, -2e-5, 0.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(axis_angle_to_quaternion, (small,), eps=1e-8)
