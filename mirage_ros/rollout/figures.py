"""The pictures a person looks at: previews of imagined views and a top-down map of the memory.

Pure functions from arrays to ``uint8 [H, W, 3]`` RGB images; no ROS, no models, no simulator.

- :func:`preview_grid`: decoded imagined views of the best paths (best first), one labelled tile
  each, optionally with a second row of reference views (e.g. simulator truth at the same poses).
- :func:`top_down_map`: the memory's voxels seen from above in the map frame (x right, y up),
  candidate paths coloured by score like Nav2 MPPI's trajectory visualiser, the driven path, the
  robot and the goal, a scale bar and a legend. The picture RViz would show, as a PNG.
- :func:`score_colors`: the score -> colour rule (worst red, yellow, best green) shared by the
  map and the node's MarkerArray.
- :func:`save_png`: writes an RGB image the right way round (OpenCV wants BGR).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MapView",
    "auto_extent",
    "preview_grid",
    "save_png",
    "score_colors",
    "top_down_map",
]

_FONT = cv2.FONT_HERSHEY_SIMPLEX

# score_colors: worst -> middle -> best, and the colour of a score that is not a number.
_WORST = np.array([215, 38, 38], dtype=np.float64)
_MIDDLE = np.array([242, 200, 22], dtype=np.float64)
_BEST = np.array([34, 185, 58], dtype=np.float64)
_NOT_FINITE = (128, 128, 128)

# preview_grid
_GRID_BG = (72, 72, 72)  # separators and empty cells
_BAND_BG = (24, 24, 24)  # label bands
_TEXT = (240, 240, 240)

# top_down_map
_UNKNOWN = (48, 50, 56)  # never seen (RViz's dark background)
_FLOOR = (214, 214, 210)  # voxels at floor level
_HALO = (0, 0, 0)  # outline around paths and symbols
_NEUTRAL_PATH = (240, 240, 240)  # paths without scores
_DRIVEN = (20, 20, 70)  # the path the robot drove (with a white outline)
_ROBOT = (40, 110, 255)
_GOAL = (255, 255, 255)
# Obstacle height, low -> high: sky blue, blue, violet, magenta. No red, yellow or green, which
# belong to the path scores.
_HEIGHT_STOPS = np.array([[0, 190, 255], [50, 90, 255], [150, 60, 235], [225, 40, 200]],
                         dtype=np.float64)


def _numpy(x: Any) -> NDArray:
    """A numpy view of a numpy array, a list or a torch tensor (without importing torch)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


# ---------------------------------------------------------------------------------- colours
def score_colors(scores: ArrayLike) -> NDArray:
    """RGB colour per score, ``uint8 [N, 3]``: the lowest score red, the highest green, via yellow.

    Scores are normalised from their finite min to their finite max (higher is better, as in
    ScorePaths results). All-equal finite scores are all green; NaN and +-inf are grey.
    """
    s = _numpy(scores).astype(np.float64).reshape(-1)
    out = np.empty((len(s), 3), dtype=np.uint8)
    out[:] = _NOT_FINITE
    finite = np.isfinite(s)
    if not finite.any():
        return out
    lo, hi = s[finite].min(), s[finite].max()
    span = hi - lo
    if span > 0 and math.isfinite(span):
        t = np.clip((s[finite] - lo) / span, 0.0, 1.0)
    else:
        t = np.ones(int(finite.sum()))
    t = t[:, None]
    low = _WORST + (_MIDDLE - _WORST) * (2.0 * t)
    high = _MIDDLE + (_BEST - _MIDDLE) * (2.0 * t - 1.0)
    out[finite] = np.round(np.where(t < 0.5, low, high)).astype(np.uint8)
    return out


def _height_colors(t: NDArray) -> NDArray:
    """``[M]`` in 0..1 -> ``uint8 [M, 3]`` RGB from the height colour map."""
    t = np.clip(np.asarray(t, dtype=np.float64).reshape(-1), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(_HEIGHT_STOPS))
    rgb = [np.interp(t, stops, _HEIGHT_STOPS[:, c]) for c in range(3)]
    return np.round(np.stack(rgb, -1)).astype(np.uint8)


