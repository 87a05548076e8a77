"""Which names a ``%%step`` cell reads, writes, mutates and deletes.

Why this exists
---------------
A step runs on a remote machine, not in the kernel. It only sees what it is
given, and later steps only see what it returns. So for every ``%%step`` cell
we must know, statically and before anything runs remotely:

* its **inputs** (``reads``): names the cell uses before binding them itself;
  each becomes a link to an earlier step, a pipeline parameter, a re-done
  import or a value captured from the kernel;
* its **outputs** (``writes`` and ``mutates``): names still bound when the
  cell ends, plus inputs it changes in place (``df.drop(..., inplace=True)``,
  ``lst.append(x)``, ``d[k] = v``, ``obj.attr = v``, ``x += 1``), so that
  later steps get the changed value and not a stale copy;
* what it ``deletes``, ``imports`` and ``defines`` (functions and classes), so
  the caller can re-do imports inside a step and explain each edge.

Scoping follows Python's real rules at cell (module) scope: comprehensions,
lambdas, functions and classes get their own scopes; ``global`` and
``nonlocal`` are honoured; names a function reads from the cell count as reads
of the cell unless the cell binds them itself (they are looked up at call
time, when the cell has run); a method does not see its class body's names.
Evaluation order matters: ``x = x + 1`` reads ``x``, ``for x in xs`` reads
``xs`` before binding ``x``.

What it deliberately approximates
---------------------------------
* **Flow-insensitive within branches and loops.** Statements are visited in
  source (evaluation) order and a binding anywhere earlier counts, even in a
  branch that may not run: after ``if c: x = 1``, ``print(x)`` does not read
  ``x``. Treating both branches of an ``if`` separately would be more exact
  for straight-line code but wrong for loop-carried values (``if i == 0:
  total = b`` / ``else: total = total + b`` inside a ``for``), which are far
  more common in notebooks.
* **Generator expressions run at once**, like the other comprehensions,
  although Python evaluates all but their first iterable lazily: reading a
  name before the cell binds it is reported even if the generator is only
  consumed later (an extra input is safer than a missing one).
* ``del x`` on a name the cell has not bound yet is a read of ``x`` (the
  statement needs it to exist), besides being recorded in ``deletes``.
* **Maybe-unbound is still bound.** A ``del`` that may not run (inside an
  ``if``, a loop, a ``try`` or a ``match``, or through ``global`` in a
  function that may never be called) and the implicit ``del`` at the end of an
  ``except ... as name`` handler leave a name that was bound before still
  bound (a write, an output); only a ``del`` that always runs is a delete.
* ``mutates`` only lists inputs still holding the mutated value at the end:
  an input the cell re-binds (other than by ``x += ...``) or deletes is
  reported as a write or a delete instead.
* A name a function binds through ``global`` is a cell write, and is then
  not an input of other functions (assumed to be called after it) nor of
  later cell-level code; the function's own reads before that binding are
  inputs (``def bump(): global n; n += 1`` reads ``n``).
* **Dynamic code is invisible**: ``exec``/``eval``, ``globals()[...]``,
  ``setattr(obj, ...)``, ``locals()``, star imports (their line is reported
  in ``star_imports`` so the caller can warn).
* **Mutation is recognised syntactically**: calls of the methods in
  :data:`MUTATING_METHODS` (and any ``*_update`` method), any method call with
  ``inplace=True``, assignment to or deletion of a subscript/attribute, and
  augmented assignment; through an alias too (``for s in (a, b): s.drop(..., inplace=True)``,
  ``x = y``, ``x = y[0]``, ``p, q = a, b``, ``both = [a]``, ``enumerate``/``zip``/``d.values()``): a change
  through a cell-level name is a change of every name it may refer to (``CellAnalysis.aliases``;
  flow-insensitive, so a rebinding in between still counts: an extra output costs a transfer, a missed
  one a wrong result). Mutation through a function (``random.shuffle(lst)``,
  ``np.random.shuffle(a)``, ``fill(lst)``) cannot be seen. Conversely a module
  function with a mutating method's name (``np.append(a, 1)``,
  ``os.remove(p)``) looks like a mutation of the module name (``np``, ``os``)
  when that name is an input: callers must drop inputs whose kernel value is
  a module from the outputs.
* ``from __future__ import annotations`` is honoured when the cell itself
  starts with it; a future import run in an earlier cell is not seen.
* Python 3.12 generics (``def f[T]``, ``type X = ...``) are handled
  approximately (type parameters are local; alias values are lazy).

Users override the inference with ``%%step --inputs/--outputs``.

This module is pure: it imports only the standard library and keeps no state
besides a bounded :func:`functools.lru_cache` on :func:`analyze`.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "CallSite",
    "CellAnalysis",
    "FunctionInfo",
    "MUTATING_FUNCTIONS",
    "MUTATING_METHODS",
    "analyze",
    "mutated_through_calls",
]

#: Method names whose call is taken to change the object it is called on
#: (``x.append(1)`` mutates ``x``; ``x.a.append(1)`` and ``x[k].append(1)``
#: mutate ``x``). Any method ending in ``_update`` (``difference_update``) and
#: any method called with ``inplace=True`` (pandas) count as well. Besides the
#: list/dict/set/deque methods this includes the estimator-fitting methods of
#: scikit-learn, Keras, XGBoost and friends and PyTorch's ``load_state_dict``:
#: ``model.fit(X, y)`` in one step and ``model.predict(X)`` in a later one is
#: the commonest notebook pattern, and without this the later step would get
#: the unfitted model. A false positive only costs an extra output, and the
#: caller prunes outputs no later step reads.
MUTATING_METHODS: frozenset[str] = frozenset(
    {
        # list, dict, set, collections.deque, pandas (insert/pop/update)
        "append",
        "extend",
        "insert",
        "pop",
        "remove",
        "clear",
        "sort",
        "reverse",
        "update",
        "setdefault",
        "popitem",
        "add",
        "discard",
        "appendleft",
        "extendleft",
        "popleft",
        # estimators fitted in place
        "fit",
        "partial_fit",
        "fit_transform",
        "fit_predict",
        "set_params",
        "load_state_dict",
    }
)


class _ReadOnlyDict(dict[str, Any]):
    """A ``dict`` that refuses changes.

    Analyses are cached by :func:`analyze` and shared between callers, so their
    mappings must not be edited in place (copy with ``dict(...)`` first). It is
    still a real ``dict``: ``==``, ``json.dumps``, ``pickle``, ``copy`` and
    ``dataclasses.asdict`` work, and it is hashable so the frozen
    :class:`CellAnalysis` is too.
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("CellAnalysis mappings are read-only; copy them with dict(...) to edit")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type, tuple[dict[Any, Any]]]:
        return (type(self), (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))


