"""Table-driven tests for :mod:`jupyter_smstep.core.analysis`.

Each case is a cell body and what the analysis must report about it. Every
field is compared exactly (unspecified fields are expected to be empty), so a
case fails on any extra or missing name.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import sys
import textwrap
from dataclasses import dataclass, field

import pytest

from jupyter_smstep.core.analysis import MUTATING_METHODS, CellAnalysis, analyze


@dataclass(frozen=True)
class Expected:
    source: str
    reads: set[str] = field(default_factory=set)
    writes: set[str] = field(default_factory=set)
    mutates: set[str] = field(default_factory=set)
    deletes: set[str] = field(default_factory=set)
    imports: dict[str, str] = field(default_factory=dict)
    star_imports: tuple[int, ...] = ()
    defines: dict[str, str] = field(default_factory=dict)


def case(case_id: str, source: str, **expected: object) -> object:
    return pytest.param(Expected(textwrap.dedent(source), **expected), id=case_id)  # type: ignore[arg-type]


CASES = [
    # -- reads and writes in evaluation order ---------------------------------
    case("simple-write", "x = 1", writes={"x"}),
    case("simple-read", "print(a)", reads={"print", "a"}),
    case("read-before-write", "y = a + 1\na = 2", reads={"a"}, writes={"y", "a"}),
    case("write-before-read", "a = 1\nb = a * 2", writes={"a", "b"}),
    case("x-equals-x-plus-1", "x = x + 1", reads={"x"}, writes={"x"}),
    case("augmented-input", "total += step", reads={"total", "step"}, writes={"total"}, mutates={"total"}),
    case("augmented-local", "total = 0\ntotal += 1", writes={"total"}),
    case("tuple-starred-unpacking", "a, (b, *c) = pairs", reads={"pairs"}, writes={"a", "b", "c"}),
    case("swap", "a, b = b, a", reads={"a", "b"}, writes={"a", "b"}),
    case("chained-assignment", "a = b = make()", reads={"make"}, writes={"a", "b"}),
    case("annotated-assignment", "x: int = y", reads={"int", "y"}, writes={"x"}),
    case("bare-annotation-binds-nothing", "x: Foo", reads={"Foo"}),
    case("builtins-are-reported", "n = len(items)", reads={"len", "items"}, writes={"n"}),
    case("dunder-names-are-reported", "if __name__ == '__main__':\n    main()", reads={"__name__", "main"}),
    case("walrus-at-cell", "if (n := len(xs)) > 3:\n    print(n)", reads={"len", "xs", "print"}, writes={"n"}),
    case("fstring", "msg = f'{name}: {value:.{prec}f}'", reads={"name", "value", "prec"}, writes={"msg"}),
    case("conditional-expression", "y = a if cond else b", reads={"a", "cond", "b"}, writes={"y"}),
    case("docstring-only", '"""Just a note."""'),
    # -- loops, with, try -------------------------------------------------------
    case("for-loop", "for x in xs:\n    last = x", reads={"xs"}, writes={"x", "last"}),
    case("for-iter-read-before-target", "for x in x:\n    pass", reads={"x"}, writes={"x"}),
    case(
        "loop-carried-value",
        """\
        for i, b in enumerate(batches):
            if i == 0:
                total = b
            else:
                total = total + b
        """,
        reads={"enumerate", "batches"},
        writes={"i", "b", "total"},
    ),
    case(
        "read-in-loop-before-binding",
        "for i in range(3):\n    print(prev)\n    prev = i",
        reads={"range", "print", "prev"},
        writes={"i", "prev"},
    ),
    case("while-loop", "while n > 0:\n    n = n - 1", reads={"n"}, writes={"n"}),
    case(
        "with-as",
        "with open(path) as f:\n    data = f.read()",
        reads={"open", "path"},
        writes={"f", "data"},
    ),
    case("with-tuple-target", "with ctx() as (a, b):\n    pass", reads={"ctx"}, writes={"a", "b"}),
    case(
        "try-except-as",
        """\
        try:
            v = risky()
        except ValueError as err:
            msg = str(err)
        """,
        reads={"risky", "ValueError", "str"},
        writes={"v", "msg"},
    ),
    case(
        "except-name-unbound-after-handler",
        "try:\n    pass\nexcept E as e:\n    pass\nprint(e)",
        reads={"E", "print", "e"},
    ),
    case(
        "try-finally",
        "try:\n    conn = connect()\nfinally:\n    conn.close()",
        reads={"connect"},
        writes={"conn"},
    ),
    case("conditional-binding-counts", "if flag:\n    x = 1\nprint(x)", reads={"flag", "print"}, writes={"x"}),
    case(
        "if-else-binding",
        "if flag:\n    x = 1\nelse:\n    x = default\ny = x",
        reads={"flag", "default"},
        writes={"x", "y"},
    ),
    # -- comprehensions ---------------------------------------------------------
    case(
        "list-comprehension",
        "squares = [v * v for v in values if v > limit]",
        reads={"values", "limit"},
        writes={"squares"},
    ),
    case("set-comprehension", "s = {v for v in values}", reads={"values"}, writes={"s"}),
    case("dict-comprehension", "d = {k: v for k, v in pairs.items()}", reads={"pairs"}, writes={"d"}),
    case("generator-expression", "total = sum(v for v in values)", reads={"sum", "values"}, writes={"total"}),
    case(
        "comprehension-target-shadows-cell-name",
        "x = 5\nys = [x for x in range(x)]\nprint(x)",
        reads={"range", "print"},
        writes={"x", "ys"},
    ),
    case(
        "comprehension-target-does-not-leak",
        "ys = [x for x in xs]\nprint(x)",
        reads={"xs", "print", "x"},
        writes={"ys"},
    ),
    case(
        "nested-generators",
        "flat = [c for row in grid for c in row if c != skip]",
        reads={"grid", "skip"},
        writes={"flat"},
    ),
    case(
        "nested-comprehensions",
        "table = [[i * j for j in cols] for i in rows]",
        reads={"cols", "rows"},
        writes={"table"},
    ),
    case(
        "walrus-in-comprehension-binds-cell",
        "hits = [y for x in xs if (y := f(x))]\nlast = y",
        reads={"xs", "f"},
        writes={"hits", "y", "last"},
    ),
    case(
        "comprehension-runs-immediately",
        "ys = [x + k for x in xs]\nk = 1",
        reads={"xs", "k"},
        writes={"ys", "k"},
    ),
    case("comprehension-iterable-bound-earlier", "xs = [1]\nys = [x for x in xs]", writes={"xs", "ys"}),
    # -- lambdas ----------------------------------------------------------------
    case("lambda-params-are-local", "f = lambda a, *rest, b=1, **kw: (a, rest, b, kw)", writes={"f"}),
    case(
        "lambda-default-evaluated-now",
        "f = lambda a=default: a\ndefault = 2",
        reads={"default"},
        writes={"f", "default"},
    ),
    case("lambda-free-variable", "f = lambda a: a * scale", reads={"scale"}, writes={"f"}),
    case("lambda-free-variable-bound-later", "f = lambda a: a * scale\nscale = 2", writes={"f", "scale"}),
    # -- functions --------------------------------------------------------------
    case(
        "function-free-variable",
        "def f(x):\n    return x * factor",
        reads={"factor"},
        writes={"f"},
        defines={"f": "function"},
    ),
    case(
        "function-free-variable-bound-later",
        "def f():\n    return helper()\ndef helper():\n    return 1",
        writes={"f", "helper"},
        defines={"f": "function", "helper": "function"},
    ),
    case(
        "function-locals",
        "def f(a, /, b, *args, c, **kw):\n    d = a + b\n    return d, args, c, kw",
        writes={"f"},
        defines={"f": "function"},
    ),
    case(
        "function-local-is-local-everywhere",
        "def f():\n    print(x)\n    x = 1",
        reads={"print"},
        writes={"f"},
        defines={"f": "function"},
    ),
    case(
        "decorators-and-defaults-evaluated-eagerly",
        "@register(registry)\ndef f(a=fallback, *, b=kw_fallback):\n    return a\nregistry = fallback = kw_fallback = 0",
        reads={"register", "registry", "fallback", "kw_fallback"},
        writes={"f", "registry", "fallback", "kw_fallback"},
        defines={"f": "function"},
    ),
    case(
        "recursion",
        "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)",
        writes={"fact"},
        defines={"fact": "function"},
    ),
    case(
        "closure-nonlocal",
        """\
        def make_counter():
            count = 0
            def inc():
                nonlocal count
                count += step
                return count
            return inc
        """,
        reads={"step"},
        writes={"make_counter"},
        defines={"make_counter": "function"},
    ),
    case(
        "nested-function-free-variables",
        "def outer():\n    def inner():\n        return y + z\n    z = 1\n    return inner",
        reads={"y"},
        writes={"outer"},
        defines={"outer": "function"},
    ),
    case(
        "global-augmented-in-function",
        "def bump():\n    global n\n    n += 1",
        reads={"n"},
        writes={"bump", "n"},
        mutates={"n"},
        defines={"bump": "function"},
    ),
    case(
        "global-assigned-in-function",
        "def setup():\n    global cfg\n    cfg = load()\nsetup()\nprint(cfg)",
        reads={"load", "print"},
        writes={"setup", "cfg"},
        defines={"setup": "function"},
    ),
    case(
        "global-read-after-own-write",
        "def f():\n    global c\n    c = 1\n    return c",
        writes={"f", "c"},
        defines={"f": "function"},
    ),
    case(
        "global-bound-by-another-function",
        "def init():\n    global cfg\n    cfg = {}\ndef use():\n    return cfg['a']",
        writes={"init", "use", "cfg"},
        defines={"init": "function", "use": "function"},
    ),
    case(
        "parameter-shadows-cell-name",
        "x = 1\ndef f(x):\n    return x",
        writes={"x", "f"},
        defines={"f": "function"},
    ),
    case(
        "async-def-and-async-with",
        "async def fetch(url):\n    async with session.get(url) as r:\n        return await r.json()",
        reads={"session"},
        writes={"fetch"},
        defines={"fetch": "function"},
    ),
    case(
        "top-level-await-and-async-for",
        "async for item in stream():\n    out = await handle(item)",
        reads={"stream", "handle"},
        writes={"item", "out"},
    ),
    case("async-comprehension", "rows = [r async for r in cursor]", reads={"cursor"}, writes={"rows"}),
    case(
        "import-inside-function-is-local",
        "def f():\n    import json\n    return json.dumps(x)",
        reads={"x"},
        writes={"f"},
        defines={"f": "function"},
    ),
    # -- classes ----------------------------------------------------------------
    case(
        "class-body-names-are-class-local",
        "class Config:\n    size = base * 2\n    double = size * 2",
        reads={"base"},
        writes={"Config"},
        defines={"Config": "class"},
    ),
    case(
        "method-does-not-see-class-names",
        "class A:\n    k = 1\n    def m(self):\n        return k",
        reads={"k"},
        writes={"A"},
        defines={"A": "class"},
    ),
    case(
        "method-reads-cell-name-bound-later",
        "class A:\n    def m(self):\n        return helper(self)\ndef helper(o):\n    return o",
        writes={"A", "helper"},
        defines={"A": "class", "helper": "function"},
    ),
    case(
        "class-bases-keywords-decorators",
        "@dataclass\nclass Point(Base, metaclass=Meta):\n    x: int = 0",
        reads={"dataclass", "Base", "Meta", "int"},
        writes={"Point"},
        defines={"Point": "class"},
    ),
    case(
        "comprehension-in-class-skips-class-scope",
        "class A:\n    n = 3\n    xs = [n for _ in range(n)]",
        reads={"range", "n"},
        writes={"A"},
        defines={"A": "class"},
    ),
    case(
        "comprehension-first-iterable-sees-class-scope",
        "class A:\n    n = 3\n    xs = [i for i in range(n)]",
        reads={"range"},
        writes={"A"},
        defines={"A": "class"},
    ),
    case(
        "self-attribute-mutation-is-local",
        "class A:\n    def __init__(self):\n        self.items = []\n        self.items.append(1)",
        writes={"A"},
        defines={"A": "class"},
    ),
    # -- del ----------------------------------------------------------------------
    case("del-unbound-name-is-input", "del tmp", reads={"tmp"}, deletes={"tmp"}),
    case(
        "del-after-write",
        "tmp = big()\nresult = tmp.sum()\ndel tmp",
        reads={"big"},
        writes={"result"},
        deletes={"tmp"},
    ),
    case("del-then-rebind", "del x\nx = 2", reads={"x"}, writes={"x"}),
    case("read-after-del", "x = 1\ndel x\nprint(x)", reads={"print", "x"}, deletes={"x"}),
    case("del-subscript-mutates", "del cache[key]", reads={"cache", "key"}, mutates={"cache"}),
    case("del-attribute-mutates", "del obj.attr", reads={"obj"}, mutates={"obj"}),
    # -- maybe-unbound is still bound ------------------------------------------------
    case(
        "except-as-rebinding-an-earlier-name",
        "err = None\ntry:\n    run()\nexcept ValueError as err:\n    log(err)",
        reads={"run", "ValueError", "log"},
        writes={"err"},
    ),
    case(
        "except-as-a-new-name-is-gone",
        "try:\n    run()\nexcept ValueError as e:\n    log(e)",
        reads={"run", "ValueError", "log"},
    ),
    case("conditional-del-keeps-the-name", "x = 1\nif c:\n    del x", reads={"c"}, writes={"x"}),
    case("del-in-a-loop-keeps-the-name", "x = 1\nfor i in r:\n    del x", reads={"r"}, writes={"x", "i"}),
    case(
        "del-in-try-keeps-the-name",
        "x = 1\ntry:\n    del x\nexcept KeyError:\n    pass",
        reads={"KeyError"},
        writes={"x"},
    ),
    case(
        "del-in-a-match-case-keeps-the-name", "x = 1\nmatch v:\n    case 1:\n        del x", reads={"v"}, writes={"x"}
    ),
    case(
        "conditional-del-of-an-input-makes-it-an-output",
        "if c:\n    del cache",
        reads={"c", "cache"},
        mutates={"cache"},
    ),
    case(
        "global-del-in-a-function-that-may-never-run",
        "x = 1\ndef reset():\n    global x\n    del x",
        writes={"x", "reset"},
        defines={"reset": "function"},
    ),
    case(
        "unconditional-del-after-an-if-is-a-delete",
        "x = 1\nif c:\n    y = 2\ndel x",
        reads={"c"},
        writes={"y"},
        deletes={"x"},
    ),
    # -- mutation of inputs ---------------------------------------------------------
    case("append", "items.append(x)", reads={"items", "x"}, mutates={"items"}),
    case("inplace-true", "df.drop(columns=['a'], inplace=True)", reads={"df"}, mutates={"df"}),
    case(
        "inplace-false-is-not-mutation",
        "clean = df.drop(columns=['a'], inplace=False)",
        reads={"df"},
        writes={"clean"},
    ),
    case("subscript-assignment", "d['k'] = v", reads={"d", "v"}, mutates={"d"}),
    case("subscript-augmented", "counts[word] += 1", reads={"counts", "word"}, mutates={"counts"}),
    case("nested-attribute-assignment", "model.config.lr = lr", reads={"model", "lr"}, mutates={"model"}),
    case("method-on-subscript-chain", "frames[0].columns.append(c)", reads={"frames", "c"}, mutates={"frames"}),
    case("update-suffix-method", "seen.difference_update(old)", reads={"seen", "old"}, mutates={"seen"}),
    case("pandas-loc-assignment", "df.loc[df.a > 0, 'b'] = 1", reads={"df"}, mutates={"df"}),
    case("estimator-fit", "model.fit(X, y)", reads={"model", "X", "y"}, mutates={"model"}),
    case("mutating-a-local-is-not-an-input", "lst = []\nlst.append(1)", writes={"lst"}),
    case(
        "mutation-inside-defined-function",
        "def add(v):\n    registry.append(v)",
        reads={"registry"},
        writes={"add"},
        mutates={"registry"},
        defines={"add": "function"},
    ),
    case(
        "mutated-then-rebound-is-a-write",
        "rows.append(1)\nrows = sorted(rows)",
        reads={"rows", "sorted"},
        writes={"rows"},
    ),
    case("mutation-of-call-result-is-not", "get_list().append(1)", reads={"get_list"}),
    case("non-mutating-method", "n = items.count(x)", reads={"items", "x"}, writes={"n"}),
    # -- re-definition ----------------------------------------------------------------
    case("rebinding-twice", "x = 1\nx = 2", writes={"x"}),
    case("function-rebound-as-value", "def f():\n    pass\nf = 3", writes={"f"}),
    case(
        "class-redefined-as-function",
        "class Model:\n    pass\ndef Model():\n    pass",
        writes={"Model"},
        defines={"Model": "function"},
    ),
    # -- imports ------------------------------------------------------------------------
    case(
        "import-forms",
        """\
        import numpy as np
        import os.path
        from collections import OrderedDict as OD, deque
        from . import sibling
        from ..pkg.mod import thing
        """,
        writes={"np", "os", "OD", "deque", "sibling", "thing"},
        imports={
            "np": "import numpy as np",
            "os": "import os.path",
            "OD": "from collections import OrderedDict as OD",
            "deque": "from collections import deque",
            "sibling": "from . import sibling",
            "thing": "from ..pkg.mod import thing",
        },
    ),
    case(
        "dotted-import-as",
        "import matplotlib.pyplot as plt",
        writes={"plt"},
        imports={"plt": "import matplotlib.pyplot as plt"},
    ),
    case(
        "submodule-imports-merge",
        "import xml.etree.ElementTree\nimport xml.dom",
        writes={"xml"},
        imports={"xml": "import xml.etree.ElementTree, xml.dom"},
    ),
    case(
        "import-then-use",
        "import pandas as pd\ndf = pd.read_csv(path)",
        reads={"path"},
        writes={"pd", "df"},
        imports={"pd": "import pandas as pd"},
    ),
    case("import-rebound-is-not-import", "import json\njson = None", writes={"json"}),
    case(
        "name-used-before-import",
        "x = np.zeros(3)\nimport numpy as np",
        reads={"np"},
        writes={"x", "np"},
        imports={"np": "import numpy as np"},
    ),
    case(
        "star-import",
        "from pylab import *\nplot(x)",
        reads={"plot", "x"},
        star_imports=(1,),
    ),
    case("future-import-ignored", "from __future__ import division\nx = 1 / 2", writes={"x"}),
    # -- match ------------------------------------------------------------------------------
    case(
        "match-statement",
        """\
        match command:
            case ["go", direction]:
                move(direction)
            case {"speed": speed, **extra}:
                go(speed, extra)
            case Point(x=px, y=0) | Point(x=0, y=px):
                at(px)
            case Color.RED:
                pass
            case [first, *others] if first > limit:
                pass
            case _ as anything:
                pass
        """,
        reads={"command", "move", "go", "Point", "at", "Color", "limit"},
        writes={"direction", "speed", "extra", "px", "first", "others", "anything"},
    ),
    # -- annotations ----------------------------------------------------------------------
    case(
        "signature-annotations-evaluated",
        "def f(a: Tensor, *, b: Opt = None) -> Result:\n    return a",
        reads={"Tensor", "Opt", "Result"},
        writes={"f"},
        defines={"f": "function"},
    ),
    case(
        "future-annotations-not-evaluated",
        """\
        '''Docstring first is allowed.'''
        from __future__ import annotations
        def f(a: Tensor) -> Result:
            return a
        x: Alias = 1
        """,
        writes={"f", "x"},
        defines={"f": "function"},
    ),
    case(
        "local-variable-annotation-not-evaluated",
        "def f():\n    v: Local = 1\n    w: int\n    return v, w",
        writes={"f"},
        defines={"f": "function"},
    ),
]


@pytest.mark.parametrize("expected", CASES)
def test_analysis(expected: Expected) -> None:
    result = analyze(expected.source)
    assert set(result.reads) == expected.reads
    assert set(result.writes) == expected.writes
    assert set(result.mutates) == expected.mutates
    assert set(result.deletes) == expected.deletes
    assert dict(result.imports) == expected.imports
    assert result.star_imports == expected.star_imports
    assert dict(result.defines) == expected.defines
    assert result.outputs == (expected.writes | expected.mutates) - expected.deletes
    # Invariants: mutated names are inputs; nothing is both still bound and deleted.
    assert set(result.mutates) <= set(result.reads)
    assert not set(result.writes) & set(result.deletes)


def test_has_at_least_fifty_cases() -> None:
    assert len(CASES) >= 50


LINES_CELL = """\
total = 0
for row in rows:
    total += row