# ---------------------------------------------------------------------------------- text
def _ascii(text: str) -> str:
    """Hershey fonts draw ASCII only; anything else becomes '?'."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in str(text))


def _fit_text(text: str, max_width: int, scale: float, min_scale: float = 0.3,
              thickness: int = 1) -> tuple[str, float, int, int]:
    """Shrink ``text`` to ``max_width`` px (smaller font, then cut with '..').

    Returns the text, the font scale, its width and its height above the baseline."""
    text = _ascii(text)
    (w, h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    if w > max_width > 0:
        scale = max(min_scale, scale * max_width / w)
        (w, h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    while w > max_width and text:
        text = text[:-3] + ".." if len(text) > 3 else ""
        (w, h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    return text, scale, w, h


def _text_height(scale: float, thickness: int = 1) -> tuple[int, int]:
    """Height above and below the baseline of capitals and descenders at ``scale``."""
    (_, h), base = cv2.getTextSize("Ag", _FONT, scale, thickness)
    return h, base


def _draw_text(img: NDArray, text: str, x: int, y_top: int, height: int, max_width: int,
               scale: float, color: tuple[int, int, int] = _TEXT) -> int:
    """Draw ``text`` left-aligned at ``x``, vertically centred in rows ``y_top..+height``.

    Returns the x just after the text."""
    text, scale, w, _ = _fit_text(text, max_width, scale)
    if not text:
        return x
    asc, desc = _text_height(scale)
    baseline = y_top + (height + asc - desc) // 2
    cv2.putText(img, text, (x, baseline), _FONT, scale, color, 1, cv2.LINE_AA)
    return x + w


# ---------------------------------------------------------------------------------- previews
def _as_tiles(images: Any, name: str) -> NDArray:
    """``[K, 3, h, w]`` float in 0..1 or ``[K, h, w, 3]`` uint8 (either layout, either type,
    1 or 3 channels) -> ``uint8 [K, h, w, 3]``."""
    a = _numpy(images)
    if a.ndim != 4:
        raise ValueError(f"{name} must be [K, 3, h, w] or [K, h, w, 3], got shape {a.shape}")
    channels_first = a.shape[1] in (1, 3) and (
        a.shape[-1] not in (1, 3) or a.dtype != np.uint8)
    if channels_first:
        a = a.transpose(0, 2, 3, 1)
    if a.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        a = np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a)


def _upscale(tile: NDArray, height: int, width: int) -> NDArray:
    if tile.shape[:2] == (height, width):
        return tile
    return cv2.resize(tile, (width, height), interpolation=cv2.INTER_NEAREST)


def _vertical_label(text: str, height: int, width: int, scale: float) -> NDArray:
    """A ``[height, width, 3]`` band with ``text`` written bottom-to-top (a y-axis label)."""
    band = np.empty((width, height, 3), dtype=np.uint8)
    band[:] = _BAND_BG
    text, scale, w, _ = _fit_text(text, height - 4, scale)
    x = max(2, (height - w) // 2)
    _draw_text(band, text, x, 0, width, height - 4, scale)
    return np.ascontiguousarray(np.rot90(band, 1))


def preview_grid(
    images: Any,
    labels: Sequence[str],
    *,
    reference: Any = None,
    row_labels: tuple[str, str] = ("imagined", "truth"),
    label_colors: ArrayLike | None = None,
    columns: int | None = None,
    scale: int = 2,
) -> NDArray:
    """Tiles of views with a label each: ``uint8 [H, W, 3]`` RGB.

    images: ``[K, 3, h, w]`` float in 0..1 (decoded views, best path first) or ``[K, h, w, 3]``
    uint8; a torch tensor or a numpy array. labels: K short strings, drawn in a dark band above
    each tile (shrunk, then cut, when too long). Tiles are upscaled ``scale`` times (nearest) and
    laid out ``columns`` to a row (default: all in one row, at most 8).

    reference: optional second set of K views of the same poses (e.g. simulator truth), drawn
    right under each tile; then each row of tiles gets a row label on the left, ``row_labels =
    (label of images, label of reference)``. label_colors: optional ``uint8 [K, 3]`` RGB drawn as a
    stripe under each label (e.g. :func:`score_colors`, so a tile matches its path on the map).
    Raises ValueError for K = 0 or mismatched inputs.
    """
    tiles = _as_tiles(images, "images")
    k, h, w, _ = tiles.shape
    if k == 0:
        raise ValueError("preview_grid needs at least one image")
    labels = [str(s) for s in labels]
    if len(labels) != k:
        raise ValueError(f"{k} images but {len(labels)} labels")
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
    scale = int(scale)
    ref = None
    if reference is not None:
        ref = _as_tiles(reference, "reference")
        if len(ref) != k:
            raise ValueError(f"{k} images but {len(ref)} reference images")
    stripes = None
    if label_colors is not None:
        stripes = _numpy(label_colors).reshape(-1, 3).astype(np.uint8)
        if len(stripes) != k:
            raise ValueError(f"{k} images but {len(stripes)} label colours")
    cols = min(k, 8) if columns is None else int(columns)
    if cols < 1:
        raise ValueError(f"columns must be >= 1, got {columns!r}")
    cols = min(cols, k)
    rows = -(-k // cols)

    th, tw = h * scale, w * scale
    gap = 2
    font = float(np.clip(tw / 420.0, 0.35, 0.6))
    asc, desc = _text_height(font)
    band = asc + desc + 8
    stripe = 3 if stripes is not None else 0
    gutter = 0
    if ref is not None:
        gutter = _text_height(font)[0] + _text_height(font)[1] + 8 + gap
    cell_h = band + stripe + th + (gap + th if ref is not None else 0)
    height = gap + rows * (cell_h + gap)
    width = gutter + gap + cols * (tw + gap)
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = _GRID_BG

    for i in range(k):
        r, c = divmod(i, cols)
        y = gap + r * (cell_h + gap)
        x = gutter + gap + c * (tw + gap)
        out[y:y + band, x:x + tw] = _BAND_BG
        _draw_text(out, labels[i], x + 4, y, band, tw - 8, font)
        y += band
        if stripes is not None:
            out[y:y + stripe, x:x + tw] = stripes[i]
            y += stripe
        out[y:y + th, x:x + tw] = _upscale(tiles[i], th, tw)
        if ref is not None:
            y += th + gap
            out[y:y + th, x:x + tw] = _upscale(ref[i], th, tw)
    if ref is not None:
        for r in range(rows):
            y = gap + r * (cell_h + gap) + band + stripe
            for name, y0 in ((row_labels[0], y), (row_labels[1], y + th + gap)):
                out[y0:y0 + th, gap:gutter] = _vertical_label(name, th, gutter - gap, font)
    return out


# ---------------------------------------------------------------------------------- the map
@dataclass(frozen=True)
class MapView:
    """Where the map frame lands in a :func:`top_down_map` image.

    Pixel ``(col, row)`` covers map ``x`` in ``xmin + (col - left) * resolution`` (+1 pixel) and
    ``y`` in ``ymax - (row - top) * resolution`` (-1 pixel): x right, y up. ``left``/``top`` are
    the columns/rows before the map area (legend above, padding); ``map_width``/``map_height``
    its size in pixels; ``width``/``height`` the whole image's.
    """

    xmin: float
    ymax: float
    resolution: float
    left: int
    top: int
    map_width: int
    map_height: int
    width: int
    height: int

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(xmin, xmax, ymin, ymax)`` of the map area in metres."""
        r = self.resolution
        return (self.xmin, self.xmin + self.map_width * r, self.ymax - self.map_height * r,
                self.ymax)

    def continuous(self, xy: ArrayLike) -> NDArray:
        """``[..., 2]`` map x, y -> ``[..., 2]`` float (col, row); pixel i spans [i, i + 1)."""
        p = np.asarray(xy, dtype=np.float64)[..., :2]
        col = self.left + (p[..., 0] - self.xmin) / self.resolution
        row = self.top + (self.ymax - p[..., 1]) / self.resolution
        return np.stack([col, row], axis=-1)

    def pixel(self, xy: ArrayLike) -> NDArray:
        """``[..., 2]`` map x, y -> ``int64 [..., 2]`` (col, row) of the pixel holding it."""
        return np.floor(self.continuous(xy)).astype(np.int64)


