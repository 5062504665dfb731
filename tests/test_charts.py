"""Charts as JupyterLab shows them: as wide as the notebook (about 1,000 px), text no smaller
than the notebook's body text, nothing sticking out (labels beside bars stay inside the chart).

The lessons' three kinds of chart are drawn from made-up measurements, without a database.
"""

from __future__ import annotations

import struct

import pytest
from matplotlib.text import Text

from course.lab.bulk import Race, Timing
from course.lab.loaders import Comparison, Measurement
from course.lab.plots import MIN_FONT_PT, PX_PER_INCH, Chart
from course.lab.pooling import BurstResult, TaskRun, timeline

BODY_TEXT_PX = 14  # JupyterLab's --jp-content-font-size1


def bulk_chart() -> Chart:
    names = ["add_all() + flush", "ORM bulk, None splits batches", "ORM bulk + RETURNING id",
             "Core insert, executemany", "raw driver executemany"]
    timings = {n: Timing(n, 2000 * (i + 1), 0.01 * (5 - i) + 0.001, 2000 if i == 0 else 3 - i // 2)
               for i, n in enumerate(names)}
    return Race("sqlite", timings).chart()


def pool_chart() -> Chart:
    tasks = [TaskRun(task=i, requested=0.0, acquired=0.01 * i if i < 3 else None,
                     released=0.4 + 0.01 * i if i < 3 else None, failed=None if i < 3 else 1.2,
                     outcome="ok" if i < 3 else "timeout", connection=i + 1 if i < 3 else None) for i in range(6)]
    settings = {"pool_size": 2, "max_overflow": 1, "pool_timeout": 0.2, "tasks": 6, "hold": 1.0}
    return timeline(BurstResult(settings=settings, tasks=tasks, seconds=1.2, backend="sqlite",
                                pool={"peak": 3, "connects": 3, "checkouts": 3, "overflow": 1}))


def loader_chart() -> Chart:
    return Comparison([Measurement("lazy", 11, 40, 0.012), Measurement("selectinload", 2, 40, 0.004),
                       Measurement("joinedload", 1, 40, 0.003)]).chart("Loading 10 users' posts")


CHARTS = {"bulk": bulk_chart, "pool": pool_chart, "loaders": loader_chart}


@pytest.mark.parametrize("make", CHARTS.values(), ids=CHARTS.keys())
def test_chart_takes_the_notebook_width_with_readable_text(make) -> None:
    chart = make()
    data, metadata = chart._repr_mimebundle_()
    png = data["image/png"]
    width, _height = struct.unpack(">II", png[16:24])  # the PNG's IHDR
    shown = metadata["image/png"]["width"]
    assert shown >= 900, f"shown {shown} px wide: less than the notebook's width at a 1280 px window"
    assert width >= 2 * shown * 0.99  # sharp on a HiDPI screen
    sizes = {t.get_text(): t.get_fontsize() for t in chart.figure.findobj(Text) if t.get_text()}
    px_per_pt = PX_PER_INCH / 72
    small = {text: size for text, size in sizes.items() if size * px_per_pt < BODY_TEXT_PX}
    assert not small, f"text smaller than the notebook's {BODY_TEXT_PX} px: {small}"
    assert MIN_FONT_PT * px_per_pt >= BODY_TEXT_PX
    assert chart.overflowing() == []


def test_chart_html_fills_its_panel_up_to_its_own_width() -> None:
    markup = pool_chart().html("pool timeline")
    assert 'style="width:100%;max-width:1000px;height:auto"' in markup
