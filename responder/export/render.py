"""Jinja2 environments for the review reports, each escaping every value by default.

The HTML environment autoescapes; the Markdown one runs every `{{ value }}` through Markdown
escaping (`finalize`), so a field a template forgets to escape is still inert. Only values a filter
built on purpose (`Verbatim`, `Markup`) pass through. Templates are ours and fixed; alert text,
container names and labels are only ever data given to them, never template source.
"""

from __future__ import annotations

import json
from typing import IO, Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from responder.export.text import md
from responder.sizes import human_size


class Verbatim(str):
    """Markdown a filter has already escaped and formatted (a code span): left as it is."""


def _md_finalize(value: object) -> str:
    return value if isinstance(value, Verbatim) else md(value)


def md_code(value: object) -> Verbatim:
    """A hash or ID as a Markdown code span (backticks inside cannot end it)."""
    text = "" if value is None else str(value).replace("`", "'")
    return Verbatim(f"`{text}`")


def size_text(size: object) -> str:
    """A human size, with the exact count where the unit rounds it."""
    text = human_size(size)
    return f"{text} ({size} bytes)" if isinstance(size, int) and size >= 1024 else text


def html_short(value: object, keep: int = 12) -> Markup:
    """A hash or ID cut to `keep` characters on screen, whole in the page: hovering shows it and
    copying the cell copies all of it (CSS clips the text; nothing is removed)."""
    text = "" if value is None else str(value)
    if len(text) <= keep + 2:
        return Markup("<code>{}</code>").format(text)
    return Markup('<code class="short" style="max-width:{}ch" title="{}">{}</code>').format(
        keep + 1, text, text
    )


def html_size(size: object) -> Markup:
    """A human size with the exact byte count on hover."""
    return Markup('<span title="{} bytes">{}</span>').format(size, human_size(size))


def as_text(value: object) -> str:
    """A trigger field as one line: strings as they are, anything else as sorted JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def container_detail(row: dict[str, str]) -> str:
    """What a fleet step's row needs said: who holds a container it skipped, or why it failed."""
    if row.get("held_by"):
        return f"held by {row['held_by']}"
    return row.get("message", "") if row.get("outcome") != "succeeded" else ""


def _environment(*, markdown: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("responder.export", "templates"),
        autoescape=not markdown,  # noqa: S701 - Markdown is escaped through `finalize` instead
        finalize=_md_finalize if markdown else None,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        md_code=md_code,
        human_size=human_size,
        size_text=size_text,
        short=html_short,
        size=html_size,
        as_text=as_text,
        tojson_sorted=lambda value: json.dumps(value, sort_keys=True),
    )
    env.filters["detail"] = container_detail
    return env


_ENVIRONMENTS = {"md": _environment(markdown=True), "html": _environment(markdown=False)}


def stream(fmt: str, template: str, out: IO[str], **context: Any) -> None:
    """Render `template` chunk by chunk into `out`: an events iterator in `context` is consumed
    lazily, so a long timeline never sits in memory as one string."""
    for chunk in _ENVIRONMENTS[fmt].get_template(template).generate(**context):
        out.write(chunk)
