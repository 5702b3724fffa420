import pytest
import torch

from lasr.geometry.mesh import icosphere
from lasr.geometry.isotropic import isotropic_remesh
from lasr.geometry.proximity import transfer_vertex_attributes
from lasr.geometry.rotations import axis_angle_to_matrix, matrix_to_rotation_6d
from lasr.model import ArticulatedModel


@pytest.fixture(scope="module")
def sphere():
    v, f = icosphere(2)
    return v * torch.tensor([1.5, 0.7, 0.5]), f


def _perturb(model, seed=0, rot=0.3, trans=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.bone_rot.add_(rot * torch.randn(model.bone_rot.shape, generator=g))
        model.bone_trans.add_(trans * torch.randn(model.bone_trans.shape, generator=g))


@pytest.mark.parametrize("rot_param", ["6d", "axis_angle"])
def test_forward_shapes_and_identity_init(sphere, rot_param):
    v, f = sphere
    m = ArticulatedModel(v, f, num_frames=5, num_bones=4, rot_param=rot_param, init_depth=3.0, focal=2.0)
    out = m(torch.tensor([0, 3, 3]))
    assert out.shape == (3, len(v), 3)
    assert torch.allclose(out, v + torch.tensor([0.0, 0.0, 3.0]))
    assert m().shape == (5, len(v), 3) and m([1]).shape == (1, len(v), 3)
    assert m.bone_transforms([0, 1]).shape == (2, 4, 4, 4)
    assert m.skinning_weights().shape == (len(v), 4)
    assert torch.allclose(m.focal([0, 4]), torch.tensor([2.0, 2.0]))
    assert m.colors.shape == v.shape and m.faces.shape == f.shape
    # gradients reach every parameter group used by forward
    out = m([0, 1])
    (out.square().sum() + m.focal([0]).sum()).backward()
    for name in ["rest_verts", "bone_rot", "bone_trans", "root_rot", "root_trans", "log_focal"]:
        assert getattr(m, name).grad is not None and torch.isfinite(getattr(m, name).grad).all(), name


def test_root_transform_applied_after_lbs(sphere):
    v, f = sphere
    m = ArticulatedModel(v, f, num_frames=3, num_bones=3)
    _perturb(m)
    rot = axis_angle_to_matrix(torch.tensor([0.2, -0.5, 1.0]))
    trans = torch.tensor([0.1, -0.2, 4.0])
    with torch.no_grad():
        m.root_rot[1] = matrix_to_rotation_6d(rot)
        m.root_trans[1] = trans
    obj = m.deform([1])
    cam = m([1])
    assert torch.allclose(cam[0], obj[0] @ rot.T + trans, atol=1e-5)
    # other frames unaffected by frame 1's root
    assert torch.allclose(m([0]), m.deform([0]))
    # object frame is LBS of the rest shape
    assert not torch.allclose(obj[0], v, atol=1e-3)


def test_per_frame_focal(sphere):
    v, f = sphere
    m = ArticulatedModel(v, f, num_frames=4, num_bones=2, focal=1.5, per_frame_focal=True)
    assert m.log_focal.shape == (4,)
    with torch.no_grad():
        m.log_focal[2] = 0.0
    assert torch.allclose(m.focal([2, 0]), torch.tensor([1.0, 1.5]))


def test_set_num_bones_keeps_shapes_and_refit(sphere):
    v, f = sphere
    m = ArticulatedModel(v, f, num_frames=4, num_bones=5)
    _perturb(m, rot=0.1, trans=0.02)
    target = m.deform().detach()
    m.set_num_bones(8)
    assert m.num_bones == 8 and m.bone_rot.shape == (4, 8, 6) and m.bone_pivots.shape == (8, 3)
    out = m([0, 1])
    assert out.shape == (2, len(v), 3)
    assert torch.allclose(m.deform(), v.expand(4, -1, -1))  # fresh bones: identity motion
    before = (m.deform() - target).square().sum(-1).mean()
    rms = m.refit_bone_transforms(target)
    assert rms.shape == (4,)
    # a different bone set cannot represent independent random bone motion exactly,
    # but the refit must be the least-squares optimum: zero gradient, lower error
    loss = (m.deform() - target).square().sum(-1).mean()
    assert loss < 0.3 * before
    assert torch.allclose(loss.sqrt().detach(), rms.square().mean().sqrt(), rtol=1e-3)
    g_rot, g_tr = torch.autograd.grad(loss, [m.bone_rot, m.bone_trans])
    assert g_rot.abs().max() < 1e-5 and g_tr.abs().max() < 1e-5


def test_bones_cover_a_limb_made_of_few_stretched_triangles():
    """A limb grown from a sphere keeps its few vertices, stretched: bones must be placed
    by surface area, not by vertex count, or the limb gets none and cannot bend."""
    v, f = icosphere(3)
    limb = v[:, 0] > 0.8  # a cap with ~10% of the vertices ...
    v = v.clone()
    v[limb, 0] = 0.8 + 12.0 * (v[limb, 0] - 0.8)  # ... stretched into a limb 2.4 long
    assert limb.float().mean() < 0.12
    m = ArticulatedModel(v, f, num_frames=2, num_bones=1)
    m.set_num_bones(12)
    on_limb = int((m.bones.centers[:, 0] > 1.0).sum())
    # the limb holds about half of the area (x > 1 excludes the cap's root)
    assert on_limb >= 4, on_limb
    # by vertex count alone (the old behaviour) it would get at most one or two
    from lasr.model.skinning import init_bones_from_kmeans
    c, _, _ = init_bones_from_kmeans(v, 12)
    assert int((c[:, 0] > 1.0).sum()) <= 2


def test_distill_fits_new_bones_to_an_old_deformation(sphere):
    """A stage change to more bones: fitting the new bones themselves (not only their
    motion) must reproduce the old deformation much better than the motion-only refit."""
    v, f = sphere
    m = ArticulatedModel(v, f, num_frames=3, num_bones=5)
    _perturb(m, seed=2, rot=0.4, trans=0.05)
    target = m.deform().detach()
    m.set_num_bones(9)
    motion_only = m.refit_bone_transforms(target)
    m.set_num_bones(9)
    distilled = m.distill_deformation(target, steps=150, lr=0.02)
    assert distilled.shape == (3,)
    assert distilled.mean() < 0.2 * motion_only.mean(), (distilled, motion_only)
    # the returned error is the model's, and the pivots follow the fitted centres
    assert torch.allclose((m.deform() - target).square().sum(-1).mean(-1).sqrt(), distilled, rtol=1e-3)
    assert torch.equal(m.bone_pivots, m.bones.centers.detach())
    # no gradient state is left on the parameters
    assert all(p.grad is None for p in m.parameters())


def test_distill_is_exact_and_free_for_a_rigid_deformation(sphere):
    v, f = sphere
    m = ArticulatedModel(v, f, num_frames=2, num_bones=1)
    m.set_num_bones(6)
    centers = m.bones.centers.detach().clone()
    err = m.distill_deformation(v.expand(2, -1, -1), steps=50)
    assert err.max() < 1e-6
    assert torch.equal(m.bones.centers.detach(), centers)  # nothing to fit: bones untouched


def test_refit_smooth_bend_with_new_bones(sphere):
    v, f = sphere
    ang = torch.sigmoid(v[:, 0] / 0.2)[:, None] * torch.tensor([0.0, 0.0, 0.6])
    bend = (axis_angle_to_matrix(ang) @ v[:, :, None])[..., 0]  # smooth articulation about z
    target = torch.stack([bend, v])
    m = ArticulatedModel(v, f, num_frames=2, num_bones=8)
    before = (m.deform() - target).norm(dim=-1).mean()
    m.refit_bone_transforms(target)
    after = (m.deform() - target).norm(dim=-1).mean()
    assert after < 0.15 * before
    assert (m.deform([1]) - v).abs().max() < 1e-5  # rest frame stays the rest shape


def test_refit_exact_with_same_bones_object_and_camera(sphere):
    v, f = sphere
    m = ArticulatedModel(v, f, num_frames=3, num_bones=6, rot_param="axis_angle", init_depth=2.0)
    _perturb(m, seed=1, rot=0.3, trans=0.05)
    target_obj = m.deform().detach()
    target_cam = m().detach()
    ref_g = m.bone_transforms().detach()
    with torch.no_grad():
        m.bone_rot.zero_()
        m.bone_trans.zero_()
    rms = m.refit_bone_transforms(target_obj)
    assert rms.max() < 1e-5
    assert (m.bone_transforms() - ref_g).abs().max() < 1e-4
    with torch.no_grad():
        m.bone_rot.zero_()
        m.bone_trans.zero_()
    rms = m.refit_bone_transforms(target_cam[1:], frame_ids=[1, 2], space="camera")
    assert rms.max() < 1e-5
    assert (m([1, 2]) - target_cam[1:]).abs().max() < 1e-4
    assert torch.allclose(m.bone_transforms([0]), torch.eye(4).expand(1, 6, 4, 4))  # frame 0 untouched
    with pytest.raises(ValueError):
        m.refit_bone_transforms(target_obj[:2])


def test_remesh_stage_change_preserves_deformation(sphere):
    v, f = sphere
    m = ArticulatedModel(v, f, num_frames=2, num_bones=4, colors=(v + 1) / 3)
    _perturb(m, seed=2, rot=0.2)
    v2, f2, _ = isotropic_remesh(m.rest_verts.detach().double(), m.faces, target_faces=720)
    v2, f2 = torch.from_numpy(v2).float(), torch.from_numpy(f2)
    c2 = transfer_vertex_attributes(m.rest_verts, m.faces, m.colors, v2)
    expected = m.deform(rest_verts=v2).detach()  # old deformation field at new points
    m.set_rest_shape(v2, f2, c2)
    assert m.rest_verts.shape == v2.shape and m.faces.shape == f2.shape and m.colors.shape == v2.shape
    assert torch.allclose(m.deform(), expected, atol=1e-6)
    assert torch.allclose(m.colors, (v2 + 1) / 3, atol=1e-5)
    assert m([0, 1]).shape == (2, len(v2), 3)


def test_bad_arguments(sphere):
    v, f = sphere
    with pytest.raises(ValueError):
        ArticulatedModel(v, f, 2, 2, rot_param="euler")
    with pytest.raises(ValueError):
        ArticulatedModel(v[None], f, 2, 2)


@pytest.mark.parametrize("num_bones", [6, 7])
def test_mirrored_bones_are_paired_and_states_without_pairs_still_load(sphere, num_bones):
    from lasr.geometry.symmetry import bone_symmetry_loss, mirror_index
    v, f = sphere
    m = ArticulatedModel(v, f, num_frames=3, num_bones=4)
    assert (m.bone_mirror == -1).all()  # plain k-means bones have no partners
    m.set_num_bones(num_bones, mirrored=True)
    partner = m.bone_mirror
    assert torch.equal(partner[partner], torch.arange(num_bones))  # an involution
    b = m.bones
    assert bone_symmetry_loss(b.centers, b.rotations(), b.log_precisions, partner) < 1e-12
    # skinning weights of mirrored vertices are each other's with the pairs swapped
    mv = mirror_index(v)
    w = m.skinning_weights(v)
    assert torch.allclose(w[mv][:, partner], w, atol=1e-5)
    # a state saved before bones could be mirrored loads as bones without partners
    state = {k: t for k, t in m.state_dict().items() if k != "bone_mirror"}
    m.load_state_dict(state)
    assert (m.bone_mirror == -1).all()
