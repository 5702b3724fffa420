"""Synthetic observations rendered by the project's own renderer from a known shape and motion."""

from __future__ import annotations

import math

import torch

from lasr.data import VideoData, crop_boxes
from lasr.geometry.mesh import icosphere
from lasr.geometry.rotations import axis_angle_to_matrix
from lasr.render import RasterSettings, render


def _render_clip(verts, F, K, colors, size):
    """Hard masks, soft colours and exact forward / backward flow of ``(T, V, 3)`` posed
    meshes seen by cameras ``K (T, 4)`` at ``size`` px."""
    hard = RasterSettings(image_size=(size, size), sigma=0.0, faces_per_pixel=1)
    soft = RasterSettings(image_size=(size, size), sigma=1e-3, faces_per_pixel=4)
    with torch.no_grad():
        mask = render(verts, F, K, hard, silhouette=False).mask.float()
        rgb = render(verts, F, K, soft, silhouette=False, attributes=colors).attributes
        fw = render(verts[:-1], F, K[:-1], soft, silhouette=False, verts_next=verts[1:], cameras_next=K[1:]).flow
        bw = render(verts[1:], F, K[1:], soft, silhouette=False, verts_next=verts[:-1], cameras_next=K[:-1]).flow
    return mask, rgb, fw, bw


def ellipsoid_scene(T: int = 8, size: int = 64, turn_deg: float = 6.0, axes=(1.0, 0.55, 0.4)):
    """A colored ellipsoid turning about its vertical axis in front of the camera.

    Returns (VideoData, true camera-space vertices (T,V,3), faces, K (4,)).
    """
    V, F = icosphere(2)
    V = V * torch.tensor(axes)
    colors = (V - V.min(0).values) / (V.max(0).values - V.min(0).values)
    f = 1.0 * size
    K = torch.tensor([f, f, (size - 1) / 2, (size - 1) / 2])
    verts = []
    for t in range(T):
        R = axis_angle_to_matrix(torch.tensor([0.3, math.radians(20 + turn_deg * t), 0.0]))
        verts.append(V @ R.T + torch.tensor([0.05 * math.sin(t / 2), 0.02 * t - 0.05, 3.2]))
    verts = torch.stack(verts)
    Ks = K.expand(T, 4)
    mask, rgb, fw, bw = _render_clip(verts, F, Ks, colors, size)
    conf = torch.ones(T - 1, size, size)
    data = VideoData(rgb=rgb.clamp(0, 1), mask=mask, flow_fw=fw, flow_bw=bw, conf_fw=conf, conf_bw=conf.clone(),
                     boxes=crop_boxes(mask), source_frames=torch.arange(T), source_size=(size, size))
    return data, verts, F, K


def turning_scene(angles_deg, size: int = 96, seed: int = 0, distance: float = 4.5):
    """A textured, lopsided body (a long trunk, a head on one end, a tail on the other)
    turning about its vertical axis by ``angles_deg[t]`` degrees at frame ``t``, seen by
    a fixed camera from slightly above at ``distance`` (the focal length grows with it, so
    the body covers the same pixels: 4.5 is a 53° field of view); flow rendered exactly.

    Returns:
        (VideoData, true object rotations (T,3,3) in camera coordinates, focal in px).
    """
    g = torch.Generator().manual_seed(seed)
    V, F = icosphere(3)
    x = V[:, 0:1]
    body = V * torch.tensor([1.3, 0.55, 0.5])
    body = body + torch.tensor([0.0, -0.25, 0.0]) * torch.relu(x - 0.5) * 2  # head raised at +x
    body = body * (1 + 0.3 * torch.relu(x - 0.6))  # and larger
    colors = torch.rand(V.shape[0], 3, generator=g)
    T = len(angles_deg)
    tilt = axis_angle_to_matrix(torch.tensor([math.radians(-20.0), 0.0, 0.0]))
    Rs = torch.stack([tilt @ axis_angle_to_matrix(torch.tensor([0.0, math.radians(float(a)), 0.0]))
                      for a in angles_deg])
    verts = body @ Rs.transpose(1, 2) + torch.tensor([0.0, 0.0, distance])
    f = size * distance / 4.5
    K = torch.tensor([f, f, (size - 1) / 2, (size - 1) / 2]).expand(T, 4)
    mask, rgb, fw, bw = _render_clip(verts, F, K, colors, size)
    from preprocess.flow import fb_confidence  # occlusions: as preprocessing finds them

    cfw = torch.from_numpy(fb_confidence(fw.numpy(), bw.numpy()))
    cbw = torch.from_numpy(fb_confidence(bw.numpy(), fw.numpy()))
    data = VideoData(rgb=rgb.clamp(0, 1), mask=mask, flow_fw=fw, flow_bw=bw, conf_fw=cfw, conf_bw=cbw,
                     boxes=crop_boxes(mask), source_frames=torch.arange(T), source_size=(size, size))
    return data, Rs.double(), f