def _xy(points: Any, name: str) -> NDArray:
    """``[P, 2|3]`` (or anything with ``.positions``, like CandidatePath) -> finite ``[P', 2]``."""
    p = _numpy(getattr(points, "positions", points)).astype(np.float64)
    if p.ndim != 2 or p.shape[1] not in (2, 3):
        raise ValueError(f"{name} must be [P, 2] or [P, 3], got shape {p.shape}")
    return p[np.isfinite(p[:, :2]).all(axis=1), :2]


def auto_extent(*point_sets: ArrayLike, margin: float = 0.5) -> tuple[float, float, float, float]:
    """``(xmin, xmax, ymin, ymax)`` around every finite x, y of ``point_sets`` (each ``[P, >=2]``)
    plus ``margin`` metres; ``(-1, 1, -1, 1)`` when there are no points."""
    parts = [np.asarray(p, dtype=np.float64).reshape(-1, np.shape(p)[-1])[:, :2]
             for p in point_sets if np.size(p)]
    xy = np.concatenate(parts) if parts else np.zeros((0, 2))
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) == 0:
        return (-1.0, 1.0, -1.0, 1.0)
    lo, hi = xy.min(axis=0) - margin, xy.max(axis=0) + margin
    return (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))


def _polyline(img: NDArray, view: MapView, xy: NDArray, color: tuple[int, ...], thickness: int,
              halo: int = 1, halo_color: tuple[int, int, int] = _HALO) -> None:
    if len(xy) == 0:
        return
    pts = np.round((view.continuous(xy) - 0.5) * 16).astype(np.int32).reshape(-1, 1, 2)
    if len(pts) == 1:
        pts = np.concatenate([pts, pts])
    if halo:
        cv2.polylines(img, [pts], False, halo_color, thickness + 2 * halo, cv2.LINE_AA, shift=4)
    cv2.polylines(img, [pts], False, tuple(int(c) for c in color), thickness, cv2.LINE_AA,
                  shift=4)


