"""Charts for lessons: matplotlib figures that show themselves as PNG images.

No pyplot and no backend set-up: a ``Figure`` is drawn with the Agg canvas and
returned as PNG bytes, so a chart renders the same in JupyterLab, under nbval
and in a headless browser. matplotlib is imported only by the functions that draw.

Size: a chart is shown :data:`PX_PER_INCH` CSS pixels per inch of its figure (a 10-inch
figure is 1,000 px wide, about the notebook's width in a 1280 px window), never wider
than the notebook, and drawn at twice that resolution so it stays sharp on a HiDPI
screen. Text: no label is smaller than :data:`MIN_FONT_PT`, which at that scale is
about 15 px, a little more than JupyterLab's body text (14 px).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

PX_PER_INCH = 100  # CSS pixels per figure inch, as shown
SHARPNESS = 2  # device pixels per CSS pixel in the PNG
MIN_FONT_PT = 11.0  # 11 pt at 100 px per inch: 15.3 px


@dataclass
class Chart:
    """A matplotlib Figure that shows itself as a PNG in any notebook, as wide as the notebook allows."""

    figure: Any

    @property
    def width_px(self) -> int:
        """The width it is shown at (CSS pixels), unless the notebook is narrower."""
        return round(self.figure.get_figwidth() * PX_PER_INCH)

    def legible(self) -> None:
        """Raise every label, tick and title to at least :data:`MIN_FONT_PT`."""
        from matplotlib.text import Text

        for ax in self.figure.axes:
            for axis in ("x", "y"):
                ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
                size = max([t.get_fontsize() for t in ticks] + [MIN_FONT_PT])
                ax.tick_params(axis=axis, which="both", labelsize=size)
        for text in self.figure.findobj(Text):
            if text.get_fontsize() < MIN_FONT_PT:
                text.set_fontsize(MIN_FONT_PT)

    def png(self, dpi: int | None = None) -> bytes:
        self.legible()
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=dpi or PX_PER_INCH * SHARPNESS)
        return buffer.getvalue()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        # the width JupyterLab gives the <img>; its stylesheet keeps it within the notebook
        return {"image/png": self.png(), "text/plain": repr(self)}, {"image/png": {"width": self.width_px}}

    def html(self, alt: str = "chart") -> str:
        """An ``<img>`` tag with the PNG inline: for widgets that render HTML.

        It takes the room it is given up to its own width, never more: a chart in a panel
        as wide as the notebook is shown as wide as in an output cell.
        """
        import base64

        data = base64.b64encode(self.png()).decode("ascii")
        return (
            f'<img class="course-chart" alt="{alt}" style="width:100%;max-width:{self.width_px}px;height:auto"'
            f' src="data:image/png;base64,{data}"/>'
        )

    def overflowing(self) -> list[str]:
        """What sticks out: a label beside a bar out of its axes, an axes' labels out of the figure."""
        self.legible()
        self.figure.draw_without_rendering()
        page, out = self.figure.bbox, []

        def outside(box: Any, frame: Any) -> bool:
            return box.x0 < frame.x0 - 1 or box.x1 > frame.x1 + 1 or box.y0 < frame.y0 - 1 or box.y1 > frame.y1 + 1

        for ax in self.figure.axes:
            for text in ax.texts:
                extent = text.get_window_extent()
                if text.get_text() and (extent.x1 > ax.bbox.x1 + 1 or extent.x0 < ax.bbox.x0 - 1):
                    out.append(f"{text.get_text()!r} beyond its axes")
            if outside(ax.get_tightbbox(), page):  # ticks, tick labels, titles as drawn
                out.append(f"axes {ax.get_title()!r} beyond the figure")
        out += [f"{t.get_text()!r} beyond the figure" for t in self.figure.texts if outside(t.get_window_extent(), page)]
        return out

    def fit_texts(self, ax: Any, *, tries: int = 6) -> None:
        """Widen ``ax``'s x range until the texts placed in it (labels beside bars) fit inside it."""
        for _ in range(tries):
            self.legible()
            self.figure.draw_without_rendering()
            box = ax.bbox
            right = max((t.get_window_extent().x1 for t in ax.texts if t.get_text()), default=box.x1)
            if right <= box.x1 - 4:
                return
            low, high = ax.get_xlim()
            if ax.get_xscale() == "log":
                import math

                span = math.log10(high) - math.log10(low)
                grow = span * ((right - box.x0) / max(box.width, 1) - 1) + span * 0.05
                ax.set_xlim(low, 10 ** (math.log10(high) + grow))
            else:
                ax.set_xlim(low, low + (high - low) * ((right - box.x0) / max(box.width, 1) + 0.05))

    def __repr__(self) -> str:
        return f"<Chart: {len(self.figure.axes)} panels>"
