"""A griffe extension (loaded by mkdocstrings, see ``mkdocs.yml``) that renders optcheck as written.

* A rule's hyperparameter fields are declared as ``lr: float = hyper(1e-3, low=0.0, doc=...)``;
  statically that reads as a call. This extension asks the rule class itself
  (``hyper_specs()``, the one source of truth) and shows each field with its default as the
  value and, as its docstring, the ``doc`` text, the valid range and, for a convention keyword,
  which library uses each value. The dataclass signature then shows ``lr: float = 0.001``.
* Docstrings use a few reST roles (``:class:`Rule```, ``:func:`trap```); Markdown has none, so
  they are rendered as inline code, and reST's ``text::`` before an indented literal block
  becomes ``text:`` (the indented block is a code block in Markdown too).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`~?([^`]+)`")
_LITERAL_MARK = re.compile(r"^(?P<indent>[ \t]*)(?P<text>.*?)(?P<sep>\s?)::[ \t]*$", re.MULTILINE)


def _markdown(doc: str) -> str:
    """reST roles as inline code; ``text::`` (a literal block follows) as ``text:``, a lone ``::`` dropped."""
    doc = _ROLE.sub(r"`\1`", doc)
    return _LITERAL_MARK.sub(lambda m: m["indent"] + m["text"] + (":" if m["text"] else ""), doc)


def _runtime(obj: griffe.Object) -> Any:
    try:
        return getattr(importlib.import_module(obj.module.path), obj.name)
    except Exception:
        return None


def _field_doc(spec: Any) -> str:
    text = spec.doc[:1].upper() + spec.doc[1:].rstrip(".") + "." if spec.doc else ""
    if spec.convention:
        lines = [f"{text} A convention keyword; default `{spec.default!r}`:", ""]
        lines += [f"- `{value!r}`: {who}" for value, who in spec.library.items()]
        return "\n".join(lines)
    return f"{text} Default `{spec.default!r}`; valid values: {spec.range_text()}.".strip()


class OptcheckDocs(griffe.Extension):
    """Rule fields from ``hyper_specs()``; reST roles and ``::`` as Markdown."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != "optcheck":
            return
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = _markdown(obj.docstring.value)
        if obj.is_class:
            self._rule_fields(obj)
        for member in list(obj.members.values()):
            if isinstance(member, griffe.Object):  # not an alias: those are walked where they live
                self._walk(member, seen)

    def _rule_fields(self, cls: griffe.Object) -> None:
        runtime = _runtime(cls)
        specs = getattr(runtime, "hyper_specs", None)
        if not callable(specs):
            return
        for spec in specs():
            attr = cls.members.get(spec.name)
            if not isinstance(attr, griffe.Attribute):  # absent, inherited (an alias) or not a field
                continue
            attr.value = repr(spec.default)
            attr.docstring = griffe.Docstring(_field_doc(spec), parent=attr)
            attr.labels.discard("class-attribute")
