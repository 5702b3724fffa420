import numpy as np
import torch

from lasr.data import VideoData, crop_boxes, crop_intrinsics, make_crops


def _video(T=3, H=60, W=80):
    """Masks of a rectangle that moves; flow = a known affine motion field."""
    mask = torch.zeros(T, H, W)
    for t in range(T):
        mask[t, 10 + 2 * t : 30 + 2 * t, 20 + 5 * t : 50 + 5 * t] = 1
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    # frame t -> t+1: x' = 1.02 x + 3, y' = y - 0.01 x + 1
    fw = torch.stack([0.02 * xs + 3, -0.01 * xs + 1], -1).expand(T - 1, H, W, 2).clone()
    bw = torch.zeros(T - 1, H, W, 2)
    rgb = torch.rand(T, H, W, 3)
    return VideoData(rgb, mask, fw, bw, torch.ones(T - 1, H, W), torch.ones(T - 1, H, W),
                     crop_boxes(mask), torch.arange(T), (W, H))


def test_crop_boxes_are_square_and_1_2x_the_bbox():
    data = _video()
    cu, cv, L = data.boxes[0].tolist()
    # bbox of frame 0: x in [19.5, 49.5] (edges), y in [9.5, 29.5]
    assert (cu, cv) == (34.5, 19.5) and abs(L - 1.2 * 30) < 1e-5


def test_crop_intrinsics_match_the_crop_sampling():
    data = _video()
    res = 32
    K = torch.tensor([[100.0, 110.0, 39.5, 29.5]]).expand(3, 4)
    Kc = crop_intrinsics(K, data.boxes, res)
    pts = torch.tensor([[0.1, -0.05, 2.0], [-0.2, 0.1, 3.0]])
    for t in range(3):
        u = K[t, 0] * pts[:, 0] / pts[:, 2] + K[t, 2]
        uc = Kc[t, 0] * pts[:, 0] / pts[:, 2] + Kc[t, 2]
        cu, _, L = data.boxes[t]
        # crop pixel j has its centre at cu - L/2 + (j + 0.5) L / res in the full frame
        np.testing.assert_allclose(cu - L / 2 + (uc + 0.5) * L / res, u, atol=1e-4)


def test_crop_sampling_of_masks_and_images():
    data = _video()
    crops = make_crops(data, 36)  # the 36-px crop of frame 0 has 1 full px per crop px
    assert crops.mask.shape == (3, 36, 36) and crops.rgb.shape == (3, 36, 36, 3)
    full = data.mask[0, 2:38, 17:53]  # crop 0 spans x in [16.5, 52.5], y in [1.5, 37.5]
    np.testing.assert_allclose(crops.mask[0].numpy(), full.numpy(), atol=1e-5)
    assert crops.inside.min() == 1.0  # this crop lies inside the frame


def test_crop_flow_carries_points_between_different_crops():
    data = _video()
    res = 40
    crops = make_crops(data, res)
    for t in range(2):
        b0, b1 = data.boxes[t], data.boxes[t + 1]
        for j, i in [(5, 7), (20, 20), (33, 12)]:  # crop pixel (x=j, y=i) of frame t
            x = b0[0] - b0[2] / 2 + (j + 0.5) * b0[2] / res
            y = b0[1] - b0[2] / 2 + (i + 0.5) * b0[2] / res
            x1, y1 = 1.02 * x + 3, y - 0.01 * x + 1  # the known motion
            jc = (x1 - (b1[0] - b1[2] / 2)) / (b1[2] / res) - 0.5
            ic = (y1 - (b1[1] - b1[2] / 2)) / (b1[2] / res) - 0.5
            f = crops.flow_fw[t, i, j]
            np.testing.assert_allclose([j + f[0], i + f[1]], [jc, ic], atol=1e-3)
    ids = torch.tensor([0, 1, 2])
    flow, conf = crops.flow(ids, torch.tensor([1, 1, -1]))
    assert torch.equal(flow[0], crops.flow_fw[0]) and torch.equal(flow[2], crops.flow_bw[1])


def test_fps_of_the_processed_frames():
    from preprocess.layout import Sequence

    from lasr.data import to_video_data

    def seq(meta):
        n, s = 3, 8
        z = np.zeros((n - 1, s, s, 2), np.float32)
        return Sequence(np.zeros((n, s, s, 3), np.uint8), np.ones((n, s, s), bool), z, z, z[..., 0], z[..., 0],
                        np.arange(n), (s, s), meta)

    assert to_video_data(seq({"source": {"fps": 30.0}, "settings": {"stride": 2}})).fps == 15.0
    assert to_video_data(seq({"source": {"fps": None}, "settings": {"stride": 1}})).fps is None
