"""Laplacian-preconditioned shape steps (Nicolet et al. 2021, "Large Steps in Inverse
Rendering of Geometry").

The rest vertices ``x`` are optimised through ``u = (I + λL) x`` (``L`` the mesh's
combinatorial Laplacian) with Adam whose steps are scaled by the largest second moment
instead of each coordinate's own (``AdamUniform`` of the ``largesteps`` package): a
gradient that pulls one vertex moves its neighbourhood smoothly with it, so silhouette
and flow gradients, which reach a few vertices at a time, do not grow spikes and folds.

The model keeps ``x`` as its parameter (remeshing, checkpoints and every other group are
untouched): with ``x = M⁻¹u``, ``∂E/∂u = M⁻¹ ∂E/∂x`` and a step ``Δu`` moves ``x`` by
``M⁻¹ Δu`` — two sparse solves per step with the Cholesky factor of ``M`` (cholespy, CPU
or GPU). ``λ`` is a stage setting (``StageConfig.shape_lambda``); ``M`` is rebuilt with
the optimizer after every change of topology.
"""

from __future__ import annotations

import torch

from ..geometry.mesh import laplacian_matrix

__all__ = ["LaplacianAdam", "system_matrix", "LR_GAIN"]

# Adam-uniform moves only the vertex with the largest gradient by the full learning rate
# (the others by their share of it), so the shape's rate is this many times the stage's
# Adam rate (measured on the built-in example's rigid stage: x10 fits the silhouettes as
# far as Adam at x1 does, without its folds).
LR_GAIN = 10.0


def system_matrix(faces: torch.Tensor, num_verts: int, lam: float, dtype=torch.float32) -> torch.Tensor:
    """``I + λL`` as a coalesced sparse COO ``(V, V)`` matrix on ``faces``' device."""
    L = laplacian_matrix(faces, num_verts, dtype)
    idx = torch.arange(num_verts, device=faces.device).repeat(2, 1)
    eye = torch.sparse_coo_tensor(idx, torch.ones(num_verts, dtype=dtype, device=faces.device), (num_verts, num_verts),
                                  check_invariants=True)
    return (eye + lam * L).coalesce()


class LaplacianAdam(torch.optim.Optimizer):
    """Adam-uniform in the differential coordinates ``u = (I + λL) x`` of ``(V, 3)``
    vertex parameters (see the module docstring).

    Args:
        params: the vertex parameters (each ``(V, 3)``), or param groups with ``lr``.
        faces: ``(F, 3)`` the mesh whose Laplacian preconditions them.
        lam: ``λ`` (Nicolet et al. use 10-100; larger is smoother).
        lr, betas: as Adam's.
    """

    def __init__(self, params, faces: torch.Tensor, lam: float, lr: float = 0.01, betas=(0.9, 0.999)):
        super().__init__(params, dict(lr=lr, betas=betas))
        from largesteps.solvers import CholeskySolver

        nv = int(self.param_groups[0]["params"][0].shape[0])
        for g in self.param_groups:
            for p in g["params"]:
                if p.dim() != 2 or p.shape[0] != nv:
                    raise ValueError(f"LaplacianAdam takes (V, 3) vertex parameters, got {tuple(p.shape)}")
        self.lam = float(lam)
        self.matrix = system_matrix(faces, nv, self.lam, dtype=torch.float32)
        self._solver = CholeskySolver(self.matrix)

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """``M⁻¹ b`` for ``(V, k)`` right-hand sides (float32 inside)."""
        return self._solver.solve(b.detach().float().contiguous()).to(b.dtype)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["g1"] = torch.zeros_like(p)
                    state["g2"] = torch.zeros_like(p)
                state["step"] += 1
                grad_u = self.solve(p.grad)  # ∂E/∂u
                state["g1"].mul_(b1).add_(grad_u, alpha=1 - b1)
                state["g2"].mul_(b2).add_(grad_u.square(), alpha=1 - b2)
                m1 = state["g1"] / (1 - b1 ** state["step"])
                m2 = state["g2"] / (1 - b2 ** state["step"])
                step_u = m1 / (1e-8 + m2.sqrt().max())
                p.sub_(self.solve(step_u), alpha=group["lr"])
        return None
