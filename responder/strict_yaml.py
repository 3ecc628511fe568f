"""A YAML reader that refuses what PyYAML silently accepts.

PyYAML's safe_load lets the last duplicate key win, reads `no`/`on` as booleans and `0755` as an
octal int (YAML 1.1), and expands alias bombs. A response playbook decides what happens to a
production container, so each of those is an error with a file:line:column here. Scalars are
resolved by the YAML 1.2 core schema; anything 1.1 would have read differently must be quoted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from responder.errors import Problem

Path_ = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024

_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
# YAML 1.1 booleans that YAML 1.2 reads as strings: PyYAML turns them into True/False.
AMBIGUOUS = "is ambiguous: YAML 1.1 tools read it as a boolean"
YAML11_BOOL = re.compile(r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+\.[0-9]*)([eE][-+]?[0-9]+)?$|^[-+]?[0-9]+[eE][-+]?[0-9]+$")
# Forms that YAML 1.1 (PyYAML) would turn into numbers but a reader would take for text or a mode.
_YAML11_NUMBER = re.compile(
    r"^[-+]?0[0-9_]+$"  # 0755: octal in 1.1
    r"|^[-+]?0[xXoObB][0-9a-fA-F_]+$"  # 0x1f, 0o17, 0b101
    r"|^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$"  # 1:20 sexagesimal
    r"|^[-+]?[0-9][0-9_]*_[0-9_]*$"  # 1_000
    r"|^[-+]?\.(inf|Inf|INF|nan|NaN|NAN)$"
)
_ALLOWED_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


@dataclass
class Document:
    """Plain Python data plus where each part of it came from."""

    file: str
    data: Any
    lines: list[str]
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def problem(self, path: Path_, message: str, hint: str = "", key: bool = False) -> Problem:
        """A Problem located at `path`, falling back to the nearest located parent."""
        probe = (*path, "<key>") if key else path
        while probe not in self.marks and probe:
            probe = probe[:-1]
        line, col = self.marks.get(probe, (None, None)) if probe else self.marks.get((), (None, None))
        return Problem(
            file=self.file,
            line=line,
            column=col,
            message=message,
            path=format_path(path),
            hint=hint,
            snippet=caret(self.lines, line, col),
        )


def format_path(path: Path_) -> str:
    """`steps[0].with.container`: a path into the document, as people read it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def caret(lines: list[str], line: int | None, col: int | None) -> str:
    """The line with a caret under the column, for error messages."""
    if line is None or not 1 <= line <= len(lines):
        return ""
    text = lines[line - 1].rstrip("\n")
    pad = " " * max((col or 1) - 1, 0)
    return f"    {text}\n    {pad}^"


_PLAIN = "responder:plain"


class _Composer(yaml.SafeLoader):
    """Stops at the first alias: aliases make alias bombs and hide where a value came from.

    Untagged plain scalars get a marker tag instead of PyYAML's YAML 1.1 guess, so that the
    builder resolves them by the 1.2 core schema and an explicit tag stays recognisable.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                None, None, "YAML aliases (*name) are not supported in responder files", event.start_mark
            )
        return super().compose_node(parent, index)


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def mark(self, path: Path_, node: yaml.Node) -> None:
        self.doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, path: Path_, node: yaml.Node, message: str, hint: str = "") -> None:
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        self.problems.append(
            Problem(
                self.doc.file, line, col, message, format_path(path), hint, caret(self.doc.lines, line, col)
            )
        )

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.mark(path, node)
        if node.tag not in _ALLOWED_TAGS and node.tag != _PLAIN:
            self.fail(path, node, f"YAML tag {node.tag!r} is not allowed", "remove the tag; plain data only")
            return None
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self.scalar(node, path)

    def mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(path, key_node, "mapping keys must be plain strings")
                continue
            key = key_node.value
            if key == "<<" and key_node.style is None:
                self.fail(path, key_node, "YAML merge keys (<<) are not supported")
                continue
            if key_node.style is None and (YAML11_BOOL.match(key) or key in _TRUE | _FALSE | _NULL):
                self.fail(
                    (*path, key),
                    key_node,
                    f"key {key!r} is read as a boolean or null by YAML 1.1 tools",
                    f"quote it: '{key}'",
                )
            if key in first_seen:
                self.fail(
                    (*path, key),
                    key_node,
                    f"duplicate key {key!r} (first defined on line {first_seen[key]})",
                    "each key may appear once; PyYAML would silently keep only the last one",
                )
                continue
            first_seen[key] = key_node.start_mark.line + 1
            self.doc.marks[(*path, key, "<key>")] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            out[key] = self.build(value_node, (*path, key))
        return out

    def scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        text = node.value
        # Quoted and block scalars are text, and so is anything explicitly tagged !!str.
        if node.style is not None or node.tag == "tag:yaml.org,2002:str":
            return text
        if text in _NULL:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if YAML11_BOOL.match(text):
            self.fail(
                path,
                node,
                f"{text!r} {AMBIGUOUS}",
                f"write true/false for a boolean, or quote it ('{text}') for text",
            )
            return text
        if _YAML11_NUMBER.match(text):
            self.fail(
                path,
                node,
                f"{text!r} is ambiguous: YAML 1.1 tools read it as a number (octal, hex or base 60)",
                f"quote it ('{text}') for text, or write a plain decimal number",
            )
            return text
        if _INT.match(text):
            if len(text) > 30:
                self.fail(path, node, "integer too long")
                return text
            return int(text)
        if _FLOAT.match(text):
            return float(text)
        return text


def load(text: str, file: str) -> tuple[Document, list[Problem]]:
    """Parse one YAML document strictly; returns the document and every problem found."""
    lines = text.splitlines()
    doc = Document(file=file, data=None, lines=lines)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return doc, [Problem(file, None, None, f"file is larger than {MAX_BYTES} bytes")]
    loader = _Composer(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        message = " ".join(str(x) for x in (exc.context, exc.problem) if x) or str(exc)
        return doc, [
            Problem(file, line, col, f"YAML syntax error: {message}", snippet=caret(lines, line, col))
        ]
    except yaml.YAMLError as exc:
        return doc, [Problem(file, None, None, f"YAML error: {exc}")]
    finally:
        loader.dispose()
    if node is None:
        return doc, [Problem(file, 1, 1, "the file is empty", hint="a playbook is a YAML mapping")]
    builder = _Builder(doc)
    doc.data = builder.build(node, ())
    return doc, builder.problems
