"""`rdarts search|random-ws|evaluate|select|pt-select --help`: the config's options in one argument group per
section of the stage's config class (`robust_darts.config.config_groups`), in the sections' order, each option
once and in its own group, each with its doc. Fast: the `rdarts` entry point in this process, no run."""
import contextlib, importlib, io, re
import pytest
from robust_darts.config import config_groups

STAGES = {  # command: (module, config class, fields the command does not offer as options)
    'search': ('robust_darts.search', 'SearchConfig', ()),
    'random-ws': ('robust_darts.randomws', 'RandomWSConfig', ()),
    'evaluate': ('robust_darts.evaluate', 'EvalConfig', ()),
    'select': ('robust_darts.evaluate', 'SelectConfig', ('candidates', 'genotype')),
    'pt-select': ('robust_darts.ptselect', 'PTSelectConfig', ()),
}
OPTION = re.compile(r'^  (--[\w-]+)', re.M)   # the first flag of each option's entry in a group's list

def help_text(cmd: str) -> str:
    "`rdarts CMD --help`'s output (argparse exits with 0 after printing it)."
    from robust_darts.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as e:
        main([cmd, '--help'])
    assert e.value.code == 0
    return out.getvalue()

@pytest.mark.parametrize('cmd', list(STAGES))
def test_help_groups(cmd, monkeypatch):
    monkeypatch.setenv('COLUMNS', '120')
    mod, name, skip = STAGES[cmd]
    cls = getattr(importlib.import_module(mod), name)
    groups = [(t, [s for s in specs if s.name not in skip]) for t, specs in config_groups(cls)]
    groups = [(t, specs) for t, specs in groups if specs]
    h = help_text(cmd)
    pos = [h.index(f"\n{t}:\n") for t, _ in groups] + [h.index("\nThe options of the groups after 'options'")]
    assert pos == sorted(pos), [t for t, _ in groups]
    assert OPTION.findall(h[:pos[0]]).count('--config') == 1
    for (title, specs), a, b in zip(groups, pos, pos[1:]):
        assert OPTION.findall(h[a:b]) == [s.flag for s in specs], title
        assert all(s.doc for s in specs), [s.name for s in specs if not s.doc]
    flags = OPTION.findall(h)
    assert len(flags) == len(set(flags)), sorted(f for f in flags if flags.count(f) > 1)
