"""Pipeline targets read back from the metadata store: data that names code.

A pipeline run records its target (``module:name``) and the digest of the source file that
defines it; a loop policy records the same for its training pipeline. Anyone who can write to
the store can rewrite both, so before such a target is imported the code it would run is
located without running any of it (:func:`tidal.modules.find_source`: never from the current
directory, never a file path) and must be exactly the code recorded and define that name with
``@pipeline``: what runs is the user's own code on disk, and only code that declares itself a
pipeline. ``trust_code=True`` imports a target as given, for code the user has looked at.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tidal.ids import digest_bytes
from tidal.modules import ModuleSourceError, find_source, top_level_definition
from tidal.pipelines.errors import UntrustedCodeError
from tidal.pipelines.graph import Pipeline, load_pipeline


def code_digest(pipeline: Pipeline) -> str | None:
    """The digest of the source file that defines ``pipeline``, as a run records it; None for
    a pipeline defined where there is no file (an interactive session)."""
    module = sys.modules.get(pipeline.function.__module__)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    try:
        return digest_bytes(Path(file).read_bytes())
    except OSError:
        return None


def load_recorded(target: str, digest: str | None, *, trust_code: bool, field: str,
                  remedy: str) -> Pipeline:
    """The pipeline a stored ``target`` names, imported only once the source that importing
    it would run is the code recorded with it (``digest``) and defines the pipeline.
    ``remedy`` ends each refusal, saying how this caller trusts the code."""
    if trust_code:
        return load_pipeline(target)

    def refuse(problem: str) -> UntrustedCodeError:
        return UntrustedCodeError(f"{field} {target!r}: {problem}; nothing was imported. "
                                  f"{remedy}", field=field)

    module, _, name = str(target).rpartition(":")
    if module.endswith(".py") or "/" in module or "\\" in module:
        raise refuse("a stored target names a module, never a file to run")
    if not name.isidentifier():
        raise refuse("a stored target is 'module:pipeline', the pipeline a top-level name")
    try:
        source = find_source(module)
    except ModuleSourceError as error:
        raise refuse(error.message) from None
    code = source.read_bytes()
    if digest is None:
        raise refuse("no digest of its code was recorded with it")
    found = digest_bytes(code)
    if found != digest:
        raise refuse(f"the code in {source} ({found}) is not the code recorded ({digest}): it "
                     "changed since, or the stored target was changed")
    if not _declares_pipeline(code, name):
        raise refuse(f"{source} does not define {name!r} with @pipeline")
    return load_pipeline(target)


def _declares_pipeline(source: bytes, name: str) -> bool:
    """Whether ``name`` is bound at the top level of ``source`` by a function decorated with
    ``@pipeline`` / ``@tidal.pipeline(...)``, or by a call of ``pipeline(...)``."""
    statement = top_level_definition(source, name)
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return any(_is_pipeline(decorator) for decorator in statement.decorator_list)
    if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
        value = statement.value
        return isinstance(value, ast.Call) and _is_pipeline(value.func)
    return False


def _is_pipeline(node: ast.expr) -> bool:
    if isinstance(node, ast.Call):
        node = node.func
    return (isinstance(node, ast.Name) and node.id == "pipeline") or \
        (isinstance(node, ast.Attribute) and node.attr == "pipeline")