#: Library functions that change their first argument in place (``random.shuffle(xs)``,
#: ``np.random.shuffle(a)``, ``rng.shuffle(a)``, ``np.copyto(dst, src)``, ``heapq.heappush(h, x)``,
#: ``bisect.insort(a, x)``...), recognised by the name called, whatever it is called on.
MUTATING_FUNCTIONS: frozenset[str] = frozenset(
    {
        "shuffle",
        "copyto",
        "put",
        "putmask",
        "place",
        "fill_diagonal",
        "heappush",
        "heappop",
        "heapify",
        "heappushpop",
        "heapreplace",
        "insort",
        "insort_left",
        "insort_right",
    }
)


@dataclass(frozen=True)
class CallSite:
    """A call whose arguments a notebook function may change: ``f(a, b=c)`` or ``obj.method(a)``."""

    function: str | None  # ``f`` for ``f(...)``
    method: str | None  # ``method`` for ``receiver.method(...)``
    receiver: str | None  # the root name of the receiver (``obj`` for ``obj.x.method()``)
    args: tuple[str | None, ...]  # the root name of each positional argument (None: not a name)
    kwargs: tuple[tuple[str, str], ...]  # (keyword, root name) of named arguments
    line: int


@dataclass(frozen=True)
class FunctionInfo:
    """What a function defined in a cell does to its parameters."""

    params: tuple[str, ...]  # positional parameters, in order (a method's first is ``self``)
    mutated: frozenset[str]  # parameters it changes in place, by the cell's syntactic rules
    calls: tuple[CallSite, ...]  # calls in its body, followed to find what it changes through them


@dataclass(frozen=True)
class CellAnalysis:
    """What one cell does to the names at cell scope. Lines are 1-based, in the cell body.

    The mapping fields are read-only ``dict`` instances (results are cached and
    shared); use :func:`dataclasses.replace` or ``dict(...)`` to derive new ones.
    """

    reads: Mapping[str, int]
    """Names the cell reads before binding them (its inputs) -> line of the first such read."""
    writes: Mapping[str, int]
    """Names bound at cell scope and still bound at the end -> line of the last binding."""
    mutates: Mapping[str, int]
    """Inputs (names in ``reads``) changed in place and not re-bound -> line of the first mutation."""
    deletes: Mapping[str, int]
    """Names removed with ``del name`` and not re-bound afterwards -> line of the ``del``."""
    imports: Mapping[str, str]
    """Names whose last cell-scope binding is an import -> normalized import statement."""
    star_imports: tuple[int, ...]
    """Lines of ``from module import *``."""
    defines: Mapping[str, str]
    """Names whose last cell-scope binding is ``def``/``class`` -> ``"function"`` or ``"class"``."""
    misplaced: tuple[tuple[int, str], ...] = ()
    """``(line, keyword)`` of each ``return``, ``yield``, ``await`` or ``global`` at cell level."""
    functions: Mapping[str, FunctionInfo] = field(default_factory=dict)
    """Functions defined at cell level -> what they do to their parameters."""
    methods: Mapping[str, FunctionInfo] = field(default_factory=dict)
    """Methods of the classes defined at cell level, by name."""
    calls: tuple[CallSite, ...] = ()
    """Calls made by the cell's own code (not inside its functions), for :func:`mutated_through_calls`."""
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Names bound at cell level that may refer to (or hold) other names' objects -> those names, transitively
    (``for s in (a, b)``, ``x = y``, ``x = y[0]``, ``p, q = a, b``, ``both = [a]``): a change through one is a
    change of them all."""

    def __post_init__(self) -> None:
        for name in ("reads", "writes", "mutates", "deletes", "imports", "defines", "functions", "methods", "aliases"):
            value = getattr(self, name)
            if not isinstance(value, _ReadOnlyDict):
                object.__setattr__(self, name, _ReadOnlyDict(value))
        object.__setattr__(self, "star_imports", tuple(self.star_imports))
        object.__setattr__(self, "misplaced", tuple(self.misplaced))
        object.__setattr__(self, "calls", tuple(self.calls))

    @property
    def outputs(self) -> set[str]:
        """Candidate outputs: names written or mutated in place, minus deleted ones."""
        return (set(self.writes) | set(self.mutates)) - set(self.deletes)


@functools.lru_cache(maxsize=512)
def analyze(source: str) -> CellAnalysis:
    """Analyse the Python body of one cell (the ``%%step`` line already removed).

    Raises :class:`SyntaxError` from :func:`ast.parse` unchanged (it carries the
    line). Results are cached by source; ``analyze.__wrapped__`` is the
    uncached function.
    """
    tree = ast.parse(source, filename="<cell>")
    visitor = _CellVisitor(evaluate_annotations=not _has_future_annotations(tree))
    visitor.visit_statements(tree.body)
    return visitor.result()


# ---------------------------------------------------------------------------
# Scopes

_MODULE = "module"  # the cell: bindings are tracked in evaluation order
_FUNCTION = "function"  # def and lambda bodies: run at call time; locals are static
_CLASS = "class"  # run at once; invisible to scopes nested in it
_COMPREHENSION = "comprehension"  # run at once; only its targets are local
_TYPE_PARAMS = "type parameters"  # Python 3.12 `def f[T]`, `class C[T]`, `type X[T] = ...`


class _Scope:
    """One Python scope while it is being visited.

    ``bound`` holds the names bound so far (cell and class scopes), the targets
    (comprehensions, type parameters) or the locals seen so far (functions).
    A function's reads that are not yet known to be local wait in ``pending``
    until the whole body has been seen, because any binding in the body makes
    a name local to the whole function.
    """

    __slots__ = (
        "kind",
        "parent",
        "bound",
        "declared_global",
        "declared_nonlocal",
        "global_bound",
        "pending",
        "mutated",
        "calls",
        "params",
    )

    def __init__(self, kind: str, parent: _Scope | None, bound: Iterable[str] = ()) -> None:
        self.kind = kind
        self.parent = parent
        self.bound: set[str] = set(bound)
        self.declared_global: set[str] = set()
        self.declared_nonlocal: set[str] = set()
        self.global_bound: set[str] = set()  # `global` names this scope has bound so far
        self.pending: list[tuple[str, int, bool]] = []  # (name, line, is_mutation)
        self.mutated: set[str] = set()  # names changed in place in this scope (a function's parameters)
        self.calls: list[CallSite] = []  # calls made in this scope
        self.params: frozenset[str] = frozenset(self.bound) if kind == _FUNCTION else frozenset()


def _enclosing(scope: _Scope) -> _Scope:
    """The scope whose names ``scope``'s free names resolve to: class bodies are skipped."""
    parent = scope.parent
    assert parent is not None
    while parent.kind == _CLASS:
        parent = parent.parent
        assert parent is not None
    return parent


