"""Checking a feature view's transform: one read-only SELECT over its source, nothing else.

A transform is SQL from a definitions file or, read back, from the metadata store, and a
stored definition is data: whoever can write the database can change its text. So the text
is checked where a view is built (defined, applied, or rebuilt from the registry) and again
where it runs, by DuckDB's own parser (``json_serialize_sql`` gives the statement as a
tree); a guess at the grammar with regular expressions would be fooled by comments and
quotes. What is accepted:

- exactly one statement (one trailing ``;`` is fine), and it is a ``SELECT`` (``WITH``,
  ``VALUES``, ``FROM source SELECT ...``, set operations and subqueries included);
- tables: ``source``, or a CTE that the query itself defines and that is in scope where it is
  named, by a plain name: no schema or catalog, no file name (``FROM 'x.csv'``), no time
  travel (``AT``), no ``DESCRIBE``/``SUMMARIZE``/``SHOW`` of anything;
- table functions: only ``range``, ``generate_series`` and ``unnest``, which read nothing;
  ``read_csv``, ``read_text``, ``glob``, ``query`` and the rest are refused;
- functions: any but those that read the session, the settings, the environment or the
  catalog, or change state (``current_setting``, ``getvariable``, ``getenv``, ``nextval``,
  ``setseed``, ``pg_*`` ...), whatever schema is put in front; no ``?``/``$1`` parameters.

What runs is the checked tree turned back into SQL by DuckDB (``json_deserialize_sql``, as
DuckDB writes views' definitions), not the text given, and that SQL is checked in its turn: a
comment or a stray quote can hide nothing, and a ``)`` cannot close the parenthesis the
transform is embedded in, because what is embedded is what was checked. The connection it
runs on can reach only the view's sources anyway (``sandbox.py``).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from tidal.errors import InvalidValueError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUERY_NODES = {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"}
_TABLE_REFS = {"BASE_TABLE", "SUBQUERY", "JOIN", "TABLE_FUNCTION", "EXPRESSION_LIST", "EMPTY",
               "PIVOT"}
_TABLE_FUNCTIONS = {"range", "generate_series", "unnest"}
#: Functions that read something other than the rows (the session, settings, environment,
#: catalog) or change state; with their prefixes below.
_REFUSED_FUNCTIONS = {
    "current_setting", "getvariable", "getenv", "current_database", "current_catalog",
    "current_schema", "current_schemas", "current_user", "current_role", "session_user",
    "user", "current_query", "current_query_id", "current_connection_id",
    "current_transaction_id", "txid_current", "in_search_path", "version", "nextval",
    "currval", "setval", "setseed", "sleep_ms", "write_log", "stats", "query", "query_table",
    "json_execute_serialized_sql", "col_description", "obj_description",
    "shobj_description", "format_pg_type", "format_type", "get_block_size"}
_REFUSED_PREFIXES = ("pg_", "has_", "duckdb_", "pragma_", "read_", "parquet_", "sniff_")


class UnsafeTransformError(InvalidValueError):
    """A feature view's transform is not one read-only SELECT over its source."""


class _Refused(Exception):
    """Why a transform is refused, before the view's name is known."""


def checked_transform(text: Any, view: str) -> str:
    """The SQL to run for the transform ``text`` of feature view ``view``: the checked
    statement as DuckDB writes it back. Raises UnsafeTransformError (field ``transform``)
    when it is anything but one read-only SELECT over ``source``, InvalidValueError when it
    does not parse."""
    import duckdb

    if not isinstance(text, str) or not text.strip():
        raise InvalidValueError(f"transform of feature view {view!r} must be a SQL SELECT "
                                f"over 'source', got {text!r}", field="transform")
    try:
        return _canonical(text)
    except _Refused as refused:
        raise UnsafeTransformError(
            f"transform of feature view {view!r} is refused: {refused}. A transform is one "
            "SELECT over 'source' (and CTEs it defines), with no file, setting or catalog "
            "access", field="transform") from None
    except duckdb.Error as error:
        raise InvalidValueError(f"transform of feature view {view!r} does not parse: {error}",
                                field="transform") from error


