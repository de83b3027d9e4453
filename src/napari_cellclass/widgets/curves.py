"""Live training curves drawn with QPainter (napari ships no plotting library).

Two small plots, one above the other: losses (training, validation) and validation
metrics (accuracy, macro F1, mean Dice — in [0, 1]), against epochs.  Points are
added as the training reports them; the axes rescale to what is shown.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

# Okabe–Ito, as the class colours: distinguishable for colour-blind readers
COLORS = {"loss": "#E69F00", "val_loss": "#56B4E9", "val_accuracy": "#009E73", "val_macro_f1": "#CC79A7",
          "val_mean_dice": "#0072B2"}
LOSSES = ("loss", "val_loss")


class TrainingCurves(QWidget):
    """``add(epoch, {"loss": .., "val_loss": .., "val_accuracy": ..})`` and it redraws."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.setMinimumHeight(190)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def clear(self) -> None:
        self.series = {}
        self.update()

    def add(self, x: float, values: dict[str, float | None]) -> None:
        for name, v in values.items():
            if v is None or not math.isfinite(float(v)):
                continue
            pts = self.series.setdefault(name, [])
            pts.append((float(x), float(v)))
        self.update()

    def _panels(self) -> list[tuple[str, list[str], tuple[float, float] | None]]:
        losses = [n for n in LOSSES if self.series.get(n)]
        metrics = [n for n in self.series if n not in LOSSES and self.series[n]]
        return [("loss", losses, None), ("validation metric", metrics, (0.0, 1.0))]

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        fg = pal.color(pal.ColorRole.WindowText)
        p.fillRect(self.rect(), pal.color(pal.ColorRole.Base))
        font = QFont(p.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        p.setFont(font)
        panels = self._panels()
        h = self.height() / len(panels)
        xs = [x for pts in self.series.values() for x, _ in pts]
        x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if x1 - x0 < 1e-9:
            x0, x1 = x0 - 0.5, x1 + 0.5
        for i, (title, names, fixed) in enumerate(panels):
            self._panel(p, QRectF(0, i * h, self.width(), h), title, names, fixed, (x0, x1), fg)
        p.end()

    def _panel(self, p: QPainter, box: QRectF, title: str, names: list[str], fixed: tuple[float, float] | None,
               xr: tuple[float, float], fg: QColor) -> None:
        left, right, top, bottom = 38.0, 8.0, 16.0, 16.0
        plot = QRectF(box.left() + left, box.top() + top, box.width() - left - right, box.height() - top - bottom)
        ys = [y for n in names for _, y in self.series[n]]
        if fixed is not None:
            y0, y1 = fixed
        elif ys:
            y0, y1 = min(0.0, min(ys)), max(ys)
        else:
            y0, y1 = 0.0, 1.0
        if y1 - y0 < 1e-9:
            y1 = y0 + 1.0
        p.setPen(QPen(fg, 1))
        p.drawRect(plot)
        p.drawText(QRectF(box.left() + left, box.top(), plot.width(), top), Qt.AlignmentFlag.AlignLeft, title)
        p.drawText(QRectF(box.left(), plot.top() - 6, left - 4, 14), Qt.AlignmentFlag.AlignRight, f"{y1:.3g}")
        p.drawText(QRectF(box.left(), plot.bottom() - 8, left - 4, 14), Qt.AlignmentFlag.AlignRight, f"{y0:.3g}")
        p.drawText(QRectF(plot.left(), plot.bottom() + 1, 60, 14), Qt.AlignmentFlag.AlignLeft, f"epoch {xr[0]:g}")
        p.drawText(QRectF(plot.right() - 60, plot.bottom() + 1, 60, 14), Qt.AlignmentFlag.AlignRight, f"{xr[1]:g}")
        if not names:
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "curves appear as the model trains")
            return

        def to_px(x: float, y: float) -> QPointF:
            return QPointF(plot.left() + (x - xr[0]) / (xr[1] - xr[0]) * plot.width(),
                           plot.bottom() - (y - y0) / (y1 - y0) * plot.height())

        legend_x = plot.left() + 4
        for name in names:
            color = QColor(COLORS.get(name, "#999999"))
            p.setPen(QPen(color, 2))
            pts = [to_px(x, y) for x, y in self.series[name]]
            if len(pts) > 1:
                p.drawPolyline(QPolygonF(pts))
            for q in pts:
                p.drawEllipse(q, 2.5, 2.5)
            p.drawText(QRectF(legend_x, plot.top() + 2, 120, 14), Qt.AlignmentFlag.AlignLeft, name.replace("_", " "))
            legend_x += 8 + p.fontMetrics().horizontalAdvance(name.replace("_", " "))