# ---------------------------------------------------------------------------
# The visitor


class _CellVisitor:
    """One pass over a cell's AST in evaluation order, tracking scopes."""

    def __init__(self, evaluate_annotations: bool) -> None:
        self.evaluate_annotations = evaluate_annotations
        self.cell = _Scope(_MODULE, None)
        self.scope = self.cell
        self.reads: dict[str, int] = {}
        self.mutations: dict[str, int] = {}
        self.writes: dict[str, int] = {}
        self.deletes: dict[str, int] = {}
        self.imports: dict[str, str] = {}
        self.defines: dict[str, str] = {}
        self.star_imports: list[int] = []
        self.misplaced: list[tuple[int, str]] = []
        self.functions: dict[str, FunctionInfo] = {}
        self.methods: dict[str, FunctionInfo] = {}
        # How many statements that may not run (branches, loop bodies, try blocks) enclose the one visited.
        self.conditional = 0
        # Names bound by cell-level code (not through `global` in a function).
        self.directly_bound: set[str] = set()
        # Names bound at cell scope through `global` -> the scopes that bind them.
        self.global_binders: dict[str, list[_Scope]] = {}
        # Names bound other than by augmented assignment, or deleted: no longer the mutated input.
        self.rebound: set[str] = set()
        # Reads from function bodies run at call time: decided once the whole cell is seen.
        self.deferred: list[tuple[str, int, bool, _Scope | None]] = []
        # Cell-level names -> the names whose objects they may refer to or hold (see CellAnalysis.aliases).
        self.aliases: dict[str, set[str]] = {}
        # Evaluation order at cell level: when each name is first bound, when each cell function is first called,
        # and which deferred reads each cell function's body makes (a function called before the cell binds a name
        # it reads, as in `combined = get_titles()`, reads the earlier value: an input).
        self.clock = 0
        self.first_bound: dict[str, int] = {}
        self.first_call: dict[str, int] = {}
        self.deferred_by: dict[str, tuple[int, int]] = {}  # function -> its slice of self.deferred
        self.calls_in: dict[str, set[str]] = {}  # cell function -> the names it calls

    # -- traversal ----------------------------------------------------------

    def visit(self, node: ast.AST) -> None:
        method = _DISPATCH.get(type(node))
        if method is None:
            self.generic_visit(node)
        else:
            method(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        """Visit children in field order, which is evaluation order for the nodes left to it."""
        for name in _child_fields(type(node)):  # type: ignore[arg-type]  # AST types hash by identity
            value = getattr(node, name, None)
            if type(value) is list:
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST):
                self.visit(value)

    def visit_statements(self, nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            self.visit(node)

    def skip(self, node: ast.AST) -> None:
        """Nodes without names: constants, operators, expression contexts."""

    # -- result -------------------------------------------------------------

    def result(self) -> CellAnalysis:
        early = self._called_before_binding()
        for index, (name, line, is_mutation, origin) in enumerate(self.deferred):
            if name in self.directly_bound and (index, name) not in early:
                continue  # the cell binds it before any call can happen
            binders = self.global_binders.get(name)
            if binders and any(binder is not origin for binder in binders):
                continue  # another function binds it at cell scope via `global`
            self._record(name, line, is_mutation)
        mutates = {
            name: line for name, line in self.mutations.items() if name in self.reads and name not in self.rebound
        }
        return CellAnalysis(
            reads=_sorted_by_line(self.reads),
            writes=_sorted_by_line(self.writes),
            mutates=_sorted_by_line(mutates),
            deletes=_sorted_by_line(self.deletes),
            imports=self.imports,
            star_imports=tuple(self.star_imports),
            defines=self.defines,
            misplaced=tuple(self.misplaced),
            functions=self.functions,
            methods=self.methods,
            calls=tuple(self.cell.calls),
            aliases={name: tuple(sorted(self._aliased(name))) for name in self.aliases},
        )

    def _called_before_binding(self) -> set[tuple[int, str]]:
        """(deferred index, name) of the reads a cell function makes when the cell calls it before binding the
        name (directly, or through another cell function it calls)."""
        called = dict(self.first_call)
        changed = True
        while changed:
            changed = False
            for function, callees in self.calls_in.items():
                if function not in called:
                    continue
                for callee in callees:
                    if callee in self.deferred_by and called.get(callee, 1 << 60) > called[function]:
                        called[callee] = called[function]
                        changed = True
        early = set()
        for function, (start, end) in self.deferred_by.items():
            when = called.get(function)
            if when is None:
                continue
            for index in range(start, end):
                name = self.deferred[index][0]
                if when < self.first_bound.get(name, 1 << 60):
                    early.add((index, name))
        return early

    # -- name uses ----------------------------------------------------------

    def _use(self, name: str, line: int, is_mutation: bool = False) -> None:
        """``name`` is read (or mutated in place) in the current scope."""
        if self.scope is self.cell:  # the common case, kept short
            if name not in self.cell.bound:
                self._record(name, line, is_mutation)
        else:
            self._resolve(name, line, is_mutation, self.scope, deferred=False)

    def _resolve(self, name: str, line: int, is_mutation: bool, scope: _Scope, deferred: bool) -> None:
        """Find the scope ``name`` belongs to, starting at ``scope``; record it if that is the cell."""
        while True:
            if scope.kind == _MODULE:
                self._use_at_cell(name, line, is_mutation, deferred, origin=None)
                return
            if name in scope.declared_global:
                if name not in scope.global_bound:
                    run_later = deferred or scope.kind == _FUNCTION
                    self._use_at_cell(name, line, is_mutation, run_later, origin=scope)
                return
            if name in scope.bound:
                return  # local to this scope
            if scope.kind == _FUNCTION:
                scope.pending.append((name, line, is_mutation))  # local or free: known at the end
                return
            scope = _enclosing(scope)  # class body, comprehension: executed at once

    def _use_at_cell(self, name: str, line: int, is_mutation: bool, deferred: bool, origin: _Scope | None) -> None:
        if deferred:
            self.deferred.append((name, line, is_mutation, origin))
        elif name not in self.cell.bound:
            self._record(name, line, is_mutation)

    def _record(self, name: str, line: int, is_mutation: bool) -> None:
        target = self.mutations if is_mutation else self.reads
        first = target.get(name)
        if first is None or line < first:
            target[name] = line

    def _close_function(self, scope: _Scope) -> None:
        """The body is fully seen: names that are not local are free, resolved outside at call time."""
        outer = _enclosing(scope)
        for name, line, is_mutation in scope.pending:
            if name not in scope.bound:
                self._resolve(name, line, is_mutation, outer, deferred=True)

    # -- bindings -----------------------------------------------------------

    def _bind(
        self,
        scope: _Scope,
        name: str,
        line: int,
        *,
        augmented: bool = False,
        import_statement: str | None = None,
        definition: str | None = None,
    ) -> None:
        if scope.kind == _MODULE:
            self._bind_at_cell(name, line, augmented, import_statement, definition, origin=None)
        elif name in scope.declared_global:
            scope.global_bound.add(name)
            self._bind_at_cell(name, line, augmented, None, None, origin=scope)
        elif name not in scope.declared_nonlocal:
            scope.bound.add(name)

    def _bind_at_cell(
        self,
        name: str,
        line: int,
        augmented: bool,
        import_statement: str | None,
        definition: str | None,
        origin: _Scope | None,
    ) -> None:
        self.cell.bound.add(name)
        self.clock += 1
        if origin is None:
            self.first_bound.setdefault(name, self.clock)
        self.writes[name] = line
        self.deletes.pop(name, None)
        if import_statement is None:
            self.imports.pop(name, None)
        else:
            self.imports[name] = _merge_imports(self.imports.get(name), import_statement)
        if definition is None:
            self.defines.pop(name, None)
        else:
            self.defines[name] = definition
        if not augmented:
            self.rebound.add(name)
        if origin is None:
            self.directly_bound.add(name)
        else:
            self.global_binders.setdefault(name, []).append(origin)

    def _forget_at_cell(self, name: str) -> None:
        self.cell.bound.discard(name)
        self.writes.pop(name, None)
        self.imports.pop(name, None)
        self.defines.pop(name, None)

    def _delete(self, name: str, line: int) -> None:
        scope = self.scope
        if scope.kind == _MODULE or name in scope.declared_global:
            # `del x` needs x to exist: if the cell has not bound it, x is an input.
            self._use(name, line)
            if self.conditional > 0 or scope.kind != _MODULE:
                # The del may not run: where it does not, the name is still bound, so it stays an
                # output (an input of the cell becomes one, as if changed in place).
                if name not in self.cell.bound:
                    self._use(name, line, is_mutation=True)
                return
            self._forget_at_cell(name)
            self.deletes[name] = line
            self.rebound.add(name)
            scope.global_bound.discard(name)
        elif scope.kind == _CLASS:
            scope.bound.discard(name)
        elif name not in scope.declared_nonlocal:
            scope.bound.add(name)  # `del x` in a function makes x local

    def _end_except_handler(self, name: str, bound_before: tuple[int, str | None, str | None] | None) -> None:
        """Python deletes ``except ... as name`` when the handler ends.

        The handler may not run: a name bound before the ``try`` is then still
        bound after it (with its earlier binding), so it stays an output.
        """
        scope = self.scope
        if scope.kind == _MODULE or name in scope.declared_global:
            if bound_before is None:
                self._forget_at_cell(name)
                scope.global_bound.discard(name)
            else:
                line, statement, definition = bound_before
                self.cell.bound.add(name)
                self.writes[name] = max(line, self.writes.get(name, line))
                if statement is not None:
                    self.imports[name] = statement
                if definition is not None:
                    self.defines[name] = definition
        elif scope.kind == _CLASS:
            scope.bound.discard(name)

    # -- names, attributes, subscripts, calls -------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        context = type(node.ctx)
        if context is ast.Load:
            self._use(node.id, node.lineno)
        elif context is ast.Store:
            self._bind(self.scope, node.id, node.lineno)
        else:
            self._delete(node.id, node.lineno)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.visit(node.value)
        if type(node.ctx) is not ast.Load:  # `x.a = v`, `del x.a`: x changes in place
            self._use_root_as_mutated(node.value, node.lineno)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.visit(node.value)
        self.visit(node.slice)
        if type(node.ctx) is not ast.Load:  # `x[k] = v`, `del x[k]`
            self._use_root_as_mutated(node.value, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        self.visit(node.func)
        self.visit_statements(node.args)
        for keyword in node.keywords:
            self.visit(keyword.value)
        func = node.func
        if isinstance(func, ast.Attribute) and (_is_mutating_method(func.attr) or _has_inplace_true(node.keywords)):
            self._use_root_as_mutated(func.value, node.lineno)
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if called in MUTATING_FUNCTIONS and node.args:
            self._use_root_as_mutated(node.args[0], node.lineno)
        scope = self._code_scope()
        if scope is self.cell and isinstance(func, ast.Name):
            self.clock += 1
            self.first_call.setdefault(func.id, self.clock)
        scope.calls.append(
            CallSite(
                function=func.id if isinstance(func, ast.Name) else None,
                method=func.attr if isinstance(func, ast.Attribute) else None,
                receiver=_root_name(func.value) if isinstance(func, ast.Attribute) else None,
                args=tuple(_root_name(a) for a in node.args),
                kwargs=tuple((k.arg, r) for k in node.keywords if k.arg and (r := _root_name(k.value))),
                line=node.lineno,
            )
        )

    def _code_scope(self) -> _Scope:
        """The function or cell whose code the current node runs in (comprehensions belong to it)."""
        scope = self.scope
        while scope.kind in (_COMPREHENSION, _TYPE_PARAMS) and scope.parent is not None:
            scope = scope.parent
        return scope

    def _use_root_as_mutated(self, expression: ast.expr, line: int) -> None:
        root = _root_name(expression)
        if root is not None:
            self._code_scope().mutated.add(root)
            self._use(root, line, is_mutation=True)
            self._mutate_aliased(root, line)

    # -- aliases: a change through one name is a change of every object it may refer to --------------

    def _aliased(self, name: str) -> set[str]:
        """Every name ``name`` may refer to or hold, transitively (``name`` itself left out)."""
        found: set[str] = set()
        todo = list(self.aliases.get(name, ()))
        while todo:
            other = todo.pop()
            if other not in found and other != name:
                found.add(other)
                todo += self.aliases.get(other, ())
        return found

    def _mutate_aliased(self, name: str, line: int) -> None:
        if self._code_scope() is self.cell:
            for other in sorted(self._aliased(name)):
                self._use(other, line, is_mutation=True)

    def _note_aliases(self, targets: list[ast.expr], value: ast.expr) -> None:
        """At cell level, what each assigned (or loop) name may refer to after ``targets = value``."""
        if self._code_scope() is not self.cell:
            return
        for target in targets:
            if (
                isinstance(target, (ast.Tuple, ast.List))
                and isinstance(value, (ast.Tuple, ast.List))
                and len(target.elts) == len(value.elts)
                and not any(isinstance(e, ast.Starred) for e in target.elts)
            ):
                for t, v in zip(target.elts, value.elts):  # `a, b = x, y`: pairwise
                    self._note_aliases([t], v)
                continue
            sources = _alias_sources(value)
            if sources:
                names: set[str] = set()
                _collect_target_names(target, names)
                for name in names:
                    self.aliases.setdefault(name, set()).update(sources - {name})

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        scope = self.scope
        while scope.kind == _COMPREHENSION:  # PEP 572: binds in the enclosing scope
            assert scope.parent is not None
            scope = scope.parent
        self._bind(scope, node.target.id, node.target.lineno)

    # -- assignments ---------------------------------------------------------

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        self.visit_statements(node.targets)
        self._note_aliases(node.targets, node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Name):
            code = self._code_scope()
            if target.id in code.params:
                # `arr -= arr.mean()` on a parameter changes the caller's array in place (__isub__); an int
                # is rebound instead, and then the extra output costs a transfer, never a wrong result
                code.mutated.add(target.id)
            self._use(target.id, target.lineno)
            self.visit(node.value)
            self._use(target.id, target.lineno, is_mutation=True)
            self._mutate_aliased(target.id, target.lineno)  # `x += [1]` on an alias extends the list it names
            self._bind(self.scope, target.id, target.lineno, augmented=True)
        else:
            self.visit(target)  # `x[k] += v` reads x and k, and mutates x
            self.visit(node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        scope = self.scope
        if node.value is not None:
            self.visit(node.value)
        # PEP 526: annotations of a function's local variables are never evaluated.
        if self.evaluate_annotations and scope.kind != _FUNCTION:
            self.visit(node.annotation)
        target = node.target
        if isinstance(target, ast.Name):
            if node.value is not None:
                self._bind(scope, target.id, target.lineno)
            elif scope.kind == _FUNCTION and target.id not in scope.declared_nonlocal:
                scope.bound.add(target.id)  # `x: int` alone makes x local to the function
        elif node.value is not None:
            self.visit(target)
        else:
            # `x.a: int` / `x[k]: int` evaluates x (and k) but stores nothing.
            assert isinstance(target, (ast.Attribute, ast.Subscript))
            self.visit(target.value)
            if isinstance(target, ast.Subscript):
                self.visit(target.slice)

    def visit_Delete(self, node: ast.Delete) -> None:
        self.visit_statements(node.targets)

    # -- compound statements (If, While, With, Try bodies use generic_visit) --

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        self._note_aliases([node.target], node.iter)  # `for s in (a, b)`: s is a, then b
        self._visit_conditionally(node.body, node.orelse)

    visit_AsyncFor = visit_For

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        before = None
        if node.name is not None:
            name = node.name
            if self._at_cell(name) and name in self.cell.bound and name in self.writes:
                before = (self.writes[name], self.imports.get(name), self.defines.get(name))
            self._bind(self.scope, name, node.lineno)
        self.conditional += 1
        self.visit_statements(node.body)
        self.conditional -= 1
        if node.name is not None:
            self._end_except_handler(node.name, before)

    def _at_cell(self, name: str) -> bool:
        """Whether binding ``name`` in the current scope binds it at cell scope."""
        return self.scope.kind == _MODULE or name in self.scope.declared_global

    # Statements whose body may not run: a ``del`` in them leaves a bound name bound.
    def _visit_conditionally(self, *blocks: list[ast.stmt]) -> None:
        self.conditional += 1
        for block in blocks:
            self.visit_statements(block)
        self.conditional -= 1

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self._visit_conditionally(node.body, node.orelse)

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        self._visit_conditionally(node.body, node.orelse)

    def visit_Try(self, node: ast.Try) -> None:
        self._visit_conditionally(node.body)
        self.visit_statements(node.handlers)  # each handler counts itself as conditional
        self._visit_conditionally(node.orelse)
        self.visit_statements(node.finalbody)

    visit_TryStar = visit_Try

    def visit_match_case(self, node: ast.match_case) -> None:
        self.visit(node.pattern)
        if node.guard is not None:
            self.visit(node.guard)
        self._visit_conditionally(node.body)

    # A step cell becomes a function's body: these belong in a function, not at its top.
    def visit_Return(self, node: ast.Return) -> None:
        self._misplaced(node, "return")
        if node.value is not None:
            self.visit(node.value)

    def visit_Yield(self, node: ast.Yield | ast.YieldFrom) -> None:
        self._misplaced(node, "yield")
        if node.value is not None:
            self.visit(node.value)

    visit_YieldFrom = visit_Yield

    def visit_Await(self, node: ast.Await) -> None:
        self._misplaced(node, "await")
        self.visit(node.value)

    def _misplaced(self, node: ast.AST, keyword: str) -> None:
        scope = self.scope
        while scope.kind in (_COMPREHENSION, _CLASS) and scope.parent is not None:
            scope = scope.parent
        if scope.kind == _MODULE:
            self.misplaced.append((getattr(node, "lineno", 0), keyword))

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name is not None:
            self._bind(self.scope, node.name, node.lineno)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name is not None:
            self._bind(self.scope, node.name, node.lineno)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.visit_statements(node.keys)
        self.visit_statements(node.patterns)
        if node.rest is not None:
            self._bind(self.scope, node.rest, node.lineno)

    # -- imports and declarations --------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                name, statement = alias.asname, f"import {alias.name} as {alias.asname}"
            else:
                name, statement = alias.name.partition(".")[0], f"import {alias.name}"
            self._bind(self.scope, name, node.lineno, import_statement=statement)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        if module == "__future__":
            return
        for alias in node.names:
            if alias.name == "*":
                if self.scope.kind == _MODULE:
                    self.star_imports.append(node.lineno)
                continue
            statement = f"from {module} import {alias.name}"
            if alias.asname:
                statement += f" as {alias.asname}"
            self._bind(self.scope, alias.asname or alias.name, node.lineno, import_statement=statement)

    def visit_Global(self, node: ast.Global) -> None:
        if self.scope.kind != _MODULE:
            self.scope.declared_global.update(node.names)
        else:  # harmless in a kernel's cell; in the step function it points at the job's module
            self.misplaced.append((node.lineno, "global"))

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.scope.declared_nonlocal.update(node.names)

    # -- functions, lambdas, classes ------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer = self.scope
        # Evaluated at definition time, in the enclosing scope.
        self.visit_statements(node.decorator_list)
        self._visit_defaults(node.args)
        type_scope = self._enter_type_params(node)
        if self.evaluate_annotations:
            self._visit_annotations(node.args, node.returns)
        self.scope = outer
        self._bind(outer, node.name, node.lineno, definition="function")
        start = len(self.deferred)
        scope = self._visit_function_body(node.args, node.body, parent=type_scope or outer)
        if outer.kind == _MODULE:
            self.deferred_by[node.name] = (start, len(self.deferred))
            self.calls_in[node.name] = {c.function for c in scope.calls if c.function}
        positional = tuple(a.arg for a in [*node.args.posonlyargs, *node.args.args])
        info = FunctionInfo(positional, frozenset(scope.mutated & set(_parameter_names(node.args))), tuple(scope.calls))
        if outer.kind == _MODULE:
            self.functions[node.name] = info
        elif outer.kind == _CLASS and outer.parent is not None and outer.parent.kind == _MODULE:
            self.methods[node.name] = info

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_defaults(node.args)
        self._visit_function_body(node.args, [node.body], parent=self.scope)

    def _visit_defaults(self, args: ast.arguments) -> None:
        self.visit_statements(args.defaults)
        for default in args.kw_defaults:
            if default is not None:
                self.visit(default)

    def _visit_annotations(self, args: ast.arguments, returns: ast.expr | None) -> None:
        for arg in _all_parameters(args):
            if arg.annotation is not None:
                self.visit(arg.annotation)
        if returns is not None:
            self.visit(returns)

    def _visit_function_body(self, args: ast.arguments, body: list[Any], parent: _Scope) -> _Scope:
        saved = self.scope
        scope = _Scope(_FUNCTION, parent, (arg.arg for arg in _all_parameters(args)))
        self.scope = scope
        self.visit_statements(body)
        self.scope = saved
        self._close_function(scope)
        return scope

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        outer = self.scope
        self.visit_statements(node.decorator_list)
        self._enter_type_params(node)
        self.visit_statements(node.bases)
        self.visit_statements(node.keywords)
        self.scope = _Scope(_CLASS, self.scope)  # the body runs now, in its own namespace
        self.visit_statements(node.body)
        self.scope = outer
        self._bind(outer, node.name, node.lineno, definition="class")

    def _enter_type_params(self, node: ast.AST) -> _Scope | None:
        """Python 3.12 type parameters: a scope of their own around annotations, bases and body."""
        params = getattr(node, "type_params", None)
        if not params:
            return None
        scope = _Scope(_TYPE_PARAMS, self.scope, (param.name for param in params))
        self.scope = scope
        for param in params:
            bound = getattr(param, "bound", None)
            if bound is not None:
                self.visit(bound)
        return scope

    def visit_TypeAlias(self, node: Any) -> None:  # Python 3.12: `type X[T] = ...`
        outer = self.scope
        type_scope = self._enter_type_params(node)
        self.scope = outer
        self._bind(outer, node.name.id, node.lineno)
        lazy = _Scope(_FUNCTION, type_scope or outer)  # the value is evaluated on first use
        self.scope = lazy
        self.visit(node.value)
        self.scope = outer
        self._close_function(lazy)

    # -- comprehensions -------------------------------------------------------

    def visit_ListComp(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp) -> None:
        self._visit_comprehension(node.generators, [node.elt])

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._visit_comprehension(node.generators, [node.key, node.value])

    def _visit_comprehension(self, generators: list[ast.comprehension], results: list[ast.expr]) -> None:
        # The first iterable is evaluated in the enclosing scope, the rest inside.
        self.visit(generators[0].iter)
        targets: set[str] = set()
        for generator in generators:
            _collect_target_names(generator.target, targets)
        outer = self.scope
        self.scope = _Scope(_COMPREHENSION, outer, targets)
        for index, generator in enumerate(generators):
            if index:
                self.visit(generator.iter)
            self.visit(generator.target)
            self.visit_statements(generator.ifs)
        self.visit_statements(results)
        self.scope = outer


def _build_dispatch() -> dict[type, Callable[[_CellVisitor, Any], None]]:
    """Map AST node types to visitor methods once, instead of a getattr per node."""
    dispatch: dict[type, Callable[[_CellVisitor, Any], None]] = {}
    for attribute, method in vars(_CellVisitor).items():
        if attribute.startswith("visit_"):
            node_type = getattr(ast, attribute[len("visit_") :], None)
            if isinstance(node_type, type):
                dispatch[node_type] = method
    leaves: list[type] = [ast.Constant]
    for base in (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop):
        leaves.extend(base.__subclasses__())
    for leaf in leaves:
        dispatch[leaf] = _CellVisitor.skip
    return dispatch


_DISPATCH = _build_dispatch()

# Fields that never hold a node with names in it: contexts, operators, identifiers, flags.
_LEAF_FIELDS = frozenset({"ctx", "op", "ops", "id", "attr", "arg", "name", "asname", "module", "level"})
_LEAF_FIELDS |= {"kind", "type_comment", "is_async", "conversion", "simple"}


@functools.cache  # keyed by AST node type: a few dozen entries at most
def _child_fields(node_type: type[ast.AST]) -> tuple[str, ...]:
    """The fields of ``node_type`` that may hold child nodes, in evaluation order."""
    return tuple(name for name in node_type._fields if name not in _LEAF_FIELDS)


# ---------------------------------------------------------------------------
# Helpers


def _has_future_annotations(tree: ast.Module) -> bool:
    """True when the cell starts with ``from __future__ import annotations`` (after a docstring)."""
    for index, statement in enumerate(tree.body):
        if isinstance(statement, ast.ImportFrom) and statement.module == "__future__" and not statement.level:
            if any(alias.name == "annotations" for alias in statement.names):
                return True
        elif not (index == 0 and isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)):
            return False
    return False


def _is_mutating_method(name: str) -> bool:
    return name in MUTATING_METHODS or name.endswith("_update")


def _has_inplace_true(keywords: list[ast.keyword]) -> bool:
    for keyword in keywords:
        if keyword.arg == "inplace" and isinstance(keyword.value, ast.Constant) and keyword.value.value is True:
            return True
    return False


#: Calls whose result holds the very objects of their arguments (``for i, df in enumerate(frames)``)
_HOLDING_CALLS = frozenset({"list", "tuple", "reversed", "sorted", "iter", "enumerate", "zip", "set", "frozenset"})
#: Methods whose result holds the objects of the container they are called on (``d.values()``)
_HOLDING_METHODS = frozenset({"values", "items", "copy"})


def _alias_sources(expression: ast.expr) -> set[str]:
    """The names whose objects ``expression``'s value may be, or hold (see ``CellAnalysis.aliases``)."""
    if isinstance(expression, ast.Name):
        return {expression.id}
    if isinstance(expression, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_alias_sources(e) for e in expression.elts)) if expression.elts else set()
    if isinstance(expression, ast.Dict):
        return set().union(*(_alias_sources(v) for v in expression.values)) if expression.values else set()
    if isinstance(expression, (ast.Starred, ast.Subscript, ast.Attribute)):
        return _alias_sources(expression.value)
    if isinstance(expression, ast.IfExp):
        return _alias_sources(expression.body) | _alias_sources(expression.orelse)
    if isinstance(expression, ast.BoolOp):
        return set().union(*(_alias_sources(v) for v in expression.values))
    if isinstance(expression, ast.NamedExpr):
        return _alias_sources(expression.value) | {expression.target.id}
    if isinstance(expression, ast.Call):
        func = expression.func
        if isinstance(func, ast.Name) and func.id in _HOLDING_CALLS:
            return set().union(*(_alias_sources(a) for a in expression.args)) if expression.args else set()
        if isinstance(func, ast.Attribute) and func.attr in _HOLDING_METHODS and not expression.args:
            # `d.copy()` is shallow: its items are still d's (a DataFrame's copy is deep, and then an extra
            # output costs a transfer, never a wrong result)
            return _alias_sources(func.value)
    return set()


def _root_name(expression: ast.expr) -> str | None:
    """``x`` for ``x``, ``x.a.b``, ``x[k].a``; None when the chain starts elsewhere (a call, a literal)."""
    while isinstance(expression, (ast.Attribute, ast.Subscript)):
        expression = expression.value
    if isinstance(expression, ast.Name):
        return expression.id
    return None


def _collect_target_names(target: ast.expr, into: set[str]) -> None:
    """Names bound by an assignment target (``a``, ``a, (b, *c)``); attributes and subscripts bind none."""
    if isinstance(target, ast.Name):
        into.add(target.id)
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            _collect_target_names(element, into)
    elif isinstance(target, ast.Starred):
        _collect_target_names(target.value, into)


def _all_parameters(args: ast.arguments) -> list[ast.arg]:
    parameters = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    if args.vararg is not None:
        parameters.append(args.vararg)
    if args.kwarg is not None:
        parameters.append(args.kwarg)
    return parameters


def _parameter_names(args: ast.arguments) -> list[str]:
    return [a.arg for a in _all_parameters(args)]


def mutated_through_calls(
    calls: Iterable[CallSite], functions: Mapping[str, FunctionInfo], methods: Mapping[str, FunctionInfo]
) -> dict[str, int]:
    """The names that ``calls`` change in place through notebook functions and methods -> first line.

    A function changes a parameter when its body does by the syntactic rules, or
    passes it to a function or method that does (followed to a fixed point). A
    method that changes ``self`` changes the object it is called on. Methods are
    matched by name, whatever the receiver's class: an extra output costs a
    transfer, a missed one a wrong result.
    """
    changed: dict[str, set[str]] = {name: set(info.mutated) for name, info in functions.items()}
    changed_methods: dict[str, set[str]] = {name: set(info.mutated) for name, info in methods.items()}

    def through(call: CallSite) -> set[str]:
        """The root names this call changes, given what is known so far."""
        out: set[str] = set()
        info, mutated = None, set()
        if call.function is not None and call.function in functions:
            info, mutated = functions[call.function], changed[call.function]
            params = info.params
        elif call.method is not None and call.method in methods:
            info, mutated = methods[call.method], changed_methods[call.method]
            params = info.params[1:]  # bound method: the first parameter is the receiver
            if info.params and info.params[0] in mutated and call.receiver:
                out.add(call.receiver)
        if info is None:
            return out
        for param, root in zip(params, call.args):
            if root is not None and param in mutated:
                out.add(root)
        for keyword, root in call.kwargs:
            if keyword in mutated:
                out.add(root)
        return out

    for _ in range(len(functions) + len(methods) + 1):  # each round adds at least one, or stops
        grew = False
        for table, infos in ((changed, functions), (changed_methods, methods)):
            for name, info in infos.items():
                params = set(info.params) | set(info.mutated)
                for call in info.calls:
                    new = (through(call) & params) - table[name]
                    if new:
                        table[name] |= new
                        grew = True
        if not grew:
            break
    found: dict[str, int] = {}
    for call in calls:
        for root in through(call):
            found.setdefault(root, call.line)
    return found


def _merge_imports(previous: str | None, statement: str) -> str:
    """``import a.b`` then ``import a.c`` both bind ``a``: keep both submodules ("import a.b, a.c")."""
    if previous is None or not _is_plain_import(previous) or not _is_plain_import(statement):
        return statement
    modules = previous[len("import ") :].split(", ")
    module = statement[len("import ") :]
    if module not in modules:
        modules.append(module)
    return "import " + ", ".join(modules)


def _is_plain_import(statement: str) -> bool:
    return statement.startswith("import ") and " as " not in statement


def _sorted_by_line(mapping: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(mapping.items(), key=lambda item: item[1]))
