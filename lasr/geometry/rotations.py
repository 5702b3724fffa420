"""Rotation parameterizations and rigid (4x4) transforms in pure PyTorch.

Conventions (used everywhere in :mod:`lasr`):

* Rotation matrices act on **column vectors**: ``x' = R @ x``.  For a batch of
  row-vector points ``P (..., N, 3)`` this is ``P @ R.transpose(-1, -2)``.
* Axis-angle vectors ``(..., 3)`` are ``axis * angle`` (radians), right-handed.
* Quaternions are ``(..., 4)`` in ``(w, x, y, z)`` order (real part first, as in
  kornia >= 0.7 and pytorch3d).  ``q`` and ``-q`` are the same rotation; the
  functions returning quaternions pick the representative with ``w >= 0``.
* 6D rotations (Zhou et al., CVPR 2019) are the **first two columns** of the
  rotation matrix, concatenated: ``r6 = [R[:, 0], R[:, 1]]`` of shape ``(..., 6)``.
* Rigid transforms are ``(..., 4, 4)`` homogeneous matrices ``[[R, t], [0, 1]]``
  mapping ``x -> R x + t``.

All functions are batched over arbitrary leading dimensions, differentiable,
and keep the input dtype/device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "skew",
    "broadcast_shapes",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "axis_angle_to_quaternion",
    "quaternion_to_axis_angle",
    "normalize_quaternion",
    "quaternion_multiply",
    "rotation_6d_to_matrix",
    "matrix_to_rotation_6d",
    "random_rotations",
    "random_quaternions",
    "make_transform",
    "split_transform",
    "invert_transform",
    "apply_transform",
    "apply_rotation",
    "identity_transforms",
]

# Below this squared angle (theta < 1e-3 rad) the Rodrigues-type coefficients are
# evaluated by a 3-term Taylor series (truncation error ~theta^6/5040 < 1e-21).
_SMALL_ANGLE_SQ = 1e-6


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """NumPy broadcasting of shapes (``torch.broadcast_shapes`` has a multi-second
    first-call import cost in recent torch, so it is avoided)."""
    n = max((len(s) for s in shapes), default=0)
    out = [1] * n
    for s in shapes:
        for i, d in enumerate(s):
            k = n - len(s) + i
            if d != 1:
                if out[k] not in (1, d):
                    raise ValueError(f"shapes {shapes} are not broadcastable")
                out[k] = d
    return tuple(out)


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrix.

    Args:
        v: ``(..., 3)``.
    Returns:
        ``(..., 3, 3)`` matrix ``K`` with ``K @ u == cross(v, u)``.
    """
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def _rodrigues_coeffs(theta_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``A = sin(t)/t`` and ``B = (1-cos t)/t^2`` with a gradient-safe
    Taylor branch for small ``t`` (both branches are evaluated with safe inputs
    so that ``torch.where`` never back-propagates NaN/Inf)."""
    small = theta_sq < _SMALL_ANGLE_SQ
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = torch.sqrt(safe_sq)
    a_big = torch.sin(theta) / theta
    # (1 - cos t) / t^2 written as 2 sin^2(t/2) / t^2: no cancellation in float32
    b_big = 2.0 * torch.sin(0.5 * theta) ** 2 / safe_sq
    # Taylor: sin t / t = 1 - t^2/6 + t^4/120 ; (1-cos t)/t^2 = 1/2 - t^2/24 + t^4/720
    ts = theta_sq
    a_small = 1.0 - ts / 6.0 + ts * ts / 120.0
    b_small = 0.5 - ts / 24.0 + ts * ts / 720.0
    return torch.where(small, a_small, a_big), torch.where(small, b_small, b_big)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula ``R = I + A K + B K^2``.

    Finite (and correct) value and gradient at zero angle thanks to a Taylor
    branch for ``theta^2 < 1e-6``.

    Args:
        axis_angle: ``(..., 3)`` float tensor (axis * angle, radians).
    Returns:
        ``(..., 3, 3)`` rotation matrices, same dtype/device.
    """
    theta_sq = (axis_angle * axis_angle).sum(-1)
    a, b = _rodrigues_coeffs(theta_sq)
    k = skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def normalize_quaternion(q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``q / max(|q|, eps)`` for ``(..., 4)`` quaternions."""
    return q / q.norm(dim=-1, keepdim=True).clamp_min(eps)


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (normalized internally) to rotation matrix.

    Args:
        quaternion: ``(..., 4)`` in ``(w, x, y, z)`` order; need not be unit.
    Returns:
        ``(..., 3, 3)`` rotation matrices.
    """
    w, x, y, z = normalize_quaternion(quaternion).unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    m = torch.stack(
        [
            1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
            2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
            2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
        ],
        dim=-1,
    )
    return m.reshape(*quaternion.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrix to unit quaternion ``(w, x, y, z)`` with ``w >= 0``.

    Numerically robust for all angles (including 180 degrees): four candidate
    quaternions are computed, each from a different (largest) diagonal
    combination, and the best conditioned one is selected per matrix
    (Shepperd's method).  Gradients are finite except exactly at the branch
    switches' degenerate points (a set of measure zero).

    Args:
        matrix: ``(..., 3, 3)`` rotation matrices.
    Returns:
        ``(..., 4)`` unit quaternions.
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"expected (...,3,3), got {tuple(matrix.shape)}")
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4 * (squares of components), up to rounding
    sq = torch.stack(
        [
            1 + m00 + m11 + m22,
            1 + m00 - m11 - m22,
            1 - m00 + m11 - m22,
            1 - m00 - m11 + m22,
        ],
        dim=-1,
    )
    # 2 * |component|, made safe (>= 0.1 only used for the selected branch)
    r = torch.sqrt(sq.clamp_min(1e-12))
    d21 = m[..., 2, 1] - m[..., 1, 2]
    d02 = m[..., 0, 2] - m[..., 2, 0]
    d10 = m[..., 1, 0] - m[..., 0, 1]
    s01 = m[..., 0, 1] + m[..., 1, 0]
    s02 = m[..., 0, 2] + m[..., 2, 0]
    s12 = m[..., 1, 2] + m[..., 2, 1]
    # candidate i: 4*q = [..]/r_i ; each row is (w, x, y, z) * 2 r_i
    cand = torch.stack(
        [
            torch.stack([sq[..., 0], d21, d02, d10], dim=-1),
            torch.stack([d21, sq[..., 1], s01, s02], dim=-1),
            torch.stack([d02, s01, sq[..., 2], s12], dim=-1),
            torch.stack([d10, s02, s12, sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )  # (..., 4, 4)
    cand = cand / (2.0 * r[..., None])
    idx = sq.argmax(dim=-1)
    q = torch.gather(cand, -2, idx[..., None, None].expand(*idx.shape, 1, 4)).squeeze(-2)
    q = normalize_quaternion(q)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` (rotation ``b`` first, then ``a``), ``(..., 4)`` wxyz."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` axis-angle to ``(..., 4)`` unit quaternion (wxyz), small-angle safe."""
    theta_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small = theta_sq < _SMALL_ANGLE_SQ
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = torch.sqrt(safe_sq)
    half = 0.5 * theta
    # sin(t/2)/t ~ 1/2 - t^2/48 ; cos(t/2) ~ 1 - t^2/8
    k = torch.where(small, 0.5 - theta_sq / 48.0, torch.sin(half) / theta)
    w = torch.where(small, 1.0 - theta_sq / 8.0, torch.cos(half))
    return torch.cat([w, axis_angle * k], dim=-1)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` quaternion (wxyz, normalized internally) to ``(..., 3)`` axis-angle.

    The returned angle is in ``[0, pi]`` (the ``w >= 0`` representative is used).
    """
    q = normalize_quaternion(quaternion)
    q = torch.where(q[..., :1] < 0, -q, q)
    w, v = q[..., :1], q[..., 1:]
    s_sq = (v * v).sum(-1, keepdim=True)
    small = s_sq < _SMALL_ANGLE_SQ
    s = torch.sqrt(torch.where(small, torch.ones_like(s_sq), s_sq))
    # angle = 2 atan2(s, w); factor = angle / s ; small: 2/w * (1 - s^2/(3 w^2))
    big_factor = 2.0 * torch.atan2(s, w) / s
    small_factor = 2.0 / w * (1.0 - s_sq / (3.0 * w * w))
    return v * torch.where(small, small_factor, big_factor)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` rotation matrix to ``(..., 3)`` axis-angle (angle in ``[0, pi]``).

    Goes through :func:`matrix_to_quaternion`, so it is accurate near 0 and
    near ``pi`` (at exactly ``pi`` the sign of the axis is arbitrary).
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def rotation_6d_to_matrix(r6: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zhou et al. 6D representation to rotation matrix via Gram-Schmidt.

    Args:
        r6: ``(..., 6)`` = ``[a1, a2]``, the (unnormalized) first two columns.
    Returns:
        ``(..., 3, 3)`` with columns ``b1 = a1/|a1|``, ``b2`` = normalized
        component of ``a2`` orthogonal to ``b1``, ``b3 = b1 x b2``.
    """
    a1, a2 = r6[..., :3], r6[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(eps)
    u2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = u2 / u2.norm(dim=-1, keepdim=True).clamp_min(eps)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rotation_6d(matrix: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` -> ``(..., 6)``: first two columns concatenated (inverse of
    :func:`rotation_6d_to_matrix` on rotation matrices)."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)


def random_quaternions(
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``(n, 4)`` unit quaternions (wxyz, ``w >= 0``), uniform on SO(3)."""
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = normalize_quaternion(q)
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.to(dtype=dtype, device=device)


def random_rotations(
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``(n, 3, 3)`` rotation matrices, uniformly distributed on SO(3)
    (normalized Gaussian quaternions).  Pass a seeded ``torch.Generator`` for
    reproducibility (the generator must live on the CPU)."""
    q = random_quaternions(n, generator=generator, dtype=torch.float64)
    return quaternion_to_matrix(q).to(dtype=dtype, device=device)


def make_transform(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Build ``(..., 4, 4)`` rigid transforms ``[[R, t], [0, 1]]``.

    Args:
        rotation: ``(..., 3, 3)``.
        translation: ``(..., 3)`` (broadcast against ``rotation``'s batch dims).
    """
    batch = broadcast_shapes(rotation.shape[:-2], translation.shape[:-1])
    r = rotation.expand(*batch, 3, 3)
    t = translation.expand(*batch, 3)
    top = torch.cat([r, t[..., None]], dim=-1)
    bottom = torch.zeros(*batch, 1, 4, dtype=r.dtype, device=r.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def split_transform(transform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(..., 4, 4)`` -> ``(R (..., 3, 3), t (..., 3))``."""
    return transform[..., :3, :3], transform[..., :3, 3]


def invert_transform(transform: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid ``(..., 4, 4)`` transforms: ``[[R^T, -R^T t], [0, 1]]``."""
    r, t = split_transform(transform)
    rt = r.transpose(-1, -2)
    return make_transform(rt, -(rt @ t[..., None])[..., 0])


def apply_transform(transform: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply ``(..., 4, 4)`` transforms to ``(..., N, 3)`` points (broadcast over
    leading dims): ``p' = R p + t``.  Returns ``(..., N, 3)``."""
    r, t = split_transform(transform)
    return points @ r.transpose(-1, -2) + t[..., None, :]


def apply_rotation(rotation: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply ``(..., 3, 3)`` rotations to ``(..., N, 3)`` points: ``p' = R p``."""
    return points @ rotation.transpose(-1, -2)


def identity_transforms(
    *shape: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """``(*shape, 4, 4)`` identity transforms."""
    return torch.eye(4, dtype=dtype, device=device).expand(*shape, 4, 4).clone()
