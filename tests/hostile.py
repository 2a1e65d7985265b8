"""Helpers of the hostile-input tests (test_hostile.py, test_hostile_files.py): the CLI as a user runs it, snapshots
of run folders, and the tiny finished search that the broken-file cases copy."""
import contextlib, io, os, subprocess, sys, traceback
from types import SimpleNamespace
from pathlib import Path

TINY = ['--dataset', 'digits', '--image-size', '8', '--init-channels', '4', '--layers', '3', '--batch-size', '16',
        '--max-steps', '2', '--device', 'cpu', '--quiet']
SEARCH = ['search', '--space', 's3', '--epochs', '2', '--order', 'first', '--valid-batches', '1', '--hessian-every', '1',
          '--hessian-tol', '0.1', *TINY]
RSWS = ['random-ws', '--space', 's3', '--epochs', '1', '--n-samples', '4', '--n-score-batches', '1', '--top-k', '2',
        '--valid-batches', '1', *TINY]
EVAL = ['evaluate', '--genotype', 'darts_v2', '--epochs', '1', '--test-batches', '1', *TINY]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}

def rdarts(*args, cwd=None):
    """The CLI's exit code, stdout, stderr and stderr's non-empty lines: in this process (no second torch import,
    ~3 s a case) unless `cwd` is given (then a subprocess there); an exception escaping `main` is a traceback, rc 1."""
    if cwd is not None:
        code = 'import sys; from robust_darts.cli import main; sys.exit(main(sys.argv[1:]))'
        r = subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd,
                           timeout=300)
    else:
        from robust_darts.cli import main
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: rc = main([str(a) for a in args])
            except SystemExit as e: rc = e.code if isinstance(e.code, int) else 2   # argparse's errors
            except BaseException: traceback.print_exc(); rc = 1
        r = SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())
    r.lines = [l for l in r.stderr.splitlines() if l.strip()]
    return r

def _content(p:Path):
    "A file's bytes; a run's config.yaml as its mapping without `out` (a copied run records where it now lives)."
    if p.name == 'config.yaml':
        import yaml
        try: d = yaml.safe_load(p.read_bytes())
        except yaml.YAMLError: return p.read_bytes()
        if isinstance(d, dict): return {k: v for k, v in d.items() if k != 'out'}
    return p.read_bytes()

def snapshot(root:Path)->dict:
    "Every file below `root` and its content (the lock, status and log change by design when a run is refused)."
    return {p.relative_to(root).as_posix(): _content(p) for p in sorted(root.rglob('*'))
            if p.is_file() and p.name not in ('.lock', 'status.json', 'log.txt')}

def refused(r, *names):
    "Exit 2, one line, no traceback, naming each of `names`."
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert 'Traceback' not in r.stderr and len(r.lines) == 1, r.stderr[-2000:]
    for n in names: assert n in r.lines[0], (n, r.lines[0])

def args_of(run_dir:Path)->list:
    "The search command that owns `run_dir` (same config, its out)."
    return [*SEARCH, '--seed', '1', '--out', run_dir.parents[1]]


def untimed(run_dir:Path)->list:
    "The metrics rows of a run without their timings (two runs of one config differ only there)."
    import json
    return [{k: v for k, v in json.loads(l).items() if 'seconds' not in k and k != 'elapsed'}
            for l in (Path(run_dir)/'metrics.jsonl').read_text().splitlines() if l.strip()]
