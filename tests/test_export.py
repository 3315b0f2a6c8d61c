"""Charts saved for slides: a PNG and an SVG of the page's own figures, drawn in a child process."""

import pandas as pd
import pytest

from initviz import charts
from initviz.export import FORMATS, PNG_SCALE, render


@pytest.fixture(scope="module")
def figure() -> charts.Figure:
    frame = pd.DataFrame({"layer": [1, 2, 3] * 2, "scheme": ["a"] * 3 + ["b"] * 3,
                          "source": "measured", "value": [1.0, 0.5, 0.25, 1.0, 1.0, 1.0]})
    return charts.by_layer(frame, "activation std", ["a", "b"], title="Forward: std per layer")


def test_a_chart_is_saved_as_an_svg_with_its_title_and_legend(figure):
    svg = render(figure.to_dict(), "svg").decode()
    assert svg.startswith("<svg") and "Forward: std per layer" in svg
    assert ">a<" in svg and ">b<" in svg  # the legend names both schemes


def test_a_chart_is_saved_as_a_png_at_twice_its_size(figure):
    png = render(figure.to_dict(), "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(png[16:20], "big")  # the IHDR chunk: width, then height
    assert PNG_SCALE == 2 and width >= 2 * 300


def test_an_unknown_format_or_a_broken_spec_is_refused_with_a_sentence(figure):
    with pytest.raises(ValueError, match="no image format 'gif'"):
        render(figure.to_dict(), "gif")
    with pytest.raises(RuntimeError, match="the svg renderer failed"):
        render({"mark": "no-such-mark"}, "svg")
    assert set(FORMATS) == {"png", "svg"}