def _polygon(img: NDArray, corners: NDArray, color: tuple[int, ...]) -> None:
    pts = np.round(corners * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(img, [pts], color, cv2.LINE_AA, shift=4)
    cv2.polylines(img, [pts], True, _HALO, 1, cv2.LINE_AA, shift=4)


def _draw_voxels(img: NDArray, view: MapView, positions: NDArray, colors: NDArray | None,
                 voxel_size: float, floor_z: float, max_z: float) -> int:
    """Paint the voxels from above (the highest kept voxel wins a pixel); returns how many."""
    keep = np.isfinite(positions).all(axis=1) & (positions[:, 2] <= max_z)
    p = positions[keep]
    if colors is None:
        z = p[:, 2]
        c = _height_colors((z - floor_z) / max(max_z - floor_z, 1e-9))
        c[z < floor_z] = _FLOOR
    else:
        c = colors[keep]
    if len(p) == 0:
        return 0
    side = max(1, math.ceil(voxel_size / view.resolution - 1e-9))
    centre = view.continuous(p) - side / 2.0
    base = np.round(centre).astype(np.int64)  # top-left pixel of each voxel's square
    offsets = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1)
    offsets = offsets.reshape(-1, 2)
    cols = (base[:, None, 0] + offsets[None, :, 0]).reshape(-1)
    rows = (base[:, None, 1] + offsets[None, :, 1]).reshape(-1)
    which = np.repeat(np.arange(len(p)), len(offsets))
    inside = ((cols >= view.left) & (cols < view.left + view.map_width)
              & (rows >= view.top) & (rows < view.top + view.map_height))
    cols, rows, which = cols[inside], rows[inside], which[inside]
    if len(which) == 0:
        return int(len(p))
    flat = rows * view.width + cols
    # Deterministic "highest wins": sort by pixel, then height, then index; keep each pixel's last.
    order = np.lexsort((which, p[which, 2], flat))
    flat, which = flat[order], which[order]
    last = np.r_[flat[1:] != flat[:-1], True]
    img.reshape(-1, 3)[flat[last]] = c[which[last]]
    return int(len(p))


