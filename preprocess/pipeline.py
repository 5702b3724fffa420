"""The preprocessing job: source -> frames -> masks -> flow (+confidence) -> cache.

Each part is recomputed only when its key (a fingerprint of its inputs and settings)
differs from the one recorded in ``meta.json`` or its files do not match their recorded
sizes and checksums; see :mod:`preprocess.layout`. One process at a time works on a
sequence (its lock): another waits, then finds the cache up to date or recomputes what
its settings need. A complete, up-to-date cache on read-only storage is used as it is.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

import lasr
from lasr.config import LasrConfig, SegmenterBackend
from lasr.device import resolve_device
from lasr.errors import InputError, LasrError
from lasr.files import LockUnavailable, exclusive_lock

from . import flow as flowmod
from . import segment
from .frames import (
    SourceInfo,
    default_name,
    file_fingerprint,
    iter_frames,
    list_images,
    probe_source,
    processing_size,
    resize_frame,
    select_indices,
)
from .guard import check_location, check_name, check_settings
from .layout import (
    LAYOUT_VERSION,
    Sequence,
    SequencePaths,
    Workspace,
    claim_root,
    clean_leftovers,
    file_records,
    hash_json,
    incomplete_reason,
    load_sequence,
    part_problem,
    read_meta,
    read_png,
    staged_dir,
    write_json_atomic,
    write_png,
)

__all__ = ["PreprocessResult", "run", "sequence_dir"]

log = logging.getLogger("preprocess")


@dataclass(frozen=True)
class PreprocessResult:
    """Where the sequence is and which parts this call computed (the rest were reused);
    ``sequence``: the sequence as read under the lock (``run(cfg, load=True)``)."""

    root: Path
    computed: tuple[str, ...]
    meta: dict
    sequence: Optional[Sequence] = None


def _value(x):
    return getattr(x, "value", x)


def _plain(node) -> dict:
    """A config node (DictConfig or dataclass) as a plain dict of JSON-able values."""
    from dataclasses import asdict, is_dataclass

    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    if is_dataclass(node):
        return {k: _value(v) for k, v in asdict(node).items()}
    return dict(node)


def sequence_dir(cfg: LasrConfig) -> Path:
    """``cache_dir/<name>``; ``name`` (default: from the video's name) must be a plain name."""
    name = check_name(cfg.name) if cfg.name else check_name(default_name(cfg.video), given=False)
    return Path(cfg.cache_dir).expanduser() / name


def _file_stamp(path: Optional[str]) -> Optional[dict]:
    if not path:
        return None
    p = Path(path).expanduser()
    st = p.stat() if p.exists() else None
    return {"path": str(p.resolve()), "size": st.st_size if st else None, "mtime_ns": st.st_mtime_ns if st else None}


# --------------------------------------------------------------------------------------
# Backends. `auto` tries candidates in order: a candidate whose part is already in the
# cache is reused without loading any model; otherwise the first that loads is used.


@dataclass
class _Candidate:
    backend: str
    settings: dict  # what the part's key is made of
    load: Callable[[], object]  # -> a ready estimator / segmenter; raises WeightsUnavailable


def _flow_candidates(cfg: LasrConfig, device: torch.device) -> list[_Candidate]:
    p = cfg.preprocess
    conf = {"alpha": p.confidence.alpha, "beta": p.confidence.beta}
    raft = _Candidate(
        "raft",
        {"backend": "raft", "model": _value(p.raft.model), "iters": p.raft.iters,
         "checkpoint": _file_stamp(p.raft.checkpoint), "confidence": conf},
        lambda: flowmod.RAFTFlow(flowmod.load_raft(p.raft), iters=p.raft.iters,
                                 batch_size=p.raft.batch_size, device=device),
    )
    dis = _Candidate(
        "dis",
        {"backend": "dis", **_plain(p.dis), "confidence": conf},
        lambda: flowmod.DISFlow(p.dis),
    )
    return {"auto": [raft, dis], "raft": [raft], "dis": [dis]}[_value(p.flow)]


def _mask_candidates(cfg: LasrConfig, src: SourceInfo, indices: list[int], size, device) -> list[_Candidate]:
    p = cfg.preprocess
    requested = _value(p.segmenter)
    if cfg.masks:
        if requested != SegmenterBackend.auto.value:
            log.info("masks=%s given: using it instead of preprocess.segmenter=%s", cfg.masks, requested)
        folder = Path(cfg.masks).expanduser()
        if not folder.is_dir():
            raise InputError(f"masks={cfg.masks}: no such folder")
        return [_Candidate(
            "folder",
            {"backend": "folder", "path": str(folder.resolve()), "fingerprint": file_fingerprint(list_images(folder))},
            lambda: (lambda frames: segment.masks_from_folder(folder, src.num_frames, indices, size,
                                                              (src.width, src.height))),
        )]
    m, d = p.maskrcnn, p.detectron2

    def load_maskrcnn():
        model, categories = segment.load_maskrcnn(m.checkpoint, m.version)

        def run_maskrcnn(frames: np.ndarray) -> np.ndarray:
            with tqdm(total=len(frames), unit="frame", desc="masks (maskrcnn)") as bar:
                dets = segment.maskrcnn_detect(model, categories, frames, m.classes, m.score_threshold,
                                               m.mask_threshold, device, progress=bar.update)
            return segment.masks_from_track(dets, frames.shape[1:3], indices)

        return run_maskrcnn

    def load_detectron2():
        detect = segment.load_detectron2(d.config_file, d.checkpoint, d.score_threshold)

        def run_detectron2(frames: np.ndarray) -> np.ndarray:
            dets = [detect(f) for f in tqdm(frames, unit="frame", desc="masks (detectron2)")]
            return segment.masks_from_track(dets, frames.shape[1:3], indices)

        return run_detectron2

    maskrcnn = _Candidate(
        "maskrcnn",
        {"backend": "maskrcnn", "version": m.version, "checkpoint": _file_stamp(m.checkpoint),
         "classes": list(m.classes), "score_threshold": m.score_threshold, "mask_threshold": m.mask_threshold},
        load_maskrcnn,
    )
    detectron2 = _Candidate(
        "detectron2",
        {"backend": "detectron2", "config_file": _file_stamp(d.config_file),
         "checkpoint": _file_stamp(d.checkpoint), "score_threshold": d.score_threshold},
        load_detectron2,
    )
    return {"auto": [maskrcnn, detectron2], "maskrcnn": [maskrcnn], "detectron2": [detectron2]}[requested]


_NO_SEGMENTER = (
    "no segmenter can run ({why}). Give masks=FOLDER (one PNG per frame, nonzero = object), "
    "or preprocess.maskrcnn.checkpoint=PATH (a torchvision maskrcnn_resnet50_fpn_v2 state dict), "
    "or install detectron2 and give preprocess.segmenter=detectron2 with preprocess.detectron2.config_file=... "
    "and preprocess.detectron2.checkpoint=..."
)


# --------------------------------------------------------------------------------------


def run(cfg: LasrConfig, load: bool = False) -> PreprocessResult:
    """Bring the sequence's cache up to date and return where it is; with ``load``, also
    the sequence as read while the lock is held (no other run can change it meanwhile).

    Raises:
        InputError / ConfigError / LasrError: bad inputs or settings, a cache folder that
            would overlap the inputs, a read-only cache that needs recomputing.
    """
    check_settings(cfg)
    p = cfg.preprocess
    src: SourceInfo = probe_source(cfg.video)
    indices = select_indices(src.num_frames, p.start, p.stride, p.max_frames)
    if len(indices) < 2:
        raise InputError(
            f"video={cfg.video}: only {len(indices)} frame to process (the source has {src.num_frames}); "
            "flow needs at least two frames: give a longer video, or a smaller preprocess.stride / start"
        )
    paths = SequencePaths(sequence_dir(cfg))
    check_location(paths.root, {"video": cfg.video, "masks": cfg.masks})
    read_only = None
    with ExitStack() as stack:
        try:
            paths.root.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(exclusive_lock(paths.lock, f"the preprocessing cache {paths.root}"))
        except LockUnavailable as e:
            read_only = str(e)
        except OSError as e:
            raise LasrError(f"cannot use cache_dir={cfg.cache_dir}: {e}. Give cache_dir=<a writable folder>") from None
        work = Workspace(paths)
        stack.callback(work.close)
        result = _update(cfg, src, indices, paths, work, read_only)
        if load:
            result = replace(result, sequence=load_sequence(result.root))
    return result


def _update(cfg: LasrConfig, src: SourceInfo, indices: list[int], paths: SequencePaths, work: Workspace,
            read_only: Optional[str]) -> PreprocessResult:
    """The body of :func:`run`, under the sequence's lock (``read_only`` None) or, when the
    lock cannot be made (``read_only`` says why), on storage that nothing may change."""
    p = cfg.preprocess
    t_start = time.perf_counter()
    size = processing_size(src.width, src.height, p.resolution)
    if read_only is None:
        claim_root(paths)
        removed = clean_leftovers(paths)
        if removed:
            log.info("%s: removed what an interrupted run left: %s", paths.root, ", ".join(removed))
    on_disk = read_meta(paths)
    old = {} if cfg.force else on_disk
    device = resolve_device(cfg.device)
    base_meta = {
        "layout_version": LAYOUT_VERSION,
        "name": paths.root.name,
        "source": {"path": str(src.path.resolve()), "kind": src.kind, "num_frames": src.num_frames,
                   "width": src.width, "height": src.height, "fps": src.fps, "fingerprint": src.fingerprint},
        "size": {"width": size[0], "height": size[1]},
        "scale": size[0] / src.width,
        "settings": {"start": p.start, "stride": p.stride, "max_frames": p.max_frames, "resolution": p.resolution},
        "frames": [{"index": i, "source_frame": s} for i, s in enumerate(indices)],
        "versions": {"lasr": lasr.__version__, "torch": torch.__version__, "numpy": np.__version__},
    }
    parts: dict[str, dict] = dict(old.get("parts", {})) if old.get("frames") == base_meta["frames"] else {}
    n = len(indices)

    def save() -> dict:
        nonlocal on_disk
        m = {**base_meta, "parts": parts, "fingerprint": hash_json({k: v["key"] for k, v in sorted(parts.items())})}
        if m != on_disk and read_only is None:  # unchanged: not rewritten (read-only storage stays usable)
            write_json_atomic(paths.meta, m, tmp_dir=work.dir)
            on_disk = m
        return m

    def fresh(part: str, key: str) -> bool:
        rec = parts.get(part, {})
        if rec.get("key") != key:
            return False
        problem = part_problem(paths, part, n, rec)
        if problem:
            log.warning("%s: %s; recomputing %s", paths.root, problem, part)
        return problem is None

    def begin(part: str) -> float:
        if read_only is not None:
            raise LasrError(f"{paths.root} cannot be written ({read_only}) and its {part} must be computed "
                            f"(missing, damaged or made with other settings): give cache_dir=<a writable folder> "
                            f"(copy the cache there to reuse it), or make it writable")
        parts.pop(part, None)  # unrecorded until its folder is complete and in place
        save()
        return time.perf_counter()

    computed: list[str] = []
    frames: Optional[np.ndarray] = None

    # ---- frames
    frames_key = hash_json({"v": LAYOUT_VERSION, "source": src.fingerprint, "indices": indices, "size": size})
    if not fresh("frames", frames_key):
        t0 = begin("frames")
        out = []
        with staged_dir(paths, "frames", work) as tmp, tqdm(total=n, unit="frame", desc="frames") as bar:
            for i, (_, img) in enumerate(iter_frames(src, indices)):
                img = resize_frame(img, size)
                write_png(tmp / f"{i:05d}.png", img)
                out.append(img)
                bar.update(1)
            if len(out) != n:
                raise InputError(f"video={cfg.video}: decoded {len(out)} of the {n} expected frames")
            files = file_records(tmp, paths.part_names("frames", n))
        frames = np.stack(out)
        parts["frames"] = {"key": frames_key, "files": files, "seconds": round(time.perf_counter() - t0, 3)}
        save()
        computed.append("frames")

    def get_frames() -> np.ndarray:
        nonlocal frames
        if frames is None:
            frames = np.stack([read_png(paths.frame(i)) for i in range(n)])
        return frames

    def resolve(part: str, candidates: list[_Candidate]) -> tuple[_Candidate, str, object]:
        """(candidate, key, loaded or None when the cached part is reused)."""
        keys = [hash_json({"frames": frames_key, **c.settings}) for c in candidates]
        for c, key in zip(candidates, keys):
            if fresh(part, key):
                return c, key, None
        errors = []
        for i, (c, key) in enumerate(zip(candidates, keys)):
            try:
                return c, key, c.load()
            except segment.WeightsUnavailable as e:
                errors.append(f"{c.backend}: {e}")
                if part == "flow" and i + 1 < len(candidates):
                    log.warning("%s flow unavailable (%s); using %s flow instead. For RAFT offline give "
                                "preprocess.raft.checkpoint=PATH.", c.backend, e, candidates[i + 1].backend)
        if part == "masks":
            raise LasrError(_NO_SEGMENTER.format(why="; ".join(errors)))
        raise LasrError(f"no flow backend can run: {'; '.join(errors)}. Use preprocess.flow=dis (no weights).")

    # ---- masks
    cand, masks_key, segmenter = resolve("masks", _mask_candidates(cfg, src, indices, size, device))
    if segmenter is not None:
        t0 = begin("masks")
        masks = segmenter(get_frames())
        with staged_dir(paths, "masks", work) as tmp:
            for i, m in enumerate(masks):
                write_png(tmp / f"{i:05d}.png", m.astype(np.uint8) * 255)
            files = file_records(tmp, paths.part_names("masks", n))
        parts["masks"] = {"key": masks_key, "backend": cand.backend, "files": files,
                          "seconds": round(time.perf_counter() - t0, 3)}
        save()
        computed.append("masks")

    # ---- flow
    cand, flow_key, estimator = resolve("flow", _flow_candidates(cfg, device))
    if estimator is not None:
        t0 = begin("flow")
        fr = get_frames()
        c = p.confidence
        with staged_dir(paths, "flow", work) as tmp, tqdm(total=n - 1, unit="pair", desc=f"flow ({cand.backend})") as bar:
            for i, fw, bw in flowmod.forward_backward(estimator, fr, progress=bar.update):
                conf_fw = flowmod.fb_confidence(fw[None], bw[None], c.alpha, c.beta)[0]
                conf_bw = flowmod.fb_confidence(bw[None], fw[None], c.alpha, c.beta)[0]
                np.savez_compressed(tmp / f"{i:05d}.npz", fw=fw.astype(np.float16), bw=bw.astype(np.float16),
                                    conf_fw=conf_fw.astype(np.float16), conf_bw=conf_bw.astype(np.float16))
            files = file_records(tmp, paths.part_names("flow", n))
        sec = time.perf_counter() - t0
        parts["flow"] = {"key": flow_key, "backend": cand.backend, "files": files, "seconds": round(sec, 3),
                         "pairs_per_second": round((n - 1) / max(sec, 1e-9), 2)}
        save()
        computed.append("flow")

    meta = save()
    reason = incomplete_reason(paths, meta)
    if reason:
        raise LasrError(f"{paths.root}: the cache is incomplete after preprocessing ({reason})")
    log.info("%s: %d frames %dx%d, masks: %s, flow: %s; computed: %s (%.1fs)", paths.root, n,
             size[0], size[1], parts["masks"]["backend"], parts["flow"]["backend"],
             ", ".join(computed) or "nothing, the cache is up to date", time.perf_counter() - t_start)
    return PreprocessResult(paths.root, tuple(computed), meta)
