"""pytest >= 9.2 keeps a node's id as a structured `NodeId` in `_id`; schemathesis 4's lazy
(`from_fixture`) integration still reads and rewrites `node._nodeid` (to label each operation's
subtest). Give `Node` that attribute back when it is missing, mapped onto `_id`."""

from __future__ import annotations

from _pytest import nodes


def _get(node: nodes.Node) -> str:
    return node.nodeid


def _set(node: nodes.Node, value: str) -> None:
    from _pytest.nodeid import coerce_node_id

    node._id = coerce_node_id(value)


if not hasattr(nodes.Node, "_nodeid"):
    nodes.Node._nodeid = property(_get, _set)  # type: ignore[attr-defined]
