"""Small graph helpers for relationships between rules and transitions between steps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def cycles(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """One cycle per back edge of a depth-first search, as ``[a, b, ..., a]``; iterative,
    because a long chain of rules must not hit the recursion limit."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in state:
            continue
        path = [root]
        stack = [iter(edges.get(root, ()))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(edges.get(nxt, ())))
    return found


def reachable(start: str, edges: Mapping[str, Iterable[str]]) -> set[str]:
    """Every node reachable from ``start``, ``start`` included."""
    seen = {start}
    todo = [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen
