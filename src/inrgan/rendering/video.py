"""Camera paths over a continuous image and animation files (GIF with Pillow, MP4 with imageio-ffmpeg).

A frame is the image rendered over one box of the training coordinate frame at a fixed pixel size, so a
shrinking box is a zoom that keeps adding detail (super-resolution as it goes) and a sliding box that
leaves the training box is a pan across the extrapolated image.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from ..io import atomic_write_bytes
from .images import pil_image, to_uint8

BBox = tuple[float, float, float, float]


# ----------------------------------------------------------------------------------------------
# Camera paths: one box per frame.


def zoom_boxes(bbox: Sequence[float], center: Sequence[float], zoom: float, frames: int) -> list[BBox]:
    """Boxes zooming ``zoom`` times into the point ``center`` (x, y), at a constant rate.

    The point keeps its place in the frame (like a scroll-wheel zoom), so a centred point stays centred.
    The box side shrinks geometrically: frame i covers ``zoom ** (-i / (frames - 1))`` of ``bbox``.
    """
    if zoom <= 0:
        raise ValueError(f"zoom must be positive, got {zoom}")
    if frames < 1:
        raise ValueError(f"frames must be positive, got {frames}")
    x0, y0, x1, y1 = (float(v) for v in bbox)
    cx, cy = (float(v) for v in center)
    boxes = []
    for i in range(frames):
        s = zoom ** (-(i / (frames - 1) if frames > 1 else 0.0))
        boxes.append((cx + (x0 - cx) * s, cy + (y0 - cy) * s, cx + (x1 - cx) * s, cy + (y1 - cy) * s))
    return boxes


def pan_boxes(bbox: Sequence[float], extent: float, frames: int) -> list[BBox]:
    """Boxes of the size of ``bbox`` sliding left to right across a strip ``extent`` times its width.

    The strip is centred on ``bbox``; the first frame shows its left end and the last its right end.
    """
    if extent < 1:
        raise ValueError(f"the strip must be at least as wide as the box (extent >= 1), got {extent}")
    if frames < 1:
        raise ValueError(f"frames must be positive, got {frames}")
    x0, y0, x1, y1 = (float(v) for v in bbox)
    travel = (x1 - x0) * (extent - 1)  # from the strip's left end to its right end
    boxes = []
    for i in range(frames):
        dx = travel * ((i / (frames - 1) if frames > 1 else 0.5) - 0.5)
        boxes.append((x0 + dx, y0, x1 + dx, y1))
    return boxes


def render_boxes(
    G,
    ws: Tensor,
    boxes: Iterable[Sequence[float]],
    height: int,
    width: int,
    tile: int | None = None,
) -> Iterator[np.ndarray]:
    """Render one sample (``ws`` [1, num_ws, w_dim]) over each box: yields uint8 frames [H, W, C]."""
    for box in boxes:
        img = G.synthesis(ws, height=height, width=width, bbox=tuple(box), tile=tile)
        yield to_uint8(img)[0]


# ----------------------------------------------------------------------------------------------
# Animation files.


def save_gif(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 24.0, loop: bool = True) -> Path:
    """Write uint8 [H, W, C] frames as an animated GIF, atomically.

    Pillow stores a run of identical neighbouring frames as one frame shown for their summed duration.
    """
    images = [pil_image(f) for f in frames]
    if not images:
        raise ValueError("no frames to write")
    if images[0].mode == "RGB":
        # One adaptive palette per frame; Pillow's default is a fixed web palette that bands.
        images = [im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
                  for im in images]
    duration = max(int(round(1000.0 / fps)), 20)  # GIF stores hundredths of a second; browsers floor at 20 ms
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=duration,
                   loop=0 if loop else None, optimize=False)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def save_mp4(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 24.0, quality: int = 18) -> Path:
    """Write uint8 [H, W, C] frames as an H.264 MP4 (needs the ``video`` extra: imageio-ffmpeg).

    Odd sizes are padded by one edge row or column, since yuv420p needs even sides. ``quality`` is
    x264's constant rate factor (lower is better; 18 is visually lossless).
    """
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise RuntimeError("MP4 output needs imageio-ffmpeg: pip install 'inrgan[video]'") from e
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = None
    try:
        for frame in frames:
            if frame.shape[2] == 1:
                frame = np.repeat(frame, 3, axis=2)
            h, w = frame.shape[:2]
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            if writer is None:
                writer = imageio_ffmpeg.write_frames(
                    str(tmp), (frame.shape[1], frame.shape[0]), fps=fps, codec="libx264", pix_fmt_in="rgb24",
                    pix_fmt_out="yuv420p", macro_block_size=1, output_params=["-crf", str(quality)],
                    ffmpeg_log_level="error")
                writer.send(None)  # start the encoder
            writer.send(np.ascontiguousarray(frame))
        if writer is None:
            raise ValueError("no frames to write")
        writer.close()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return path


def save_animation(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 24.0) -> Path:
    """Write frames as GIF or MP4, chosen by the file extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return save_gif(frames, path, fps)
    if suffix == ".mp4":
        return save_mp4(frames, path, fps)
    raise ValueError(f"{path}: unknown animation format {suffix!r}; use .gif or .mp4")


def frames_from_tensor(img: Tensor) -> list[np.ndarray]:
    """[N, C, H, W] images in [-1, 1] -> a list of N uint8 [H, W, C] frames."""
    return list(to_uint8(img))
