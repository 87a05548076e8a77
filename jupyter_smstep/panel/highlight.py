"""Python source as HTML for the panel: a step's cell with its line numbers, coloured by token (the standard
library's tokenizer; no dependency)."""

from __future__ import annotations

from jupyter_smstep.core.model import StepNode
from jupyter_smstep.core.secrets import shown_line
from jupyter_smstep.panel.pieces import esc


def source_cell(node: StepNode) -> str:
    spec = node.cell.step
    header = shown_line(spec.header) if spec and spec.header else f"%%step {node.name}"
    body = highlight_python(node.cell.source.rstrip("\n"))
    lines = [f"<span style='color:#8250df'>{esc(header)}</span>"] + body.split("\n")
    numbered = "\n".join(
        f"<span style='color:#8c959f;user-select:none'>{i:>3} </span>{line}" for i, line in enumerate(lines, 1)
    )
    return (
        f"<pre class='smstep-source-cell' style='font-size:0.85em;line-height:1.35;max-height:320px;overflow:auto;"
        f"background:var(--jp-cell-editor-background,#f6f8fa);padding:6px;margin:2px 0'>{numbered}</pre>"
    )


_TOKEN_COLOURS = {
    "keyword": "#cf222e",
    "string": "#0a3069",
    "comment": "#6e7781",
    "number": "#0550ae",
    "builtin": "#8250df",
    "definition": "#8250df",
}


def highlight_python(source: str) -> str:
    """Source as HTML with keywords, strings, comments, numbers and builtins coloured.

    Python's own tokenizer, not a highlighting library: no regex tables to
    compile (pygments spends ~0.2 s on its first Python lexer), and exactly
    Python's idea of a token. Untokenizable source is shown plain.
    """
    import builtins
    import io
    import keyword
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return esc(source)
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def offset(row: int, col: int) -> int:
        return starts[row - 1] + col if row - 1 < len(starts) else len(source)

    out: list[str] = []
    pos = 0
    previous = ""
    for tok in tokens:
        if tok.type in (tokenize.ENDMARKER, tokenize.DEDENT, tokenize.INDENT, tokenize.NEWLINE, tokenize.NL):
            continue
        begin, end = offset(*tok.start), offset(*tok.end)
        if begin < pos:
            continue
        out.append(esc(source[pos:begin]))
        kind = None
        if tok.type == tokenize.NAME:
            if keyword.iskeyword(tok.string) or keyword.issoftkeyword(tok.string):
                kind = "keyword"
            elif previous in ("def", "class"):
                kind = "definition"
            elif hasattr(builtins, tok.string):
                kind = "builtin"
        elif tok.type == tokenize.STRING or tok.type in _FSTRING_TYPES:
            kind = "string"
        elif tok.type == tokenize.COMMENT:
            kind = "comment"
        elif tok.type == tokenize.NUMBER:
            kind = "number"
        text = esc(source[begin:end])
        out.append(f"<span style='color:{_TOKEN_COLOURS[kind]}'>{text}</span>" if kind else text)
        previous = tok.string if tok.type == tokenize.NAME else ""
        pos = end
    out.append(esc(source[pos:]))
    return "".join(out)


_FSTRING_TYPES = {
    getattr(__import__("tokenize"), n)
    for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
    if hasattr(__import__("tokenize"), n)
}
