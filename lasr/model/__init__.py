"""Articulated model: Gaussian-bone skinning, LBS and the per-video model.

The names are loaded on first use, so that :mod:`lasr.model.groups` (read by the config
schema) does not import torch.
"""

__all__ = [
    "ArticulatedModel",
    "GaussianBones",
    "fit_bone_transforms",
    "gaussian_skinning_weights",
    "init_bones_from_kmeans",
    "lbs",
    "transforms_about_pivots",
]


def __getattr__(name: str):
    if name == "ArticulatedModel":
        from .articulated import ArticulatedModel

        return ArticulatedModel
    if name in __all__:
        from . import skinning

        return getattr(skinning, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