@functools.lru_cache(maxsize=1024)
def _canonical(text: str) -> str:
    from tidal.features.sandbox import connect

    conn = connect()  # parsing only; a connection that reaches nothing all the same
    try:
        tree = _checked_tree(conn, text)
        canonical = conn.execute("SELECT json_deserialize_sql(?)",
                                 [json.dumps(tree)]).fetchall()[0][0]
        # DuckDB writes a tree back as it writes views' definitions; what it wrote is checked
        # in its turn, so that the SQL that runs is SQL that passed.
        _checked_tree(conn, canonical)
        return canonical
    finally:
        conn.close()


def _checked_tree(conn: Any, text: str) -> dict[str, Any]:
    """The statement tree of ``text``, which must be one SELECT that passes the checks."""
    statements = conn.extract_statements(text)
    if len(statements) != 1:
        raise _Refused(f"it holds {len(statements)} statements; give exactly one (a trailing "
                       "';' is fine)")
    kind = statements[0].type.name
    if kind != "SELECT":
        raise _Refused(f"it is a {kind} statement, not a SELECT")
    tree = json.loads(conn.execute("SELECT json_serialize_sql(?)", [text]).fetchall()[0][0])
    if tree.get("error"):
        raise _Refused(f"DuckDB cannot read it as one SELECT ({tree.get('error_message')})")
    if len(tree["statements"]) != 1:
        raise _Refused(f"it holds {len(tree['statements'])} statements; give exactly one")
    _check_node(tree, frozenset({"source"}))
    return tree


def _check_node(node: Any, scope: frozenset[str]) -> None:
    """Refuse anything in the tree beyond the rows of ``source`` and the CTEs in ``scope``
    (lower-cased names)."""
    if isinstance(node, list):
        for item in node:
            _check_node(item, scope)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if node.get("named_param_map"):
        raise _Refused("it has named parameters")
    if "modifiers" in node and kind not in _QUERY_NODES:
        raise _Refused(f"it holds a {kind} query")
    if "cte_map" in node:  # each CTE sees those before it and itself; the rest sees them all
        for entry in node["cte_map"].get("map", []):
            name = entry["key"]
            if not _IDENTIFIER.fullmatch(name):
                raise _Refused(f"CTE name {name!r} is not a plain name")
            scope = scope | {name.lower()}
            _check_node(entry["value"], scope)
    if "modifiers" not in node and "class" not in node and "sample" in node:
        _check_table(node, scope)
    if "function_name" in node:
        _check_function(node)
    if node.get("class") == "PARAMETER":
        raise _Refused("it has a parameter ($1 or ?)")
    for key, value in node.items():
        if key != "cte_map":
            _check_node(value, scope)


def _check_table(node: dict[str, Any], scope: frozenset[str]) -> None:
    kind = node.get("type")
    if kind == "SHOW_REF":
        raise _Refused("it holds a DESCRIBE, SUMMARIZE or SHOW")
    if kind not in _TABLE_REFS:
        raise _Refused(f"it reads from a {kind}")
    if kind == "BASE_TABLE":
        name = node.get("table_name", "")
        if node.get("catalog_name") or node.get("schema_name"):
            raise _Refused(f"it names table {name!r} in a schema or catalog")
        if not _IDENTIFIER.fullmatch(name):
            raise _Refused(f"it reads {name!r}, which is not a table name (files are not "
                           "read by name)")
        if name.lower() not in scope:
            raise _Refused(f"it reads table {name!r}; only 'source' and CTEs the query "
                           "defines can be read")
        if node.get("at_clause"):
            raise _Refused(f"it reads table {name!r} AT a version")
    elif kind == "TABLE_FUNCTION":
        function = node.get("function") or {}
        name = str(function.get("function_name", "")).lower()
        if name not in _TABLE_FUNCTIONS or function.get("schema") or function.get("catalog"):
            raise _Refused(f"it calls table function {name}(); only "
                           f"{', '.join(sorted(_TABLE_FUNCTIONS))} are allowed")


def _check_function(node: dict[str, Any]) -> None:
    # By its name alone: a schema in front (system.main.f(), or a column in x.f()) reaches the
    # same built-in functions, and the connection has no others.
    name = str(node["function_name"])
    lowered = name.lower()
    if lowered in _REFUSED_FUNCTIONS or lowered.startswith(_REFUSED_PREFIXES):
        raise _Refused(f"it calls {name}(), which reads beyond the rows or changes state")
