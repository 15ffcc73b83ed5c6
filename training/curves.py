"""A PNG of the learning curves, drawn with OpenCV (already a dependency): no plotting library needed.

Two panels side by side: training losses (log scale) and validation metrics (linear), against the step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from core.images import encode_png

PANEL_W, PANEL_H = 560, 360
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 70, 20, 46, 46
LEGEND_X, LEGEND_COLUMN = 250, 150
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
"""Matplotlib's tab10 colours (RGB), so the figure reads like the usual ones."""


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = hi - lo if hi > lo else abs(hi) or 1.0
    step = 10 ** math.floor(math.log10(span / count))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= count:
            step *= factor
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _panel(
    title: str, x: Sequence[float], series: dict[str, Sequence[float]], log_y: bool
) -> np.ndarray:  # -> [H, W, 3] uint8 RGB
    img = np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title, (MARGIN_L, 26), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    plot_w, plot_h = PANEL_W - MARGIN_L - MARGIN_R, PANEL_H - MARGIN_T - MARGIN_B
    cv2.rectangle(img, (MARGIN_L, MARGIN_T), (MARGIN_L + plot_w, MARGIN_T + plot_h), (0, 0, 0), 1)
    points = {
        name: [(xi, yi) for xi, yi in zip(x, ys) if yi is not None and math.isfinite(yi) and (yi > 0 or not log_y)]
        for name, ys in series.items()
    }
    values = [y for pts in points.values() for _, y in pts]
    xs = [xi for pts in points.values() for xi, _ in pts]
    if not values:
        cv2.putText(img, "no data yet", (MARGIN_L + 20, MARGIN_T + 40), font, 0.5, (90, 90, 90), 1, cv2.LINE_AA)
        return img
    transform = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    y_lo, y_hi = transform(min(values)), transform(max(values))
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    pad = 0.05 * (y_hi - y_lo)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_lo, x_hi = min(xs), max(xs)
    if x_hi <= x_lo:
        x_hi = x_lo + 1

    def to_px(xv: float, yv: float) -> tuple[int, int]:
        px = MARGIN_L + (xv - x_lo) / (x_hi - x_lo) * plot_w
        py = MARGIN_T + plot_h - (transform(yv) - y_lo) / (y_hi - y_lo) * plot_h
        return int(round(px)), int(round(py))

    y_ticks = _nice_ticks(y_lo, y_hi)
    for tick in y_ticks:
        py = int(round(MARGIN_T + plot_h - (tick - y_lo) / (y_hi - y_lo) * plot_h))
        cv2.line(img, (MARGIN_L, py), (MARGIN_L + plot_w, py), (225, 225, 225), 1)
        label = f"{10**tick:.3g}" if log_y else f"{tick:.3g}"
        cv2.putText(img, label, (4, py + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for tick in _nice_ticks(x_lo, x_hi):
        px = int(round(MARGIN_L + (tick - x_lo) / (x_hi - x_lo) * plot_w))
        cv2.line(img, (px, MARGIN_T + plot_h), (px, MARGIN_T + plot_h + 4), (0, 0, 0), 1)
        cv2.putText(img, f"{tick:g}", (px - 12, MARGIN_T + plot_h + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "step", (MARGIN_L + plot_w // 2 - 14, PANEL_H - 8), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for i, pts in enumerate(points.values()):
        colour = COLOURS[i % len(COLOURS)]
        pixels = np.array([to_px(xi, yi) for xi, yi in pts], np.int32)
        if len(pixels) > 1:
            cv2.polylines(img, [pixels], False, colour, 2, cv2.LINE_AA)
        for p in pixels if len(pixels) < 40 else pixels[-1:]:
            cv2.circle(img, tuple(int(c) for c in p), 3, colour, -1, cv2.LINE_AA)
    # the legend in the top margin, two entries a row, so no curve runs through it
    for i, name in enumerate(points):
        colour = COLOURS[i % len(COLOURS)]
        lx, ly = LEGEND_X + (i % 2) * LEGEND_COLUMN, 14 + (i // 2) * 16
        cv2.line(img, (lx, ly - 4), (lx + 20, ly - 4), colour, 2)
        cv2.putText(img, name, (lx + 25, ly), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def curves_png(rows: Sequence[dict], train_keys: Sequence[str], val_keys: Sequence[str], title: str = "") -> bytes:
    """PNG bytes: training losses (log y) and validation metrics against ``step``.

    Args:
        rows: metric rows (dicts with a ``step`` and any of the keys; missing or empty values are skipped).
        train_keys: columns for the left panel.
        val_keys: columns for the right panel.
        title: prefix of both panel titles.
    """

    def column(key: str) -> list[float | None]:
        out = []
        for row in rows:
            value = row.get(key)
            out.append(float(value) if value not in (None, "") else None)
        return out

    steps = [float(row["step"]) for row in rows]
    left = _panel(f"{title} training loss".strip(), steps, {k: column(k) for k in train_keys}, log_y=True)
    right = _panel(f"{title} validation".strip(), steps, {k: column(k) for k in val_keys}, log_y=False)
    return encode_png(np.concatenate([left, right], axis=1).astype(np.float32) / 255.0)
