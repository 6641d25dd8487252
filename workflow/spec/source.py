"""Definition source text: YAML parsed with the line of every key, and the JSON Schema.

Everything here is about the *text* of a definition (``definitions/workflow.schema.json``
and where in the file a problem is); the meaning of a valid document is checked by
:mod:`workflow.spec.checks`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import jsonschema
import yaml

from workflow.errors import DefinitionError, Problem
from workflow.resources import definitions_dir

SCHEMA_PATH = definitions_dir() / "workflow.schema.json"

#: A key path into a parsed document: mapping keys and sequence indexes.
KeyPath = tuple[str | int, ...]
#: The line (1-based) of every key path of a parsed document.
Lines = dict[KeyPath, int]


class LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every node and refuses duplicate keys."""


#: libyaml's parser where PyYAML was built with it (the wheels are): the same events and
#: nodes, with their lines, about ten times faster than the pure-Python one
FastLoader: type[Any] = getattr(yaml, "CSafeLoader", LineLoader)


# ------------------------------------------------------------------ limits (R-SEC-30)
#: the largest definition text accepted (the shipped ones are under 10 KB)
MAX_SOURCE_BYTES = 256 * 1024
#: the deepest nesting of mappings and sequences (the shipped definitions use 6)
MAX_DEPTH = 40
#: the most nodes the document may have once every alias is expanded (the shipped
#: definitions have under 2,000): a few hundred bytes of nested aliases otherwise expand to
#: gigabytes ("billion laughs")
MAX_NODES = 50_000


def limit_problem(text: str, origin: str) -> Problem | None:
    """The first limit ``text`` exceeds, located at its line, or None. Checked on the YAML
    *events* (PyYAML's parser is a state machine: no recursion, no node built, no alias
    expanded), so it costs one pass over the text whatever the text holds; only text that
    passes is composed. Size, nesting depth and the expanded node count are limited."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        return Problem(origin, 1, f"the text is {size:,} bytes; at most "
                                  f"{MAX_SOURCE_BYTES:,} bytes are accepted")
    if "\x00" in text:
        return Problem(origin, text[:text.index("\x00")].count("\n") + 1,
                       "the text contains a NUL character")
    sizes: dict[str, int] = {}  # anchor -> nodes it stands for once expanded
    starts: list[tuple[str | None, int]] = []  # open collections: (anchor, nodes before it)
    nodes = 0
    try:
        for ev in yaml.parse(text, Loader=FastLoader):
            line = ev.start_mark.line + 1 if ev.start_mark is not None else 1
            if isinstance(ev, yaml.CollectionStartEvent):
                starts.append((ev.anchor, nodes))
                nodes += 1
                if len(starts) > MAX_DEPTH:
                    return Problem(origin, line, f"mappings and lists are nested more than "
                                                 f"{MAX_DEPTH} levels deep here")
            elif isinstance(ev, yaml.CollectionEndEvent):
                anchor, before = starts.pop()
                if anchor is not None:
                    sizes[anchor] = nodes - before
            elif isinstance(ev, yaml.ScalarEvent):
                nodes += 1
                if ev.anchor is not None:
                    sizes[ev.anchor] = 1
            elif isinstance(ev, yaml.AliasEvent):
                nodes += sizes.get(ev.anchor or "", 1)
            if nodes > MAX_NODES:
                return Problem(origin, line, f"the document expands to more than "
                                             f"{MAX_NODES:,} values (aliases *name repeat "
                                             "what &name marks); write it out plainly")
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):  # libyaml stops far deeper ones before any event
            mark = getattr(exc, "problem_mark", None)
            return Problem(origin, mark.line + 1 if mark is not None else 1,
                           f"mappings and lists are nested more than {MAX_DEPTH} levels "
                           "deep here")
        return None  # a syntax error: compose reports it at its line
    return None


def bounded_load(text: str, origin: str) -> Any:
    """``yaml.safe_load`` of ``text`` after :func:`limit_problem`; raises
    :class:`~workflow.errors.DefinitionError` (the limit, at its line) or ``yaml.YAMLError``.
    For every YAML the application reads besides definitions (plans, keys of files)."""
    problem = limit_problem(text, origin)
    if problem is not None:
        raise DefinitionError([problem])
    return yaml.load(text, Loader=FastLoader)  # noqa: S506 - a safe loader


def compose(text: str, origin: str) -> tuple[Any, Lines, list[Problem]]:
    """Parse YAML ``text`` into plain JSON-compatible data, the line of every key path and
    the problems found (syntax errors, an empty file, duplicate keys); data is None when
    the text does not parse."""
    problems: list[Problem] = []
    lines: Lines = {}
    limit = limit_problem(text, origin)
    if limit is not None:
        return None, lines, [limit]
    try:
        node = yaml.compose(text, Loader=FastLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        problems.append(Problem(origin, line, f"YAML syntax error: {problem}"))
        return None, lines, problems
    if node is None:
        problems.append(Problem(origin, 1, "the file is empty"))
        return None, lines, problems

    loader = LineLoader("")

    def build(n: yaml.Node, path: KeyPath) -> Any:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    problems.append(
                        Problem(origin, key_node.start_mark.line + 1, f"duplicate key {key!r}")
                    )
                    continue
                out[key] = build(value_node, (*path, key))
                # a key's own line is more useful than where its value starts
                lines[(*path, key)] = key_node.start_mark.line + 1
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, (*path, i)) for i, v in enumerate(n.value)]
        value = loader.construct_object(n, deep=True)
        # dates and similar: keep definitions JSON-compatible
        if not isinstance(value, str | int | float | bool | type(None)):
            value = str(value)
        return value

    return build(node, ()), lines, problems


def line_of(lines: Lines, path: Iterable[str | int]) -> int:
    """The line of ``path``, or of its nearest ancestor that has one (1 at worst)."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get((), 1)


@cache
def schema_validator() -> jsonschema.protocols.Validator:
    """The JSON Schema validator of ``definitions/workflow.schema.json`` (checked once)."""
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _error_path(err: jsonschema.ValidationError) -> KeyPath:
    """Point at the offending key itself where the schema error is about one."""
    path = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict) \
            and isinstance(err.schema, Mapping):
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        if extra:
            return (*path, extra[0])
    return path


def _schema_message(err: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        return f"{where}: {err.message}"
    if err.validator == "required":
        return f"{where}: {err.message}"
    if err.validator == "pattern":
        return f"{where}: {err.instance!r} is not a valid name here (pattern {err.validator_value})"
    if err.validator == "enum":
        return f"{where}: {err.instance!r} is not one of {err.validator_value}"
    return f"{where}: {err.message}"


def schema_problems(doc: Mapping[str, Any], lines: Lines, origin: str) -> list[Problem]:
    """Every JSON Schema violation of ``doc``, each at the line of the key it is about."""
    errors = sorted(schema_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [Problem(origin, line_of(lines, _error_path(e)), _schema_message(e)) for e in errors]
