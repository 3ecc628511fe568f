"""Byte counts as people read them, for the reports and the progress line alike."""

from __future__ import annotations


def human_size(size: object) -> str:
    """Bytes in binary units: 123 B, 4.0 KiB, 1.3 GiB (anything not an int is shown as it is)."""
    if not isinstance(size, int) or isinstance(size, bool):
        return "" if size is None else str(size)
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
