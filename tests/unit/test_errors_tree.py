"""One exception tree: every exception class responder defines is a ResponderError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import responder
from responder.errors import ResponderError


def test_every_exception_responder_defines_is_in_the_tree() -> None:
    outside = []
    for info in pkgutil.walk_packages(responder.__path__, "responder."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not issubclass(value, ResponderError)
            ):
                outside.append(f"{info.name}.{name}")
    assert outside == []
