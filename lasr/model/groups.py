"""The names of the model's parameters by role (no torch here: the config schema reads them)."""

__all__ = ["PARAM_GROUPS", "PER_FRAME"]

# The parameter groups a stage can train (``StageConfig.train``), by attribute name in
# :class:`lasr.model.articulated.ArticulatedModel`.
PARAM_GROUPS: dict[str, tuple[str, ...]] = {
    "shape": ("rest_verts",),
    "color": ("colors",),
    "root": ("root_rot", "root_trans"),
    "bones": ("bones.centers", "bones.quaternions", "bones.log_precisions"),
    "motion": ("bone_rot", "bone_trans"),
    "focal": ("log_focal",),
}
# Parameters with one row per frame (``log_focal`` too when it is per frame).
PER_FRAME = ("root_rot", "root_trans", "bone_rot", "bone_trans")
