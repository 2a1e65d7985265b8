"""Documentation hygiene: the README and the notebooks point readers only at things that exist.

Checked in `README.md`, `nbs/*.ipynb`, `nbs/runs/*.ipynb` and `reports/*.ipynb` (markdown cells and the
comments of code cells):
(a) no mention of private team notes (`REFERENCE.md`, `PAPER.md`, `STYLE.md`), of `../shared/docs` or of
    absolute `/work/` paths: cite the paper (Sec./Fig./Table/App.) or the reference repository's files;
(b) every repository path in backticks (`nbs/...`, `configs/...`, `tests/...`, `reports/...`,
    `robust_darts/...`, `.ci/...`, or a top-level file such as `settings.ini`) exists (globs must match);
(c) every `rdarts WORD` command names a subcommand of `robust_darts.cli.COMMANDS`.
Fast: reads files only; `COMMANDS` is read from `robust_darts/cli.py` without importing torch.
"""
import ast, io, json, re, tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = sorted([ROOT/"README.md", *ROOT.glob("nbs/*.ipynb"), *ROOT.glob("nbs/runs/*.ipynb"),
                    *ROOT.glob("reports/*.ipynb")])
FORBIDDEN = re.compile(r"REFERENCE\.md|PAPER\.md|STYLE\.md|TOOLING\.md|RUNS\.md|\.\./shared/docs|/work/")
PATH_PREFIXES = ("nbs/", "configs/", "tests/", "reports/", "robust_darts/", ".ci/")
TOP_LEVEL = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(?:ini|toml|cfg|md)$")  # e.g. settings.ini, README.md
CLI_EXTRA = {"--help", "-h", "help", "--version", "-V"}
CODE_SPAN = re.compile(r"```.*?```|`[^`\n]+`", re.S)
RDARTS_CMD = re.compile(r"\brdarts[ \t]+([-\w]+)")

def _rel(p: Path) -> str: return str(p.relative_to(ROOT))

def _comments(src: str) -> str:
    "The comments of a code cell (shell/magic lines blanked so the cell tokenizes)."
    code = "\n".join("" if l.lstrip().startswith(("%", "!")) else l for l in src.splitlines())
    try:
        return "\n".join(t.string for t in tokenize.generate_tokens(io.StringIO(code + "\n").readline)
                         if t.type == tokenize.COMMENT)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return "\n".join(l[l.index("#"):] for l in src.splitlines() if "#" in l)

def doc_texts(path: Path):
    "`(where, text)` pairs: the whole README, or each markdown cell / code-cell comments of a notebook."
    if path.suffix != ".ipynb":
        yield _rel(path), path.read_text(encoding="utf-8"); return
    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown": yield f"{_rel(path)} (cell {i}, markdown)", src
        elif cell["cell_type"] == "code":
            if (c := _comments(src)): yield f"{_rel(path)} (cell {i}, comments)", c

def _code_spans(text: str, markdown: bool) -> list[str]:
    "Inline code spans and fenced blocks (comments are scanned whole: they have no markup)."
    if not markdown: return [text]
    return [m.group(0).strip("`") for m in CODE_SPAN.finditer(text)]

def _is_markdown(where: str) -> bool: return not where.endswith("comments)")

def _path_tokens(span: str):
    for tok in re.split(r"[\s,;'\"=()\[\]]+", span):
        tok = re.sub(r"(?::\d+)+$", "", tok.split("#")[0]).rstrip(".,;:!?)")
        if tok.startswith("./"): tok = tok[2:]
        if tok.startswith(PATH_PREFIXES) or TOP_LEVEL.match(tok): yield tok

def _ignored_dirs() -> list[str]:
    "Output folders named in `.gitignore` (e.g. `reports/html/`): created by commands, absent from a checkout."
    gi = ROOT/".gitignore"
    lines = gi.read_text(encoding="utf-8").splitlines() if gi.exists() else []
    return [l.strip().strip("/") for l in lines if l.strip().endswith("/") and not l.startswith(("#", "!"))]

def _exists(tok: str) -> bool:
    pat = re.sub(r"\{[^}]*\}|<[^>]*>", "*", tok)  # placeholders such as {name} or <seed> act as globs
    if any(pat.rstrip("/") == d or pat.startswith(d + "/") for d in _ignored_dirs()): return True
    if any(ch in pat for ch in "*?["): return any(ROOT.glob(pat.rstrip("/")))
    if pat.startswith("nbs/") and not Path(pat).suffix and (ROOT/(pat + ".ipynb")).exists(): return True  # `nbs/00a_runs`
    return (ROOT/pat).exists()

def cli_commands() -> set[str]:
    tree = ast.parse((ROOT/"robust_darts"/"cli.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMMANDS" for t in node.targets):
            return {ast.literal_eval(k) for k in node.value.keys}
    raise AssertionError("COMMANDS not found in robust_darts/cli.py")

def _report(bad):
    return "\n" + "\n".join(f"{where}: {what}" for where, what in bad)

def test_doc_files_found():
    assert (ROOT/"README.md") in DOC_FILES and len(DOC_FILES) > 5

def test_no_private_notes_or_machine_paths():
    bad = [(where, line.strip()) for p in DOC_FILES for where, text in doc_texts(p)
           for line in text.splitlines() if FORBIDDEN.search(line)]
    assert not bad, "mentions of private notes / machine paths:" + _report(bad)

def test_repository_paths_exist():
    bad = []
    for p in DOC_FILES:
        for where, text in doc_texts(p):
            for span in _code_spans(text, _is_markdown(where)):
                if not _is_markdown(where): span = " ".join(re.findall(r"`([^`\n]+)`", span))
                bad += [(where, f"`{tok}` does not exist") for tok in _path_tokens(span) if not _exists(tok)]
    assert not bad, "paths that do not exist in the repository:" + _report(bad)

def test_rdarts_subcommands_exist():
    ok, bad = cli_commands() | CLI_EXTRA, []
    for p in DOC_FILES:
        for where, text in doc_texts(p):
            for span in _code_spans(text, _is_markdown(where)):
                for m in RDARTS_CMD.finditer(span):
                    w = m.group(1)
                    if w not in ok and not w.isupper():  # `rdarts COMMAND` is a placeholder
                        bad.append((where, f"rdarts {w}: no such subcommand (have {sorted(cli_commands())})"))
    assert not bad, "unknown rdarts subcommands:" + _report(bad)

def test_notebooks_are_valid_nbformat():
    "JupyterLab and papermill refuse a notebook that breaks the schema (a cell typed 'md' did once)."
    import nbformat
    bad = []
    for p in DOC_FILES:
        if p.suffix != ".ipynb": continue
        try: nbformat.validate(nbformat.read(p, as_version=4))
        except nbformat.ValidationError as e: bad.append(f"{_rel(p)}: {e.message[:120]}")
    assert not bad, "\n".join(bad)
