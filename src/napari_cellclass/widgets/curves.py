"""Live training curves drawn with QPainter (napari ships no plotting library).

Two small plots, one above the other: losses (training, validation) and validation
metrics (accuracy, macro F1, mean Dice — in [0, 1]), against epochs.  Points are
added as the training reports them; the axes rescale to what is shown.  Each series
has its own colour, line style and marker (accuracy and macro F1 often coincide: a
solid line with dots under a dashed one with squares stays readable), and the legend
sits above the plot, never over the lines.
"""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

# Okabe–Ito, as the class colours: distinguishable for colour-blind readers
COLORS = {"loss": "#E69F00", "val_loss": "#56B4E9", "val_accuracy": "#009E73", "val_macro_f1": "#CC79A7",
          "val_mean_dice": "#0072B2"}
LOSSES = ("loss", "val_loss")
#: (line style, marker) per series; unknown ones cycle through these
STYLES = {"loss": (Qt.PenStyle.SolidLine, "dot"), "val_loss": (Qt.PenStyle.DashLine, "square"),
          "val_accuracy": (Qt.PenStyle.SolidLine, "dot"), "val_macro_f1": (Qt.PenStyle.DashLine, "square"),
          "val_mean_dice": (Qt.PenStyle.DotLine, "diamond")}
MARGINS = (38.0, 8.0, 30.0, 16.0)  # left, right, top (title row + legend row), bottom


class TrainingCurves(QWidget):
    """``add(epoch, {"loss": .., "val_loss": .., "val_accuracy": ..})`` and it redraws."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.setMinimumHeight(220)
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
        xs = [x for pts in self.series.values() for x, _ in pts]
        x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if x1 - x0 < 1e-9:
            x0, x1 = x0 - 0.5, x1 + 0.5
        for box, (title, names, fixed) in zip(self.panel_boxes(), panels):
            self._panel(p, box, title, names, fixed, (x0, x1), fg)
        p.end()

    def panel_boxes(self) -> list[QRectF]:
        """Each panel's whole area, top to bottom."""
        n = len(self._panels())
        h = self.height() / n
        return [QRectF(0, i * h, self.width(), h) for i in range(n)]

    @staticmethod
    def plot_rect(box: QRectF) -> QRectF:
        left, right, top, bottom = MARGINS
        return QRectF(box.left() + left, box.top() + top, box.width() - left - right, box.height() - top - bottom)

    def legend_rects(self, box: QRectF, names: list[str], metrics: Any) -> list[QRectF]:
        """Where each series' legend entry goes: the row between the title and the plot."""
        x, out = box.left() + MARGINS[0], []
        for name in names:
            w = 22 + metrics.horizontalAdvance(_label(name))
            out.append(QRectF(x, box.top() + 15, w, 14))
            x += w + 10
        return out

    @staticmethod
    def style(name: str) -> tuple[str, Qt.PenStyle, str]:
        """(colour, line style, marker) of series ``name``."""
        line, marker = STYLES.get(name, (Qt.PenStyle.DashDotLine, "dot"))
        return COLORS.get(name, "#999999"), line, marker

    def _panel(self, p: QPainter, box: QRectF, title: str, names: list[str], fixed: tuple[float, float] | None,
               xr: tuple[float, float], fg: QColor) -> None:
        left = MARGINS[0]
        plot = self.plot_rect(box)
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
        p.drawText(QRectF(box.left() + left, box.top(), plot.width(), 14), Qt.AlignmentFlag.AlignLeft, title)
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

        p.save()
        p.setClipRect(plot.adjusted(-4, -4, 4, 4))  # markers at the edges stay whole, nothing spills on the labels
        for name in names:
            color, line, marker = self.style(name)
            pts = [to_px(x, y) for x, y in self.series[name]]
            p.setPen(QPen(QColor(color), 2, line))
            if len(pts) > 1:
                p.drawPolyline(QPolygonF(pts))
            p.setPen(QPen(QColor(color), 1.5))
            for q in pts:
                _marker(p, q, marker)
        p.restore()
        for name, r in zip(names, self.legend_rects(box, names, p.fontMetrics())):
            color, line, marker = self.style(name)
            mid = QPointF(r.left() + 9, r.center().y())
            p.setPen(QPen(QColor(color), 2, line))
            p.drawLine(QPointF(r.left(), mid.y()), QPointF(r.left() + 18, mid.y()))
            p.setPen(QPen(QColor(color), 1.5))
            _marker(p, mid, marker)
            p.setPen(QPen(fg, 1))
            p.drawText(QRectF(r.left() + 22, r.top(), r.width() - 22, r.height()), Qt.AlignmentFlag.AlignLeft, _label(name))


def _label(name: str) -> str:
    return name.replace("val_", "validation ").replace("_", " ")


def _marker(p: QPainter, q: QPointF, kind: str) -> None:
    if kind == "square":
        p.drawRect(QRectF(q.x() - 2.5, q.y() - 2.5, 5, 5))
    elif kind == "diamond":
        p.drawPolygon(QPolygonF([QPointF(q.x(), q.y() - 3), QPointF(q.x() + 3, q.y()), QPointF(q.x(), q.y() + 3),
                                 QPointF(q.x() - 3, q.y())]))
    else:
        p.drawEllipse(q, 2.5, 2.5)
