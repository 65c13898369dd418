"""Fast, deterministic plain-text conversions for the demo corpus: man pages (roff) and reST sections.

`man -l` renders one page in ~0.1-0.3 s; hundreds of pages would dominate the build, and its
output depends on the installed groff. This stripper keeps headings, paragraphs and the text of
font/markup macros (man and mdoc), which is all a quality judge needs.
"""

from __future__ import annotations

import re

_NAMED = {"em": "--", "en": "-", "bu": "*", "lq": '"', "rq": '"', "oq": "'", "cq": "'", "aq": "'", "dq": '"',
          "co": "(c)", "rg": "(R)", "tm": "(TM)", "mi": "-", "pl": "+", "mu": "x", "di": "/", "<=": "<=",
          ">=": ">=", "!=": "!=", "->": "->", "<-": "<-", "ti": "~", "ha": "^", "sl": "/", "rs": "\\", "hy": "-",
          "R": "(R)", "Tm": "(TM)", "dg": "+", "de": " degrees", "lB": "[", "rB": "]", "fm": "'"}
_ESCAPES = re.compile(
    r"\\(?:f(?:\[[^\]]*\]|\(..|.)"        # font changes \fB \f(CW \f[B]
    r"|s[-+]?(?:\d|\(\d\d|\[\d+\])"         # size changes \s-1
    r"|\*\[(?P<sb>[^\]]*)\]|\*\((?P<sp>..)|\*(?P<s1>.)"  # strings \*(lq \*[R]
    r"|\[(?P<nb>[^\]]*)\]|\((?P<np>..)"     # named glyphs \(em \[em]
    r"|n(?:\(..|\[[^\]]*\]|.)"              # number registers
    r"|[kz](?:.)|[hvwoHSlLbDxXNYZRA]'[^']*'"  # motions, widths (dropped)
    r"|(?P<lit>[-e\\ ~0|^&%:cdu.tp'`!\",/{}])"
    r"|.?)")  # any other escape is dropped
_LITERAL = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", ".": ".", "'": "'", "`": "`",
            "t": "\t"}
_MDOC_CALLABLE = {"Ad", "Ao", "Ac", "Ar", "Bo", "Bc", "Bq", "Brq", "Cm", "Dq", "Dv", "Em", "Er", "Ev", "Fa", "Fl",
                  "Fn", "Ft", "Ic", "Li", "Nm", "Ns", "Op", "Pa", "Pq", "Ql", "Qq", "Sq", "Sx", "Sy", "Tn", "Va",
                  "Vt", "Xr", "Oo", "Oc", "Do", "Dc", "Po", "Pc", "Qo", "Qc", "Ta", "No", "Cd", "Lk", "Mt", "St",
                  "Ux", "Bx", "At", "Ox", "Nx", "Fx", "Dx", "An", "Lb", "Ms", "Ot", "Pf"}
_MDOC_SKIP = {"Dd", "Dt", "Os", "Bl", "El", "Bd", "Ed", "Pp", "Lp", "Tg", "Ss", "Sh", "Nd", "It", "Rs", "Re",
              "Bk", "Ek", "Ud", "Sm"}
_IGNORED_BLOCKS = {"de", "de1", "ig", "am", "ds1"}


def _glyph(m: re.Match[str]) -> str:
    for group in ("sb", "sp", "s1", "nb", "np"):
        name = m.group(group)
        if name is not None:
            return _NAMED.get(name, "")
    lit = m.group("lit")
    return _LITERAL.get(lit, "") if lit is not None else ""


def unescape_roff(text: str) -> str:
    return _ESCAPES.sub(_glyph, text)


def _args(line: str) -> list[str]:
    """Split macro arguments, honouring double quotes."""
    return [q.replace('""', '"') if q else w for q, w in re.findall(r'"((?:[^"]|"")*)"?|(\S+)', line)]


def _mdoc_words(tokens: list[str], name: str) -> tuple[list[str], str]:
    """Text of an mdoc line: macro names dropped, `Fl x` -> `-x`, a bare `Nm` -> the page's name."""
    words: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) and tokens[i + 1] not in _MDOC_CALLABLE else None
        if token == "Fl":
            words.append("-" + (nxt or ""))
            i += 2 if nxt else 1
            continue
        if token == "Nm":
            name = name or (nxt or "")
            words.append(nxt or name)
            i += 2 if nxt else 1
            continue
        if token not in _MDOC_CALLABLE:
            words.append(token)
        i += 1
    return words, name


