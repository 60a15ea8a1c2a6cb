"""The built-in runbooks act only through typed actions (issue: runbooks as typed
actions): a step is declared with ``@step`` at the function that builds its action,
that builder is synchronous (it cannot reach a client), and every call to a target
happens in an action's ``execute``, which the engine runs after the safety gate.

Checked on the source, so a new step written the old way (an ``async def`` taking the
step context and calling a client itself, with a hand-written render beside it) fails
here rather than in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import remediator.runbooks as runbooks_package

RUNBOOKS = Path(runbooks_package.__file__).parent
SOURCES = sorted(RUNBOOKS.glob("*.py"))


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    a = fn.args
    return {p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)}


def test_the_runbooks_are_here() -> None:
    assert len(SOURCES) > 20
    assert any(p.name == "rb01_pricing_pack.py" for p in SOURCES)


def test_no_step_function_reaches_a_client_itself() -> None:
    """No ``async def`` takes the step context: I/O happens only in an action's
    ``execute(clients)`` (or a helper it calls with the client it was handed)."""
    offenders = [
        f"{path.name}:{fn.lineno} {fn.name}"
        for path in SOURCES
        for fn in _functions(ast.parse(path.read_text()))
        if isinstance(fn, ast.AsyncFunctionDef) and "ctx" in _params(fn)
    ]
    assert offenders == []


def test_no_hand_written_render_functions() -> None:
    """A plan, a page and an audit row show ``action.render()`` of the object that
    runs; a separate ``render_*`` function could drift from it."""
    offenders = [
        f"{path.name}:{fn.lineno} {fn.name}"
        for path in SOURCES
        for fn in _functions(ast.parse(path.read_text()))
        if fn.name.startswith("render_")
    ]
    assert offenders == []


def test_steps_are_declared_with_the_step_decorator() -> None:
    """``Step(...)`` built by hand in a runbook bypasses the action model."""
    offenders = [
        f"{path.name}:{node.lineno}"
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Step"
    ]
    assert offenders == []
