"""Headless Chromium for the report tests: the DOM after layout, a measurement, a screenshot.

The report itself carries no script. To measure how it lays out, a test copies it and appends a
probe that writes the measurements into the DOM, which `--dump-dom` then returns."""

from __future__ import annotations

import html
import json
import re
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def _run(browser: str, profile: Path, *args: str) -> str:
    done = subprocess.run(
        [browser, *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(browser: str, profile: Path, page: Path, width: int = 1400) -> str:
    """The DOM after Chromium has parsed and laid out `page` in a window `width` pixels wide."""
    return _run(browser, profile, f"--window-size={width},1000", "--dump-dom", page.as_uri())


def measure(browser: str, profile: Path, page: Path, probe_js: str, width: int = 1400) -> Any:
    """Run `probe_js` (an expression) against a copy of `page` as laid out `width` pixels wide."""
    probed = page.with_name(page.stem + ".probe.html")
    script = f"<script>document.body.setAttribute('data-probe', JSON.stringify({probe_js}));</script>"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), "utf-8")
    dom = dump_dom(browser, profile, probed, width)
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the probe did not run"
    return json.loads(html.unescape(found.group(1)))


def screenshot(
    browser: str, profile: Path, page: Path, out: Path, width: int = 1400, height: int = 2400
) -> None:
    """A PNG of `page` rendered in a `width` x `height` window."""
    _run(browser, profile, f"--window-size={width},{height}", f"--screenshot={out}", page.as_uri())


def png_ink(png: Path) -> tuple[int, int, float]:
    """Width, height and the fraction of pixels that are not near-white: proof something was drawn.

    A small decoder for what Chromium writes (8-bit RGB or RGBA, not interlaced), so the test
    needs no imaging library."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _c, _f, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, "unexpected PNG format"
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    previous, inked = bytearray(stride), 0
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        inked += sum(1 for px in range(0, stride, bpp) if min(line[px : px + 3]) < 200)
        previous = line
    return width, height, inked / (width * height)
