"""Charts for lessons: matplotlib figures that show themselves as PNG images.

No pyplot and no backend set-up: a ``Figure`` is drawn with the Agg canvas and
returned as PNG bytes, so a chart renders the same in JupyterLab, under nbval
and in a headless browser. matplotlib is imported only by the functions that draw.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any


@dataclass
class Chart:
    """A matplotlib Figure that shows itself as a PNG in any notebook."""

    figure: Any

    def png(self, dpi: int = 100) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self.png()

    def html(self, alt: str = "chart") -> str:
        """An ``<img>`` tag with the PNG inline: for widgets that render HTML.

        It shrinks to the room it is given (never grows past its own size), so a chart
        beside a widget's controls is shown whole, not cut off at the edge.
        """
        import base64

        data = base64.b64encode(self.png()).decode("ascii")
        return f'<img alt="{alt}" style="max-width:100%;height:auto" src="data:image/png;base64,{data}"/>'

    def __repr__(self) -> str:
        return f"<Chart: {len(self.figure.axes)} panels>"

