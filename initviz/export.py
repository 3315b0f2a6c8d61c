"""Charts as image files for slides: PNG or SVG, drawn by vl-convert in a child process.

vl-convert renders Vega-Lite with its own JavaScript engine, which keeps about 70 MB resident
once it has drawn a chart. A server shared by a room must not keep that for every visitor who
once saved a chart, so each image is drawn by a short-lived child process (about a second).
"""

from __future__ import annotations

import json
import subprocess
import sys

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
"""File formats a chart can be saved in, with their MIME types."""
PNG_SCALE = 2
"""Pixels per CSS pixel in a PNG: sharp on a projector and on a high-density screen."""
TIMEOUT_SECONDS = 60

# Not `python -m initviz...`: that would import the package, and with it torch, in the child.
_CHILD = f"""
import json, sys
import vl_convert
spec = json.load(sys.stdin)
if sys.argv[1] == "png":
    sys.stdout.buffer.write(vl_convert.vegalite_to_png(spec, scale={PNG_SCALE}))
else:
    sys.stdout.buffer.write(vl_convert.vegalite_to_svg(spec).encode())
"""


def render(spec: dict, fmt: str) -> bytes:
    """One chart as an image file.

    Args:
        spec: a complete Vega-Lite spec, data inline (``Figure.to_dict()``).
        fmt: ``"png"`` or ``"svg"`` (:data:`FORMATS`).

    Returns:
        The file's bytes.

    Raises:
        ValueError: an unknown format.
        RuntimeError: the renderer failed; its message says why.

    Example::

        >>> png = render(charts.by_layer(frame, "std", ["kaiming_normal"]).to_dict(), "png")
    """
    if fmt not in FORMATS:
        raise ValueError(f"no image format {fmt!r} (one of {', '.join(FORMATS)})")
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, fmt], input=json.dumps(spec).encode(),
                              capture_output=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"drawing the {fmt} took over {TIMEOUT_SECONDS} s") from error
    if done.returncode:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"the {fmt} renderer failed: {last[0]}")
    return done.stdout


__all__ = ["FORMATS", "PNG_SCALE", "render"]