def _star(centre: NDArray, outer: float) -> NDArray:
    a = -math.pi / 2 + np.arange(10) * math.pi / 5
    r = np.where(np.arange(10) % 2 == 0, outer, outer * 0.45)
    return centre + np.stack([r * np.cos(a), r * np.sin(a)], -1)


def _nice_length(resolution: float, map_width: int) -> float:
    """The scale bar: 1 m unless that is under 40 px or over a third of the map."""
    for length in (1.0, 0.5, 2.0, 0.2, 5.0, 0.1, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0):
        px = length / resolution
        if 40 <= px <= max(40, map_width / 3):
            return length
    return 1.0


def _footer(img: NDArray, view: MapView, y: int, height: int, scores_given: bool,
            height_key: tuple[float, float] | None, font: float) -> None:
    """Scale bar, then the height and score colour keys when there is room."""
    x = 8
    length = _nice_length(view.resolution, view.map_width)
    bar = int(round(length / view.resolution))
    mid = y + height // 2
    cv2.rectangle(img, (x, mid - 2), (x + bar, mid + 2), (255, 255, 255), -1)
    for end in (x, x + bar):
        cv2.line(img, (end, mid - 6), (end, mid + 6), (255, 255, 255), 1)
    label = f"{length:g} m"
    x = _draw_text(img, label, x + bar + 6, y, height, 80, font) + 18
    keys = []
    if height_key is not None:
        lo, hi = height_key
        keys.append(("height", f"{lo:g}", f"{hi:g} m", _height_colors(np.linspace(0, 1, 64))))
    if scores_given:
        t = np.linspace(0.0, 1.0, 64)
        keys.append(("score", "worst", "best", score_colors(t)))
    for name, low, high, ramp in keys:
        widths = [_fit_text(s, 999, font)[2] for s in (name, low, high)]
        need = widths[0] + widths[1] + widths[2] + 64 + 24
        if x + need > img.shape[1] - 4:
            break
        x = _draw_text(img, name, x, y, height, 200, font) + 6
        x = _draw_text(img, low, x, y, height, 200, font) + 4
        img[mid - 4:mid + 4, x:x + 64] = ramp[None, :, :]
        x = _draw_text(img, high, x + 68, y, height, 200, font) + 18


