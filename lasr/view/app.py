"""The browser viewer of a finished fit, on ``viser``: the posed mesh, a frame slider and a
play button, the skeleton as a tree, the input frame in the video camera's frustum, and
toggles for the rest shape and the colours.

The scene is in the video camera's frame (OpenCV axes, -y up): the camera is the frustum
at the origin, the model stands in front of it as in the video.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np

from .data import ViewData

__all__ = ["Viewer"]

COLOURS = ("fitted", "skinning", "gray")


class Viewer:
    """A running viewer of ``data`` on ``http://host:port`` (:attr:`url`).

    Scene nodes (``nodes``): ``/mesh`` (posed or rest shape, coloured), ``/skeleton`` (the
    tree as line segments), ``/joints`` (points), ``/camera`` (the video camera's frustum
    holding the input frame). GUI (``gui``): ``frame`` slider, ``play`` button, ``fps``,
    ``colours`` dropdown, ``rest``, ``skeleton``, ``image`` checkboxes, the ``frame image``. :meth:`show` draws a
    frame; :meth:`stop` ends the server and the player.
    """

    def __init__(self, data: ViewData, host: str = "127.0.0.1", port: int = 8080, verbose: bool = False):
        import viser

        self.data = data
        self.server = viser.ViserServer(host=host, port=port, verbose=verbose)
        self.host = host
        self.frame = 0
        self.playing = False
        self.stopped = False
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.nodes: dict = {}
        self.gui: dict = {}
        self._scene_setup()
        self._gui_setup()
        self.show(0)
        self._player = threading.Thread(target=self._play_loop, name="lasr-view-player", daemon=True)
        self._player.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.get_port()}"

    # ------------------------------------------------------------------ set-up
    def _scene_setup(self) -> None:
        d, scene = self.data, self.server.scene
        scene.set_up_direction("-y")
        pts = d.verts.reshape(-1, 3)
        centre = 0.5 * (pts.min(0) + pts.max(0))
        size = float(np.linalg.norm(pts.max(0) - pts.min(0))) or 1.0
        self.centre, self.size = centre, size
        # a view from above and to the right of the video camera: its frustum (with the
        # input frame) on the left, the model on the right
        cam = self.server.initial_camera
        cam.up = (0.0, -1.0, 0.0)
        depth = max(float(np.median(d.verts[..., 2])), size)
        cam.look_at = tuple(float(x) for x in [centre[0], centre[1], 0.7 * centre[2]])
        cam.position = tuple(float(x) for x in np.array([0.62, -0.38, 0.12]) * depth + [centre[0], centre[1], 0.0])
        W, H = d.size
        fy = float(np.median(d.intrinsics[:, 1]))
        self._fov, self._aspect = 2.0 * float(np.arctan(0.5 * H / fy)), W / H
        self._frustum_scale = 0.2 * float(np.median(d.verts[..., 2]))
        scene.add_grid("/grid", width=4 * size, height=4 * size, plane="xz", cell_size=size / 8,
                       position=(float(centre[0]), float(pts[:, 1].max()), float(centre[2])), visible=True)

    def _gui_setup(self) -> None:
        d, gui = self.data, self.server.gui
        g = self.gui
        g["frame"] = gui.add_slider("frame", min=0, max=max(d.num_frames - 1, 1), step=1, initial_value=0,
                                    disabled=d.num_frames < 2)
        g["play"] = gui.add_button("play", disabled=d.num_frames < 2)
        g["fps"] = gui.add_number("fps", initial_value=float(d.fps), min=0.5, max=120.0, step=0.5)
        available = [c for c in COLOURS if c in d.colors]
        g["colours"] = gui.add_dropdown("colours", options=tuple(available), initial_value=available[0])
        g["rest"] = gui.add_checkbox("rest shape", initial_value=False, disabled=d.rest is None)
        g["skeleton"] = gui.add_checkbox("skeleton", initial_value=d.num_bones > 0, disabled=d.num_bones == 0)
        g["image"] = gui.add_checkbox("input frame", initial_value=d.images is not None,
                                      disabled=d.images is None)
        if d.images is not None:
            g["frame image"] = gui.add_image(d.images(0), label="input frame")
        g["info"] = gui.add_markdown(self._info())

        g["frame"].on_update(lambda _: self.show(int(g["frame"].value)))
        g["play"].on_click(lambda _: self.toggle_play())
        for key in ("colours", "rest", "skeleton", "image"):
            g[key].on_update(lambda _: self.show(self.frame))

    def _info(self) -> str:
        d = self.data
        lines = [f"**{d.num_frames} frames**, {d.verts.shape[1]} vertices, {d.num_bones} bones, {d.fps:g} fps",
                 f"`{d.source}`"]
        if d.images is None:
            lines.append(f"no input frames: {d.image_note}")
        return "\n\n".join(lines)

    # ------------------------------------------------------------------ drawing
    def show(self, t: int) -> None:
        """Draw frame ``t`` with the current toggles."""
        import trimesh

        d, g, scene = self.data, self.gui, self.server.scene
        t = int(np.clip(t, 0, d.num_frames - 1))
        with self._lock:
            self.frame = t
            if int(g["frame"].value) != t:
                g["frame"].value = t
            rest = bool(g["rest"].value) and d.rest is not None
            verts = d.rest[t] if rest else d.verts[t]
            rgb = (np.clip(d.colors[g["colours"].value], 0, 1) * 255).astype(np.uint8)
            mesh = trimesh.Trimesh(verts, d.faces, vertex_colors=np.concatenate(
                [rgb, np.full((len(rgb), 1), 255, np.uint8)], 1), process=False)
            self.nodes["mesh"] = scene.add_mesh_trimesh("/mesh", mesh)
            show_bones = bool(g["skeleton"].value) and d.num_bones > 0
            if d.num_bones > 0:
                P, C = d.segments(t, rest=rest)
                J = (d.rest_joints if rest else d.joints)[t]
                self.nodes["skeleton"] = scene.add_line_segments(
                    "/skeleton", P, (C * 255).astype(np.uint8), thickness=0.006 * self.size, visible=show_bones)
                self.nodes["joints"] = scene.add_point_cloud(
                    "/joints", J, (d.bone_colors * 255).astype(np.uint8), point_size=0.008 * self.size,
                    point_shape="circle", precision="float32", visible=show_bones)
            image = d.images(t) if d.images is not None else None
            if image is not None:
                g["frame image"].image = image
            self.nodes["camera"] = scene.add_camera_frustum(
                "/camera", fov=self._fov, aspect=self._aspect, scale=self._frustum_scale,
                image=image if bool(g["image"].value) else None, color=(40, 40, 40),
                thickness=0.003 * self.size)

    # ------------------------------------------------------------------ playing
    def toggle_play(self) -> None:
        self.playing = not self.playing
        self.gui["play"].label = "pause" if self.playing else "play"

    def _play_loop(self) -> None:
        while not self._stop.is_set():
            fps = float(self.gui["fps"].value) or 1.0
            if self.playing and self.data.num_frames > 1:
                start = time.monotonic()
                self.show((self.frame + 1) % self.data.num_frames)
                self._stop.wait(max(0.0, 1.0 / fps - (time.monotonic() - start)))
            else:
                self._stop.wait(0.05)

    # ------------------------------------------------------------------ lifetime
    def wait(self, seconds: Optional[float] = None) -> None:
        """Block until :meth:`stop` (or Ctrl-C, which stops), at most ``seconds``."""
        try:
            self._stop.wait(seconds)
        except KeyboardInterrupt:
            pass
        if seconds is None or self._stop.is_set():
            self.stop()

    def stop(self) -> None:
        """Stop the player and the server (idempotent)."""
        self._stop.set()
        if self._player.is_alive() and self._player is not threading.current_thread():
            self._player.join(timeout=2.0)
        with self._lock:
            if not self.stopped:
                self.stopped = True
                self.server.stop()