def roff_to_text(source: str) -> tuple[str, str]:
    """Render man/mdoc source to plain text; returns (title, text). Empty text for `.so` redirects.

    Filled text is joined into one line per paragraph (no re-wrapping: the judge does not care);
    no-fill blocks (.nf, .EX: synopses, examples) keep their lines.
    """
    out: list[str] = []
    para: list[str] = []
    title = ""
    skip_until: str | None = None
    in_table = in_table_data = pending_heading = no_fill = False
    mdoc_name = ""

    def flush(blank: bool = True) -> None:
        if para:
            out.append(" ".join(w for w in para if w).strip())
            para.clear()
        if blank and out and out[-1] != "":
            out.append("")

    def add(text: str) -> None:
        if no_fill:
            out.append(text)
        elif text.strip():
            para.append(text.strip())

    for raw in source.splitlines():
        if skip_until is not None:
            if skip_until in raw:
                skip_until = None
            continue
        if raw.startswith(('.\\"', "'\\\"", '.\\#', '\\"')) or raw.strip() in (".", "'"):
            continue
        if in_table:
            if raw.startswith(".TE"):
                in_table = in_table_data = False
            elif in_table_data:
                row = raw.replace("\t", "  ").replace("T{", "").replace("T}", "")
                if row.startswith((".", "'")):  # a font macro inside a cell: keep its words
                    row = " ".join(_args(row.split(None, 1)[1] if " " in row else ""))
                out.append(unescape_roff(row))
            elif raw.rstrip().endswith("."):
                in_table_data = True  # the format spec ends with a period; data rows follow
            continue
        if not raw.startswith((".", "'")):
            text = unescape_roff(raw)
            if pending_heading:
                out.append(text.strip().upper())
                pending_heading = False
            else:
                add(text)
            continue
        parts = raw[1:].strip().split(None, 1)
        if not parts:
            continue
        macro, rest = parts[0], (parts[1] if len(parts) > 1 else "")
        args = _args(rest)
        if macro == "so":
            if not out and not para:
                return "", ""  # a redirect to another page, not content of its own
        elif macro in _IGNORED_BLOCKS:
            skip_until = ".."
        elif macro == "el" and "\\{" in rest:
            skip_until = "\\}"  # nroff takes the `.ie n` branch; the troff branch is skipped
        elif macro == "TS":
            flush()
            in_table = True
        elif macro in ("TH", "Dt"):
            title = " ".join(args[:2])
        elif macro in ("SH", "Sh", "SS", "Ss"):
            flush()
            heading = unescape_roff(" ".join(args)).strip()
            if heading:
                out.append(heading.upper() if macro in ("SH", "Sh") else heading)
            else:
                pending_heading = True
        elif macro in ("B", "I", "SM", "SB", "Em", "Sy"):
            add(unescape_roff(" ".join(args)))
        elif len(macro) == 2 and macro[0] in "BIR" and macro[1] in "BIR":  # .BR .IR ...: alternating fonts
            add(unescape_roff("".join(args)))
        elif macro in ("IP", "It"):
            flush()
            words = [a for a in args if a not in _MDOC_CALLABLE] if macro == "It" else args[:1]
            if words:
                para.append(unescape_roff(" ".join(words)))
        elif macro == "Nd":
            add("- " + unescape_roff(rest))
        elif macro in ("nf", "EX", "Bd"):
            flush()
            no_fill = True
        elif macro in ("fi", "EE", "Ed"):
            no_fill = False
            flush()
        elif macro in ("PP", "LP", "P", "TP", "HP", "Pp", "Lp", "sp", "TQ"):
            flush(blank=macro != "TQ")
        elif macro == "br":
            flush(blank=False)
        elif macro in _MDOC_CALLABLE:
            words, mdoc_name = _mdoc_words([macro, *args], mdoc_name)
            add(unescape_roff(" ".join(words)))
        # anything else (.if, .nr, .ds, .ft, .RS, ...) is layout: dropped
    flush()
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in out)).strip()
    return title, body


# --- reST ----------------------------------------------------------------------------------------

_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+_.:<>])\1{2,}\s*$")


def rst_sections(text: str) -> list[tuple[int, str, str]]:
    """Split reST into (level, heading, body) sections; level 0 is the first adornment style seen.

    A preamble before the first heading is returned with level -1 and an empty heading.
    """
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []
    sections: list[tuple[int, str, list[str]]] = [(-1, "", [])]
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        over = _ADORNMENT.match(line)
        if over and i + 2 < len(lines) and lines[i + 1].strip() and _ADORNMENT.match(lines[i + 2]) \
                and lines[i + 2].strip()[0] == line.strip()[0]:
            style, heading, step = (line.strip()[0], True), lines[i + 1].strip(), 3
        elif line.strip() and not over and _ADORNMENT.match(nxt) and len(nxt.strip()) >= len(line.strip()) \
                and not line.startswith((" ", "\t")):
            style, heading, step = (nxt.strip()[0], False), line.strip(), 2
        else:
            sections[-1][2].append(line)
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        sections.append((styles.index(style), heading, []))
        i += step
    return [(level, heading, "\n".join(body).strip("\n")) for level, heading, body in sections
            if heading or "\n".join(body).strip()]
