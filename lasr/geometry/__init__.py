"""Geometry building blocks: rotations, meshes, isotropic remeshing, proximity, k-means, symmetry.

Submodules keep their own ``__all__``; the most used names are re-exported here
(``kmeans`` is not, to keep ``lasr.geometry.kmeans`` the module: use
``from lasr.geometry.kmeans import kmeans``).
"""

from .mesh import (
    edges_unique,
    face_areas,
    face_normals,
    icosphere,
    is_closed_manifold,
    laplacian_smoothing,
    vertex_normals,
)
from .isotropic import isotropic_remesh
from .proximity import transfer_vertex_attributes
from .rotations import (
    apply_transform,
    axis_angle_to_matrix,
    invert_transform,
    make_transform,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_to_matrix,
    random_rotations,
    rotation_6d_to_matrix,
)
from .symmetry import mirror_index, symmetrize

__all__ = [
    "edges_unique",
    "face_areas",
    "face_normals",
    "icosphere",
    "is_closed_manifold",
    "laplacian_smoothing",
    "vertex_normals",
    "isotropic_remesh",
    "transfer_vertex_attributes",
    "apply_transform",
    "axis_angle_to_matrix",
    "invert_transform",
    "make_transform",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "matrix_to_rotation_6d",
    "quaternion_to_matrix",
    "random_rotations",
    "rotation_6d_to_matrix",
    "mirror_index",
    "symmetrize",
]
