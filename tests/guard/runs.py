"""Behaviour guard for refactors: run a fixed set of tiny runs with one checkout's code, and compare two such sets.

    python tests/guard/runs.py run ROOT OUT       # ROOT: the checkout whose code runs (e.g. a `git worktree` of main)
    python tests/guard/runs.py compare OUT_A OUT_B

Single-threaded, CPU. Compared: every metrics row (timings aside), every derived file, result.json (timings and
paths aside), genotypes, the newest checkpoint's model tensors. Not a pytest file: a refactor runs it by hand,
old code against new code on the same machine (float results depend on the CPU's kernels)."""
import json, re, os, subprocess, sys
from pathlib import Path

TINY = ['--dataset', 'digits', '--image-size', '8', '--init-channels', '4', '--layers', '3', '--batch-size', '16',
        '--max-steps', '2', '--valid-batches', '1', '--device', 'cpu', '--quiet']
SEARCH = ['search', '--space', 's3', '--epochs', '3', '--hessian-every', '1', '--hessian-tol', '0.1', *TINY]
# name -> (command, needs): `needs` names a run whose folder becomes the argument's value
RUNS = {
    'darts2': (SEARCH + ['--method', 'darts', '--order', 'second', '--seed', '1'], None),
    'ada': (['search', '--method', 'ada', '--space', 's3', '--epochs', '6', '--hessian-every', '1', '--es-window', '1',
             '--es-delta', '1', '--es-factor', '0.5', '--es-start-epoch', '1', '--order', 'first', '--seed', '3', *TINY], None),
    'es': (SEARCH + ['--method', 'es', '--es-window', '1', '--es-delta', '1', '--es-factor', '0.5', '--es-start-epoch', '0',
                     '--order', 'first', '--seed', '2'], None),
    'dp': (SEARCH + ['--method', 'darts', '--order', 'first', '--drop-path-prob', '0.3', '--seed', '4'], None),
    'sdarts_rs': (SEARCH + ['--method', 'sdarts-rs', '--order', 'first', '--seed', '1'], None),
    'sdarts_adv': (SEARCH + ['--method', 'sdarts-adv', '--order', 'first', '--sdarts-steps', '2', '--seed', '1'], None),
    'beta': (SEARCH + ['--method', 'beta-darts', '--order', 'first', '--seed', '1'], None),
    'rsws': (['random-ws', '--space', 's3', '--epochs', '2', '--n-samples', '6', '--n-score-batches', '1', '--top-k', '2',
              '--seed', '0', *TINY], None),
    'eval': (['evaluate', '--genotype', '{darts2}', '--dataset', 'digits', '--image-size', '8', '--epochs', '2',
              '--batch-size', '16', '--layers', '3', '--init-channels', '4', '--max-steps', '2', '--test-batches', '2',
              '--seed', '0', '--device', 'cpu', '--quiet'], 'darts2'),
    'pt': (['pt-select', '--source', '{darts2}', '--proj-intv', '1', '--max-steps', '1', '--valid-batches', '1',
            '--score-batches', '1', '--seed', '0', '--device', 'cpu', '--quiet'], 'darts2'),
}
TIMINGS = {'seconds', 'elapsed', 'eig_seconds', 'selection_seconds', 'score_seconds'}
# keys renamed on purpose (old -> new), compared under the new name: one name per quantity (issue 21)
RENAMED = {'drop_path_max': 'drop_path_prob'}

def run(root, out):
    out = Path(out).resolve(); out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, 'PYTHONPATH': str(Path(root).resolve()), 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    dirs = {}
    for name, (cmd, need) in RUNS.items():
        args = [a.format(**dirs) for a in cmd] + ['--out', str(out/name)]
        code = 'import sys; from robust_darts.cli import main; sys.exit(main(sys.argv[1:]))'
        r = subprocess.run([sys.executable, '-c', code, *args], env=env, capture_output=True, text=True, cwd=str(out))
        if r.returncode: sys.exit(f"{name}: exit {r.returncode}\n{r.stderr[-3000:]}")
        dirs[name] = r.stdout.strip().splitlines()[-1]
        print(name, dirs[name], flush=True)
    (out/'runs.json').write_text(json.dumps(dirs, indent=1))

def _rows(p):
    return [{RENAMED.get(k, k): v for k, v in json.loads(l).items() if k not in TIMINGS}
            for l in p.read_text().splitlines() if l.strip()]

def _scrub(d, a, b):
    "A result dict without timings, its run paths made relative."
    return {k: (v.replace(a, '<OUT>') if isinstance(v, str) else v) for k, v in d.items() if k not in TIMINGS}

def _log(p, root):
    "A log without its timestamps, seconds and run root."
    text = p.read_text().replace(str(Path(root).resolve()), '<OUT>').replace(str(root), '<OUT>')
    text = re.sub(r'\b\d+(\.\d+)?s\b', '<s>', text)
    return re.sub(r'^\d{4}-\d\d-\d\d[ T][\d:,.]+ ', '', text, flags=re.M)

def compare(a, b):
    import torch
    da, db = json.loads((Path(a)/'runs.json').read_text()), json.loads((Path(b)/'runs.json').read_text())
    bad = []
    for name in RUNS:
        pa, pb = Path(da[name]), Path(db[name])
        fa = sorted(p.relative_to(pa) for p in pa.rglob('*') if p.is_file())
        fb = sorted(p.relative_to(pb) for p in pb.rglob('*') if p.is_file())
        # run.json: the run's identity, written since the redesign (its version differs between checkouts)
        skip = {'status.json', 'run.log', 'config.yaml', '.lock', 'run.json'}
        for f in sorted(set(fa) | set(fb)):
            if f.name in skip or f.suffix in ('.log',) or 'tfevents' in f.name: continue
            if f not in fa or f not in fb: bad.append(f"{name}: {f} only in {'b' if f not in fa else 'a'}"); continue
            x, y = pa/f, pb/f
            if f.suffix == '.jsonl': same = _rows(x) == _rows(y)
            elif f.suffix == '.json':
                same = _scrub(json.loads(x.read_text()), str(Path(a).resolve()), str(pa)) == \
                       _scrub(json.loads(y.read_text()), str(Path(b).resolve()), str(pb))
            elif f.suffix == '.pt':
                sa, sb = torch.load(x, weights_only=True), torch.load(y, weights_only=True)
                ma, mb = sa.get('model', sa), sb.get('model', sb)
                same = ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
            elif f.name == 'log.txt': same = _log(x, a) == _log(y, b)
            else: same = x.read_bytes() == y.read_bytes()
            if not same: bad.append(f"{name}: {f} differs")
        print(f"{name}: {len(fa)} files compared")
    print('\n'.join(bad) if bad else 'identical')
    return 1 if bad else 0

if __name__ == '__main__':
    if sys.argv[1] == 'run': run(*sys.argv[2:4])
    else: sys.exit(compare(*sys.argv[2:4]))
