import numpy as np
import pytest
import torch

from lasr.errors import InputError
from preprocess.segment import (
    Detection,
    WeightsUnavailable,
    load_maskrcnn,
    maskrcnn_detect,
    masks_from_folder,
    masks_from_track,
    select_track,
)

from .synth import write_folder


def _box_mask(box, shape=(60, 80)):
    m = np.zeros(shape, bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    m[y0:y1, x0:x1] = True
    return m


def _scripted(T=8):
    """A dog walking right in every frame (score 0.7), a person flashing by in frames
    2-4 with a higher score (0.99) elsewhere, and a far-away false 'cat' in frame 5."""
    frames = []
    for t in range(T):
        dog = (5 + 3 * t, 20, 30 + 3 * t, 45)
        dets = [Detection("dog", 0.7, dog, _box_mask(dog))]
        if 2 <= t <= 4:
            person = (60 - 5 * t, 0, 78 - 5 * t, 30)
            dets.insert(0, Detection("person", 0.99, person, _box_mask(person)))
        if t == 5:
            dets.append(Detection("cat", 0.95, (70, 50, 79, 59), _box_mask((70, 50, 79, 59))))
        frames.append(dets)
    return frames


def test_select_track_follows_one_object_not_the_per_frame_best():
    dets = _scripted()
    choice = select_track(dets)
    assert [dets[t][k].label for t, k in enumerate(choice)] == ["dog"] * len(dets)
    # a per-frame argmax would have switched objects: the test is not trivial
    assert {max(d, key=lambda x: x.score).label for d in dets} == {"dog", "person", "cat"}


def test_select_track_bridges_a_missed_frame_and_keeps_the_object():
    dets = _scripted()
    dets[3] = [d for d in dets[3] if d.label != "dog"]  # the dog is missed in frame 3
    choice = select_track(dets)
    labels = [dets[t][k].label if k is not None else None for t, k in enumerate(choice)]
    assert labels[:3] == ["dog"] * 3 and labels[4:] == ["dog"] * 4
    assert labels[3] in (None, "person")


def test_masks_from_track_names_empty_frames():
    dets = _scripted()
    dets[6] = []
    with pytest.raises(InputError, match=r"empty in 1 frame\(s\): 6 \(source frame 12\)"):
        masks_from_track(dets, (60, 80), source_frames=list(range(0, 16, 2)))


def test_masks_folder_count_and_empty_frames(tmp_path):
    m = np.zeros((5, 20, 30), bool)
    m[:, 5:15, 5:20] = True
    write_folder(tmp_path / "ok", m)
    out = masks_from_folder(tmp_path / "ok", 5, [0, 2, 4], (15, 10))
    assert out.shape == (3, 10, 15) and out.dtype == bool and out.any(axis=(1, 2)).all()
    with pytest.raises(InputError, match="holds 5 mask images but the video has 6 frames"):
        masks_from_folder(tmp_path / "ok", 6, [0, 1], (30, 20))
    m[3] = False
    write_folder(tmp_path / "holes", m)
    with pytest.raises(InputError, match=r"empty in 1 frame\(s\): 1 \(source frame 3\)"):
        masks_from_folder(tmp_path / "holes", 5, [1, 3], (30, 20))


@pytest.fixture(scope="module")
def random_maskrcnn():
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).eval()


def test_maskrcnn_real_model_runs_and_loads_local_state_dict(random_maskrcnn, tmp_path):
    path = tmp_path / "maskrcnn_v1.pth"
    torch.save(random_maskrcnn.state_dict(), path)
    model, categories = load_maskrcnn(str(path), version="v1")
    assert categories[1] == "person" and categories[18] == "dog"
    for (k, a), (_, b) in zip(random_maskrcnn.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), k
    frames = np.random.default_rng(0).integers(0, 255, (1, 96, 128, 3), dtype=np.uint8)
    dets = maskrcnn_detect(model, categories, frames, categories[1:], score_threshold=0.0)
    assert len(dets) == 1
    for d in dets[0]:
        assert d.mask.shape == (96, 128) and d.mask.dtype == bool and 0 <= d.score <= 1
    with pytest.raises(WeightsUnavailable, match="does not fit maskrcnn v2"):
        load_maskrcnn(str(path), version="v2")
