import cv2
import numpy as np
import pytest
import torch

from lasr.config import DisConfig, RaftConfig
from preprocess.flow import DISFlow, RAFTFlow, fb_confidence, forward_backward, load_raft
from preprocess.segment import WeightsUnavailable

from .synth import moving_square, texture


def _affine_pair(h=160, w=192, angle=2.0, shift=(0.37, -0.61), seed=3):
    img1 = texture(h, w, seed)
    M = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    M[:, 2] += shift
    img2 = cv2.warpAffine(img1, M, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    # warpAffine: dst(M p) = src(p), so pixel p of img1 moves to M p in img2.
    gt = np.stack([M[0, 0] * xs + M[0, 1] * ys + M[0, 2] - xs, M[1, 0] * xs + M[1, 1] * ys + M[1, 2] - ys], -1)
    return img1, img2, gt


def test_dis_subpixel_shift_and_rotation():
    img1, img2, gt = _affine_pair()
    flow = DISFlow(DisConfig())(img1[None], img2[None])[0]
    assert flow.shape == gt.shape and flow.dtype == np.float32
    m = 16  # valid region: away from the reflected border
    epe = np.linalg.norm(flow - gt, axis=-1)[m:-m, m:-m]
    assert epe.mean() < 0.3, epe.mean()
    # and it is a real estimate, not zero: the true motion reaches several pixels
    assert np.abs(gt[m:-m, m:-m]).max() > 3


def test_dis_default_searches_at_full_resolution_on_small_frames():
    """A small clip moving by about a pixel a frame (the built-in creature's 160 px): the
    default finest scale 0 follows the sub-pixel motion; the preset's half-resolution
    finest scale smooths it away (the creature's flow: mean error 0.78 px against 0.35)."""
    img1, img2, gt = _affine_pair(h=64, w=80, angle=1.5, shift=(0.4, -0.3), seed=5)
    m = 8
    full = DISFlow(DisConfig())(img1[None], img2[None])[0]
    half = DISFlow(DisConfig(finest_scale=None))(img1[None], img2[None])[0]
    epe_full = np.linalg.norm(full - gt, axis=-1)[m:-m, m:-m].mean()
    epe_half = np.linalg.norm(half - gt, axis=-1)[m:-m, m:-m].mean()
    assert epe_full < 0.7 * epe_half, (epe_full, epe_half)  # measured 0.035 against 0.062
    assert epe_full < 0.05, epe_full


def _square_flows(h=64, w=80, size=24, step=6):
    """Exact forward/backward flow of frames 0->1 of a square moving right by `step`."""
    fr, masks = moving_square(n=2, h=h, w=w, size=size, step=step)
    fw = np.zeros((1, h, w, 2), np.float32)
    bw = np.zeros((1, h, w, 2), np.float32)
    fw[0][masks[0]] = (step, 0)
    bw[0][masks[1]] = (-step, 0)
    return fr, masks, fw, bw


def test_confidence_exact_flows_marks_occlusion_and_disocclusion():
    fr, masks, fw, bw = _square_flows()
    conf_fw = fb_confidence(fw, bw)[0]
    conf_bw = fb_confidence(bw, fw)[0]
    occluded = masks[1] & ~masks[0]  # background of frame 0 that the square covers in frame 1
    disoccluded = masks[0] & ~masks[1]  # background of frame 1 the square uncovered
    far = np.zeros_like(occluded)
    far[:, -10:] = True
    assert conf_fw[occluded].max() < 0.01
    assert conf_bw[disoccluded].max() < 0.01
    assert conf_fw[far].min() > 0.99 and conf_fw[masks[0] & masks[1]].min() > 0.99
    assert ((conf_fw >= 0) & (conf_fw <= 1)).all()


def test_confidence_zero_where_flow_leaves_the_image():
    fw = np.zeros((1, 8, 10, 2), np.float32)
    fw[0, :, -2:, 0] = 5.0  # points off the right edge
    bw = -fw
    conf = fb_confidence(fw, bw)[0]
    assert (conf[:, -2:] == 0).all() and (conf[:, :-2] > 0.99).all()


def test_confidence_with_dis_flags_disocclusion():
    fr, masks, _, _ = _square_flows(h=128, w=160, size=48, step=12)
    est = DISFlow(DisConfig())
    (_, fw, bw), = list(forward_backward(est, fr))
    conf_bw = fb_confidence(bw[None], fw[None])[0]
    disoccluded = masks[0] & ~masks[1]
    static = np.zeros_like(disoccluded)
    static[:20, :] = True
    assert conf_bw[disoccluded].mean() < 0.5
    assert conf_bw[static].mean() > 0.9


@pytest.fixture(scope="module")
def small_raft():
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    return raft_small(weights=None, progress=False).eval()


def test_raft_runs_real_model_and_pads_odd_sizes(small_raft):
    fr = np.stack([texture(70, 90, 0), texture(70, 90, 1)])  # not multiples of 8
    flow = RAFTFlow(small_raft, iters=2)(fr[:1], fr[1:])
    assert flow.shape == (1, 70, 90, 2) and np.isfinite(flow).all()
    assert np.abs(flow).sum() > 0  # random weights still give a non-trivial field


def test_raft_loads_local_state_dict(small_raft, tmp_path):
    path = tmp_path / "raft_small.pth"
    torch.save(small_raft.state_dict(), path)
    loaded = load_raft(RaftConfig(model="small", checkpoint=str(path)))
    for (k, a), (_, b) in zip(small_raft.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    fr = np.stack([texture(64, 64, 0), texture(64, 64, 1)])
    a = RAFTFlow(small_raft, iters=2)(fr[:1], fr[1:])
    b = RAFTFlow(loaded, iters=2)(fr[:1], fr[1:])
    np.testing.assert_array_equal(a, b)
    # also a {"model": state_dict} wrapper, as training scripts save
    torch.save({"model": small_raft.state_dict()}, path)
    load_raft(RaftConfig(model="small", checkpoint=str(path)))


def test_raft_bad_checkpoints_are_clear(small_raft, tmp_path):
    with pytest.raises(WeightsUnavailable, match="no such file"):
        load_raft(RaftConfig(model="small", checkpoint=str(tmp_path / "missing.pth")))
    path = tmp_path / "small.pth"
    torch.save(small_raft.state_dict(), path)
    with pytest.raises(WeightsUnavailable, match="does not fit raft_large"):
        load_raft(RaftConfig(model="large", checkpoint=str(path)))


def test_raft_weight_enum_offline_is_weights_unavailable(monkeypatch, tmp_path):
    import urllib.error

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailable, match="Raft_Small_Weights"):
        load_raft(RaftConfig(model="small"))