print(total, scale)
def f():
    return helper(scale)
items.append(1)
items.append(2)
total = -total
del rows_copy
from pylab import *
from numpy import *
"""


def test_line_numbers() -> None:
    result = analyze(LINES_CELL)
    # First read of each input, sorted by line (a function body's reads count where they are written).
    assert list(result.reads.items()) == [
        ("rows", 2),
        ("print", 4),
        ("scale", 4),
        ("helper", 6),
        ("items", 7),
        ("rows_copy", 10),
    ]
    assert dict(result.writes) == {"total": 9, "row": 2, "f": 5}  # last binding
    assert dict(result.mutates) == {"items": 7}  # first mutation
    assert dict(result.deletes) == {"rows_copy": 10}
    assert result.star_imports == (11, 12)


def test_line_of_read_inside_function_body() -> None:
    result = analyze("def f():\n    x = 1\n\n    return x + offset\n")
    assert dict(result.reads) == {"offset": 4}


def test_syntax_error_is_raised_unchanged_with_line() -> None:
    with pytest.raises(SyntaxError) as caught:
        analyze("a = 1\nb = = 2\n")
    assert caught.value.lineno == 2


def test_result_is_cached_and_read_only() -> None:
    source = "y = x + 1"
    first = analyze(source)
    assert analyze(source) is first
    with pytest.raises(TypeError):
        first.reads["z"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        first.writes.update({"z": 1})  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.reads = {}  # type: ignore[misc]
    assert dict(analyze(source).reads) == {"x": 1}


def test_result_serializes_and_hashes() -> None:
    result = analyze("import numpy as np\nx.append(np.pi)\n")
    assert pickle.loads(pickle.dumps(result)) == result
    assert copy.deepcopy(result) == result
    assert hash(result) == hash(pickle.loads(pickle.dumps(result)))
    as_dict = dataclasses.asdict(result)
    assert json.loads(json.dumps(as_dict))["imports"] == {"np": "import numpy as np"}
    assert as_dict["mutates"] == {"x": 2}


def test_constructed_analysis_is_read_only_too() -> None:
    made = CellAnalysis(
        reads={"a": 1},
        writes={},
        mutates={},
        deletes={},
        imports={},
        star_imports=[3],
        defines={},  # type: ignore[arg-type]
    )
    assert made.star_imports == (3,)
    with pytest.raises(TypeError):
        made.reads["b"] = 2  # type: ignore[index]


def test_uncached_function_is_available() -> None:
    source = "q = p"
    assert analyze.__wrapped__(source) is not analyze.__wrapped__(source)
    assert analyze.__wrapped__(source) == analyze(source)


def test_mutating_methods_are_documented_constant() -> None:
    assert {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"} <= MUTATING_METHODS
    assert {"update", "setdefault", "popitem", "add", "discard"} <= MUTATING_METHODS
    assert "copy" not in MUTATING_METHODS


@pytest.mark.skipif(sys.version_info < (3, 12), reason="PEP 695 syntax needs Python 3.12")
def test_python_312_type_parameters() -> None:
    result = analyze("type Pair[T] = tuple[T, T]\ndef first[T](p: Pair[T]) -> T:\n    return p[0]\n")
    assert set(result.reads) == {"tuple"}
    assert set(result.writes) == {"Pair", "first"}


@pytest.mark.parametrize(
    "source, misplaced",
    [
        ("return model", ((1, "return"),)),
        ("x = 1\nif x:\n    return {'x': x}", ((3, "return"),)),
        ("for row in rows:\n    yield row", ((2, "yield"),)),
        ("yield from rows", ((1, "yield"),)),
        ("data = await fetch()", ((1, "await"),)),
        ("def f():\n    return 1\nclass C:\n    def g(self):\n        yield 2", ()),
        ("h = lambda: (yield)", ()),
        ("async def f():\n    await g()", ()),
    ],
)
def test_statements_that_belong_in_a_function_are_found_at_cell_level(source, misplaced):
    assert analyze(source).misplaced == misplaced


@pytest.mark.parametrize(
    ("source", "mutates"),
    [
        ("for s in (a, b):\n    s.drop('c', axis=1, inplace=True)", {"a", "b"}),
        ("x = a\nx['k'] = 1", {"a"}),
        ("both = [b]\nboth[0]['c'] = 2", {"b"}),
        ("p, q = a, b\nq['d'] = 3", {"b"}),
        ("for i, df in enumerate(frames):\n    df.dropna(inplace=True)", {"frames"}),
        ("for k, v in d.items():\n    v.append(1)", {"d"}),
        ("x = a if flag else b\nx += [1]", {"a", "b"}),
        ("x = a.y\nx.z = 1", {"a"}),
        ("x = len(a)\nx += 1", set()),  # a number computed from a: no alias
        ("y = 1\nx = a\ny += 2", set()),
    ],
)
def test_a_change_through_an_alias_is_a_change_of_what_it_names(source, mutates):
    assert set(analyze(source).mutates) == mutates


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("def get_titles():\n    return combined.upper()\ncombined = get_titles()", {"combined"}),
        ("def g():\n    return data * 2\ndef f():\n    return g()\ndata = f()", {"data"}),  # through another
        ("combined = load()\ndef f():\n    return combined + 1\nx = f()", {"load"}),  # bound before the call
        ("def f():\n    return data\ndata = 2\nz = f()", set()),
    ],
)
def test_a_function_called_before_the_cell_binds_a_name_it_reads_reads_the_earlier_value(source, reads):
    assert set(analyze(source).reads) == reads
