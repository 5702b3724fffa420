"""Articulated model: Gaussian-bone skinning, LBS and the per-video model."""

from .articulated import ArticulatedModel
from .skinning import (
    GaussianBones,
    fit_bone_transforms,
    gaussian_skinning_weights,
    init_bones_from_kmeans,
    lbs,
    transforms_about_pivots,
)

__all__ = [
    "ArticulatedModel",
    "GaussianBones",
    "fit_bone_transforms",
    "gaussian_skinning_weights",
    "init_bones_from_kmeans",
    "lbs",
    "transforms_about_pivots",
]
