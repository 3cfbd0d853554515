"""YAML reading that keeps the node tree, so every later error can name its line.

PyYAML's composed nodes carry start marks; we keep the root node next to the constructed data
and walk it with a pydantic error location (:func:`locate`). Differences from a plain
``yaml.safe_load``, all to make authoring mistakes loud:

* booleans are YAML 1.2's ``true``/``false`` only: ``no``, ``on``, ``off`` stay strings (an
  example phrase "no" or a country code ``NO`` is not ``False``);
* a key repeated in one mapping is an error (PyYAML silently keeps the last one);
* files over :data:`MAX_FILE_BYTES` and documents over :data:`MAX_NODES` nodes, counting alias
  expansions (the "billion laughs"), are refused before anything is built from them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from processors.pack.errors import PackError
from processors.pack.source import PackSource

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000


class PackLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans."""


PackLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
PackLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True)
class YamlDocument:
    """A parsed file: its data and the node tree it came from (``None`` for an empty file)."""

    file: str
    data: Any
    node: yaml.Node | None


def read_text(source: PackSource, file: str) -> tuple[str | None, PackError | None]:
    """The text of ``file`` in ``source``, or why it cannot be read."""
    try:
        if source.size(file) > MAX_FILE_BYTES:
            return None, PackError(file, 0, "file_too_large", f"over {MAX_FILE_BYTES} bytes")
        return source.read(file), None
    except (OSError, UnicodeDecodeError) as exc:
        return None, PackError(file, 0, "file_unreadable", str(exc))


def read_yaml(source: PackSource, file: str) -> tuple[YamlDocument | None, list[PackError]]:
    """Parse the YAML file ``file`` of ``source``; on failure return the errors, each with
    its line."""
    text, problem = read_text(source, file)
    if text is None:
        return None, [problem] if problem else []
    loader = PackLoader(text)
    try:
        node = loader.get_single_node()
        duplicates = _check_tree(node, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        return None, [PackError(file, line, "yaml_syntax", message or str(exc), column)]
    except yaml.YAMLError as exc:  # reader errors: invalid characters
        position = getattr(exc, "position", 0)
        return None, [PackError(file, text.count("\n", 0, position) + 1, "yaml_syntax", str(exc))]
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. an impossible date 2024-13-45
        return None, [PackError(file, 0, "yaml_syntax", f"cannot read a value: {exc}")]
    except RecursionError:
        return None, [PackError(file, 0, "yaml_too_complex", "nested too deeply")]
    except _TooComplex as exc:
        return None, [PackError(file, 0, "yaml_too_complex", str(exc))]
    finally:
        loader.dispose()
    return YamlDocument(file, data, node), duplicates


class _TooComplex(Exception):
    pass


def _check_tree(root: yaml.Node | None, file: str) -> list[PackError]:
    """Duplicate keys (reported; the last value wins, as in PyYAML) and size (refused before
    anything is constructed), iteratively: the tree may be deep or, via aliases, cyclic."""
    errors: list[PackError] = []
    stack = [root] if root is not None else []
    visited = 0
    while stack:
        node = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            raise _TooComplex(f"more than {MAX_NODES} nodes, counting alias expansions")
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in seen:
                        mark = key.start_mark
                        message = f"key {key.value!r} appears twice in this mapping"
                        errors.append(PackError(file, mark.line + 1, "yaml_duplicate_key", message))
                    seen.add(key.value)
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return errors


def resolve(node: yaml.Node | None, loc: Sequence[str | int]) -> tuple[int, int, yaml.Node | None]:
    """(line, column, node) of the deepest part of ``loc`` present under ``node``.

    Parts that do not match (a pydantic union tag, a missing key) are skipped, so an error
    about a missing key points at the mapping that lacks it. A key is reported at the key.
    """
    if node is None:
        return 0, 0, None
    mark = node.start_mark
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            pair = next(
                (
                    (k, v)
                    for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value == part
                ),
                None,
            )
            if pair is not None:
                mark, node = pair[0].start_mark, pair[1]
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            node = node.value[part]
            mark = node.start_mark
    return mark.line + 1, mark.column + 1, node


def scalar_column(node: yaml.Node | None, offset: int) -> int:
    """1-based column of character ``offset`` (1-based) inside a one-line scalar, else 0."""
    if not isinstance(node, yaml.ScalarNode) or offset < 1:
        return 0
    if node.start_mark.line != node.end_mark.line:
        return 0
    quote = 1 if node.style in ("'", '"') else 0
    return node.start_mark.column + quote + offset