def top_down_map(
    positions: ArrayLike | None = None,
    *,
    colors: ArrayLike | None = None,
    paths: Sequence[Any] = (),
    scores: ArrayLike | None = None,
    driven: ArrayLike | None = None,
    robot: tuple[float, float, float] | None = None,
    goal: tuple[float, float] | None = None,
    extent: tuple[float, float, float, float] | None = None,
    resolution: float = 0.02,
    max_size: int = 1000,
    margin: float = 0.5,
    voxel_size: float = 0.05,
    floor_z: float = 0.1,
    max_z: float = 2.0,
    robot_size: float = 0.25,
    title: str | None = None,
    return_view: bool = False,
    counts: bool = True,
) -> NDArray | tuple[NDArray, MapView]:
    """The memory and the candidate paths from above, in the map frame: ``uint8 [H, W, 3]`` RGB.

    positions: voxel centres ``[M, 3]`` in the map frame (``LatentMemory.positions``), each drawn
    as a ``voxel_size`` square; where several share a pixel the highest is seen. colors: optional
    ``uint8 [M, 3]`` RGB per voxel; without it, voxels below ``floor_z`` are light grey (floor),
    those up to ``max_z`` coloured by height (sky blue low -> magenta high). Voxels above ``max_z``
    (the ceiling, which would hide the room) are never drawn. Unknown space is dark grey.

    paths: candidate paths, each ``[P, 2|3]`` (x, y first) or a CandidatePath. scores: ``[N]``
    (higher is better), colours from :func:`score_colors`; the worst are drawn first and the best
    last, thicker and with a dot at its end. Without scores, paths are white. driven: the path
    driven ``[Q, 2|3]`` (thin dark line, white outline). robot: ``(x, y, yaw)`` drawn as a blue
    arrowhead of ``robot_size`` metres. goal: ``(x, y)`` drawn as a white star.

    extent: ``(xmin, xmax, ymin, ymax)`` in metres, default every input plus ``margin``.
    resolution: metres per pixel, coarsened so the long side is at most ``max_size`` pixels.
    A legend band on top (``title``, voxel and path counts, the best path) and a footer with a
    scale bar and colour keys frame the map. With ``return_view``, also returns the
    :class:`MapView` that maps metres to pixels. ``counts=False`` leaves the voxel and path counts
    out of the legend (for maps whose points are not memory voxels). Deterministic: same
    inputs, same pixels.
    """
    pos = np.zeros((0, 3)) if positions is None else _numpy(positions).astype(np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must be [M, 3], got shape {pos.shape}")
    cols_in = None
    if colors is not None:
        cols_in = _numpy(colors).astype(np.uint8).reshape(-1, 3)
        if len(cols_in) != len(pos):
            raise ValueError(f"{len(pos)} voxels but {len(cols_in)} colours")
    path_xy = [_xy(p, f"paths[{i}]") for i, p in enumerate(paths)]
    s = None
    if scores is not None:
        s = _numpy(scores).astype(np.float64).reshape(-1)
        if len(s) != len(path_xy):
            raise ValueError(f"{len(path_xy)} paths but {len(s)} scores")
    driven_xy = None if driven is None else _xy(driven, "driven")
    robot_pose = None
    if robot is not None:
        robot_pose = np.asarray(robot, dtype=np.float64).reshape(-1)
        if robot_pose.shape != (3,) or not np.isfinite(robot_pose).all():
            raise ValueError(f"robot must be a finite (x, y, yaw), got {robot!r}")
    goal_xy = None
    if goal is not None:
        goal_xy = np.asarray(goal, dtype=np.float64).reshape(-1)[:2]
        if goal_xy.shape != (2,) or not np.isfinite(goal_xy).all():
            raise ValueError(f"goal must be a finite (x, y), got {goal!r}")
    if not (math.isfinite(resolution) and resolution > 0):
        raise ValueError(f"resolution must be > 0, got {resolution!r}")

    if extent is None:
        sets: list[NDArray] = [pos[:, :2], *path_xy]
        sets += [a.reshape(1, -1)[:, :2] for a in (robot_pose, goal_xy) if a is not None]
        if driven_xy is not None:
            sets.append(driven_xy)
        extent = auto_extent(*sets, margin=margin)
    xmin, xmax, ymin, ymax = (float(v) for v in extent)
    if not (all(math.isfinite(v) for v in extent) and xmax > xmin and ymax > ymin):
        raise ValueError(f"extent must be finite (xmin, xmax, ymin, ymax) with min < max, "
                         f"got {extent!r}")
    res = max(float(resolution), max(xmax - xmin, ymax - ymin) / max(int(max_size), 1))
    map_w = max(1, math.ceil((xmax - xmin) / res - 1e-9))
    map_h = max(1, math.ceil((ymax - ymin) / res - 1e-9))

    font = 0.45
    asc, desc = _text_height(font)
    band = asc + desc + 10
    width = max(map_w, 420)
    left = (width - map_w) // 2
    view = MapView(xmin, ymax, res, left, band, map_w, map_h, width, band + map_h + band)
    img = np.empty((view.height, view.width, 3), dtype=np.uint8)
    img[:] = _BAND_BG
    img[band:band + map_h, left:left + map_w] = _UNKNOWN

    n_vox = _draw_voxels(img, view, pos, cols_in, voxel_size, floor_z, max_z)

    # Everything drawn from here on is clipped to the map area, then the bands are restored.
    bands = img.copy()
    if driven_xy is not None:
        _polyline(img, view, driven_xy, _DRIVEN, max(1, round(0.02 / res)),
                  halo_color=(255, 255, 255))
    thin = max(2, round(0.04 / res))
    best = -1
    if s is not None and len(s):
        colours = score_colors(s)
        finite = np.isfinite(s)
        if finite.any():
            best = int(np.flatnonzero(finite)[np.argmax(s[finite])])
        key = np.where(finite, s, -np.inf)
        order = [i for i in np.argsort(key, kind="stable") if i != best]
        order += [best] if best >= 0 else []
    else:
        colours = np.tile(np.array(_NEUTRAL_PATH, dtype=np.uint8), (len(path_xy), 1))
        order = list(range(len(path_xy)))
    for i in order:
        _polyline(img, view, path_xy[i], tuple(colours[i]), 2 * thin if i == best else thin)
    if best >= 0 and len(path_xy[best]):
        end = view.continuous(path_xy[best][-1]) - 0.5
        r = max(3, thin + 1)
        c = (int(round(end[0])), int(round(end[1])))
        cv2.circle(img, c, r + 1, _HALO, -1, cv2.LINE_AA)
        cv2.circle(img, c, r, tuple(int(v) for v in colours[best]), -1, cv2.LINE_AA)
    if goal_xy is not None:
        centre = view.continuous(goal_xy) - 0.5
        _polygon(img, _star(centre, max(9.0, 0.2 / res)), _GOAL)
    if robot_pose is not None:
        x, y, yaw = robot_pose
        size = max(8.0, robot_size / res)
        local = np.array([[1.0, 0.0], [-0.7, 0.6], [-0.35, 0.0], [-0.7, -0.6]]) * size
        c, sn = math.cos(yaw), math.sin(yaw)
        # map (dx, dy) -> image (d col, d row) = (dx, -dy): y is up
        corners = np.stack([local[:, 0] * c - local[:, 1] * sn,
                            -(local[:, 0] * sn + local[:, 1] * c)], -1)
        _polygon(img, view.continuous((x, y)) - 0.5 + corners, _ROBOT)
    outside = np.ones(img.shape[:2], dtype=bool)
    outside[band:band + map_h, left:left + map_w] = False
    img[outside] = bands[outside]

    legend = [title] if title else []
    if counts:
        legend.append(f"voxels {n_vox}")
        legend.append(f"paths {len(path_xy)}")
    if best >= 0:
        legend.append(f"best #{best} ({s[best]:.3g})")
    legend.append(f"{res * 100:.3g} cm/px")
    _draw_text(img, " | ".join(legend), 8, 0, band, width - 16, font)
    height_key = (floor_z, max_z) if cols_in is None and n_vox else None
    _footer(img, view, band + map_h, band, s is not None and len(path_xy) > 0, height_key, font)
    return (img, view) if return_view else img


# ---------------------------------------------------------------------------------- files
def save_png(path: str | Path, rgb: ArrayLike) -> Path:
    """Write an RGB (or grey) ``uint8`` image as PNG, creating the folder; returns the path."""
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"save_png wants uint8 [H, W, 3] RGB or [H, W], got {img.dtype} "
                         f"{img.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = img if img.ndim == 2 else img[:, :, ::-1]
    if not cv2.imwrite(str(path), np.ascontiguousarray(bgr)):
        raise OSError(f"could not write {path}")
    return path
