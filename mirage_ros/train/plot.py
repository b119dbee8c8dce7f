"""Line charts of time series (training losses, soak and scaling runs) as RGB arrays, drawn
with numpy and OpenCV (no matplotlib in the runtime dependencies).

:func:`panels` stacks one chart per :class:`Panel` (shared x axis), each with its own y axis,
tick labels, a legend and an optional shaded x span (a warm-up); :func:`save_png` writes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BG = (255, 255, 255)
_AXIS = (40, 40, 40)
_GRID = (225, 225, 225)
_SHADE = (238, 238, 246)
_TEXT = (20, 20, 20)


@dataclass
class Series:
    """One line: ``y`` over ``x`` (NaN = a gap), drawn dashed when ``dashed``."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: tuple[int, int, int]  # RGB
    dashed: bool = False


@dataclass
class Panel:
    title: str
    series: list[Series] = field(default_factory=list)
    y_label: str = ""
    y_min: float | None = 0.0  # None: from the data
    shade: tuple[float, float] | None = None  # an x span drawn grey (e.g. the warm-up)
    shade_label: str = ""


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi] (steps of 1, 2 or 5 x 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else [0.0]
    raw = (hi - lo) / max(count, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 and float(v).is_integer():
        return f"{int(v):d}"
    return f"{v:.6g}"


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45,
          color=_TEXT, thick: int = 1) -> None:
    cv2.putText(img, text, org, _FONT, scale, color, thick, cv2.LINE_AA)


def _polyline(img, pts: np.ndarray, color, dashed: bool, thick: int = 2) -> None:
    if len(pts) == 1:
        cv2.circle(img, tuple(int(v) for v in pts[0]), 2, color, -1, cv2.LINE_AA)
        return
    if not dashed:
        cv2.polylines(img, [pts.astype(np.int32)], False, color, thick, cv2.LINE_AA)
        return
    dash, gap = 9.0, 6.0
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        length = float(np.hypot(*(b - a)))
        s = 0.0
        while s < length:
            e = min(s + dash, length)
            p = a + (b - a) * (s / length)
            q = a + (b - a) * (e / length)
            cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), color, thick,
                     cv2.LINE_AA)
            s += dash + gap


def panels(
    charts: Sequence[Panel],
    *,
    x_label: str = "",
    title: str = "",
    width: int = 1100,
    panel_height: int = 260,
) -> np.ndarray:
    """The charts stacked top to bottom over one x range, as ``uint8 [H, W, 3]`` RGB."""
    left, right, top_pad, ticks = 90, 30, 34, 26  # title band above, tick labels below a plot
    header = 36 if title else 6
    footer = 24 if x_label else 0
    height = header + len(charts) * (top_pad + panel_height + ticks) + footer
    img = np.full((height, width, 3), _BG, dtype=np.uint8)
    if title:
        _text(img, title, (left, 24), 0.6, thick=1)
    xs = [float(v) for c in charts for s in c.series for v in s.x if math.isfinite(float(v))]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_hi <= x_lo:
        x_hi = x_lo + 1.0
    x0, x1 = left, width - right

    def px(x):
        return x0 + (np.asarray(x, dtype=np.float64) - x_lo) / (x_hi - x_lo) * (x1 - x0)

    x_ticks = nice_ticks(x_lo, x_hi, 8)
    for i, chart in enumerate(charts):
        y0 = header + i * (top_pad + panel_height + ticks) + top_pad  # top of the plot area
        y1 = y0 + panel_height
        ys = [float(v) for s in chart.series for v in s.y if math.isfinite(float(v))]
        lo = min(ys) if ys else 0.0
        hi = max(ys) if ys else 1.0
        if chart.y_min is not None:
            lo = min(chart.y_min, lo)
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1.0)
        hi += pad
        if chart.y_min is None:
            lo -= pad

        def py(y, lo=lo, hi=hi, y0=y0, y1=y1):
            return y1 - (np.asarray(y, dtype=np.float64) - lo) / (hi - lo) * (y1 - y0)

        if chart.shade is not None:
            a, b = (int(np.clip(px(v), x0, x1)) for v in chart.shade)
            cv2.rectangle(img, (a, y0), (b, y1), _SHADE, -1)
            if chart.shade_label:
                _text(img, chart.shade_label, (a + 4, y1 - 6), 0.4, (110, 110, 140))
        for t in nice_ticks(lo, hi, 5):
            yy = int(py(t))
            if y0 <= yy <= y1:
                cv2.line(img, (x0, yy), (x1, yy), _GRID, 1)
                label = _fmt(t)
                (w, _), _ = cv2.getTextSize(label, _FONT, 0.4, 1)
                _text(img, label, (x0 - 6 - w, yy + 4), 0.4)
        for t in x_ticks:
            xx = int(px(t))
            cv2.line(img, (xx, y0), (xx, y1), _GRID, 1)
            cv2.line(img, (xx, y1), (xx, y1 + 4), _AXIS, 1)
            label = _fmt(t)
            (w, _), _ = cv2.getTextSize(label, _FONT, 0.4, 1)
            _text(img, label, (xx - w // 2, y1 + 17), 0.4)
        cv2.rectangle(img, (x0, y0), (x1, y1), _AXIS, 1)
        _text(img, chart.title, (x0, y0 - 9), 0.5, thick=1)
        if chart.y_label:
            (w, _), _ = cv2.getTextSize(chart.y_label, _FONT, 0.42, 1)
            label = np.full((20, w + 4, 3), _BG, dtype=np.uint8)
            _text(label, chart.y_label, (2, 14), 0.42)
            label = np.rot90(label)
            h_l = label.shape[0]
            ya = max(y0, (y0 + y1) // 2 - h_l // 2)
            img[ya:ya + min(h_l, y1 - ya), 8:28] = label[:min(h_l, y1 - ya)]
        # The legend, right-aligned above the plot.
        lx = x1
        for s in reversed(chart.series):
            (w, _), _ = cv2.getTextSize(s.label, _FONT, 0.42, 1)
            lx -= w + 34
            _polyline(img, np.array([[lx, y0 - 13], [lx + 24, y0 - 13]], dtype=np.float64),
                      s.color, s.dashed)
            _text(img, s.label, (lx + 28, y0 - 9), 0.42)
        for s in chart.series:
            x = np.asarray(s.x, dtype=np.float64)
            y = np.asarray(s.y, dtype=np.float64)
            ok = np.isfinite(x) & np.isfinite(y)
            # Split at gaps so a missing value is not bridged.
            runs = np.split(np.arange(len(x)), np.flatnonzero(~ok) + 1) if len(x) else []
            for run in runs:
                run = run[ok[run]]
                if len(run):
                    pts = np.stack([px(x[run]), py(y[run])], 1)
                    _polyline(img, pts, s.color, s.dashed)
    if x_label:
        (w, _), _ = cv2.getTextSize(x_label, _FONT, 0.45, 1)
        _text(img, x_label, ((x0 + x1 - w) // 2, height - 10), 0.45)
    return img


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB image as PNG (OpenCV wants BGR)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
