"""JSON and YAML documents from untrusted hands, parsed within bounds.

A client's document may be nested thousands of levels deep, which makes the
parsers and everything that walks the result recurse until Python gives up
(a RecursionError, once a 500), and a YAML document may use aliases to stand
for a structure many times over: the 463-byte "billion laughs" composes to
a few dozen nodes that expand to 10**9 when validated. So a document here
is refused, with InvalidJson naming the bound, when it is nested deeper than
:data:`MAX_DEPTH`, uses more than :data:`MAX_ALIASES` aliases, refers to
itself, or stands for more than :data:`MAX_NODES` values once its aliases
are expanded. Aliases are still allowed within those bounds, so a document
may share a block (``<<: *defaults``) as YAML users expect.

The YAML document is composed (a graph of nodes, each alias a reference to
its anchor's node, so nothing is expanded yet), measured, and only then
constructed into Python values. Request bodies are bounded in size before
they get here (``max_request_body``, api/limits.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from jobdock.errors import InvalidJson
from jobdock.models.parsing import MAX_DEPTH, too_deep

if TYPE_CHECKING:
    import yaml

#: The most aliases (``*name``) a YAML document may use.
MAX_ALIASES = 100
#: The most values a YAML document may write out. Composing and constructing
#: YAML costs about 20 us a value (JSON: 0.2 us), so this bounds the CPU
#: and memory one document takes far below what the request size allows.
MAX_YAML_VALUES = 20_000
#: The most values a YAML document may stand for, its aliases expanded.
MAX_NODES = 100_000


def load_json(text: bytes | str, what: str = "the body") -> Any:
    """The value of a JSON document; raises InvalidJson if it is not JSON or
    is nested more than MAX_DEPTH levels deep."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise too_deep(what) from None
    except ValueError as exc:
        raise InvalidJson(f"{what} is not valid JSON: {exc}") from None
    check_depth(value, what)
    return value


def check_depth(value: Any, what: str = "the body") -> None:
    """Raise InvalidJson if ``value`` nests lists and dicts more than
    MAX_DEPTH levels deep (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > MAX_DEPTH:
            raise too_deep(what)
        pending.extend((child, level + 1) for child in children if isinstance(child, dict | list))


def load_yaml(text: bytes | str, what: str = "the body") -> Any:
    """The value of a YAML document (safe tags only); raises InvalidJson if
    it is not YAML or breaks one of the bounds above."""
    import yaml  # only for YAML documents (it takes 70 ms to import)

    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        _count_events(yaml.parse(text, Loader=loader_class), what)
        node = loader.get_single_node()
        if node is None:
            return None
        _Measure(what).visit(node, 1)
        return loader.construct_document(node)
    except RecursionError:
        raise too_deep(what) from None
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(exc):  # libyaml's own bound, 1000
            raise too_deep(what) from None
        raise InvalidJson(f"{what} is not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


def _count_events(events: Iterator[yaml.Event], what: str) -> None:
    """Refuse a document that writes out more than MAX_YAML_VALUES values,
    more than MAX_ALIASES aliases or nests deeper than MAX_DEPTH, as soon as
    its parse gets there: before anything is composed."""
    values = aliases = level = 0
    for event in events:
        kind = type(event).__name__
        if kind in ("SequenceStartEvent", "MappingStartEvent"):
            level += 1
            if level > MAX_DEPTH:
                raise too_deep(what)
        elif kind in ("SequenceEndEvent", "MappingEndEvent"):
            level -= 1
            continue
        elif kind == "AliasEvent":
            aliases += 1
            if aliases > MAX_ALIASES:
                raise InvalidJson(f"{what} uses more than {MAX_ALIASES} YAML aliases")
        elif kind != "ScalarEvent":
            continue
        values += 1
        if values > MAX_YAML_VALUES:
            raise InvalidJson(f"{what} has more than {MAX_YAML_VALUES} YAML values")


class _Measure:
    """Walks a composed YAML node graph once, counting what its aliases
    expand to, without expanding anything."""

    def __init__(self, what: str) -> None:
        self.what = what
        #: Each node already measured: the values it stands for, and its height.
        self.known: dict[int, tuple[int, int]] = {}
        self.open: set[int] = set()

    def visit(self, node: yaml.Node, level: int) -> tuple[int, int]:
        key = id(node)
        if key in self.known:
            # A node met again is an alias of it (their number is bounded
            # by _count_events already).
            size, height = self.known[key]
            if level + height - 1 > MAX_DEPTH:
                raise too_deep(self.what)
            return size, height
        if key in self.open:
            raise InvalidJson(f"{self.what} refers to itself (a YAML alias inside its anchor)")
        if level > MAX_DEPTH:
            raise too_deep(self.what)
        self.open.add(key)
        size, height = 1, 1
        for child in _children(node):
            child_size, child_height = self.visit(child, level + 1)
            size += child_size
            height = max(height, child_height + 1)
            if size > MAX_NODES:
                raise InvalidJson(
                    f"{self.what} stands for more than {MAX_NODES} values once its YAML "
                    "aliases are expanded"
                )
        self.open.discard(key)
        self.known[key] = (size, height)
        return size, height


def _children(node: yaml.Node) -> list[yaml.Node]:
    kind = getattr(node, "id", None)
    if kind == "sequence":
        return list(node.value)
    if kind == "mapping":
        return [part for pair in node.value for part in pair]
    return []
