"""Batch machinery without Slurm: the run templates (papermill, real runs on the embedded digits data through
`rdarts grid --executor debug`), the paper grid's expansion, and errors users can cause. The Slurm side is in test_slurm.py."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parent.parent

def rdarts(*args, check=None, env=None, timeout=600):
    exe = shutil.which('rdarts')
    cmd = [exe] if exe else [sys.executable, '-c', 'import sys; from robust_darts.cli import main; sys.exit(main())']
    r = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})})
    r.out = r.stdout + r.stderr
    if check is not None: assert r.returncode == check, r.out
    return r

def test_templates_mirror_configs():
    "Each run template's parameters cell assigns every config field its default, and keeps its papermill tag."
    from robust_darts.grid import KINDS, template_parameters
    from dataclasses import fields, MISSING
    defaults = lambda c: {f.name: f.default if f.default_factory is MISSING else f.default_factory() for f in fields(c)}
    for k in KINDS.values():   # field defaults, not an instance: a config may require a value (pt_select's source)
        assert template_parameters(k.template_path()) == defaults(k.config_class()), \
            f"{k.name}: template out of date; run python -c 'from robust_darts.grid import update_templates; update_templates()'"
    assert (ROOT/'nbs'/'runs'/'.notest').exists()  # templates run through papermill here, not under nbdev_test

def test_paper_grid_expands(capsys):
    """configs/paper.yaml: every value of every grid (DP 0.6 included), duplicates merged, one evaluation per search chained to
    it; time limits that fit common partitions; resources from the command line shown by --dry-run."""
    from robust_darts.grid import load_grid
    from robust_darts.cli import grid_main
    g = load_grid(ROOT/'configs'/'paper.yaml', out='/nonexistent/paper')
    search = [j for j in g.jobs if j.kind == 'search']
    rs, ev = [j for j in g.jobs if j.kind == 'random_ws'], [j for j in g.jobs if j.kind == 'evaluate']
    assert (len(search), len(rs), len(ev), g.merged) == (360, 36, 396, 72)
    assert sorted({j.params['drop_path_prob'] for j in search}) == [0.0, 0.2, 0.4, 0.6]
    assert {j.params['cutout_schedule'] for j in search} == {'reference'}   # what produced the paper
    assert sorted({j.params['weight_decay'] for j in search}) == [3e-4, 9e-4, 2.7e-3, 8.1e-3, 2.43e-2]
    assert {j.params['method'] for j in search} == {'darts', 'es', 'ada'} and {j.params['order'] for j in search} == {'second'}
    assert len({j.run_dir for j in g.jobs}) == len(g.jobs)
    assert sorted(j.after[0].key for j in ev) == sorted(j.key for j in search + rs)   # each search and RS-WS run evaluated once
    assert all(j.params['genotype'] == str(j.after[0].run_dir) for j in ev)
    assert max(j.resources.time_min for j in g.jobs) <= 24 * 60
    grid_main([str(ROOT/'configs'/'paper.yaml'), '--dry-run', '--out', '/nonexistent/paper', '--account', 'proj42',
               '--partition', 'gpu', '--time', '12:00:00', '--mem', '32G', '--runs-per-gpu', '4'])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'paper.yaml: 792 jobs (72 duplicates merged) -> /nonexistent/paper', lines[0]
    assert lines[-1] == '792 to run (0 resuming, 396 after the runs they need), 0 skipped', lines[-1]
    row = next(l for l in lines if ' evaluate ' in l)
    assert 'partition=gpu account=proj42 gpus=1 cpus=4 mem_gb=32.0 time_min=720 runs_per_gpu=4' in row and '  after s1_cifar10/' in row, row

GRID = """
name: tmpl
out: {out}
resources: {{cpus: 1, time_min: 10}}
grid: {{seed: [1]}}
set: {{dataset: digits, batch_size: 32, init_channels: 4, layers: 3, max_steps: 2, device: cpu}}
experiments:
  - {{name: srch, kind: search, set: {{space: s2, epochs: 2, valid_batches: 1, hessian_every: 0, order: first}}}}
  - {{name: rws, kind: random_ws, set: {{space: s2, epochs: 1, n_samples: 4, top_k: 2, n_score_batches: 1, valid_batches: 1}}}}
  - {{name: ev, kind: evaluate, from: srch, set: {{epochs: 1, test_batches: 1, init_channels: 4, layers: 3, max_steps: 2}}}}
"""

def same_run(a: Path, b: Path):
    "Two run folders with the same results: metrics (timings aside), result and genotype."
    strip = lambda rows: [{k: v for k, v in r.items() if not any(w in k for w in ('time', 'second', 'elapsed'))} for r in rows]
    rows = lambda p: strip([json.loads(l) for l in (p/'metrics.jsonl').read_text().splitlines() if l.strip()])
    assert rows(a) == rows(b) and len(rows(a)) > 0, (a, b)
    ra, rb = (strip([json.loads((p/'result.json').read_text())])[0] for p in (a, b))
    assert ra == rb, (ra, rb)
    assert (a/'genotype.txt').read_text() == (b/'genotype.txt').read_text()

def test_templates_run_in_debug_executor(tmp_path, capsys):
    """search, random_ws and evaluate templates executed by papermill via `rdarts grid --executor debug`, the evaluation after
    its search in the same call; then search and random_ws packed into one job (--runs-per-gpu 2): same results."""
    out = tmp_path/'out'; g = tmp_path/'g.yaml'; g.write_text(GRID.format(out=out))
    r = rdarts('grid', g, '--executor', 'debug', check=0)
    assert '3 jobs' in r.out and '(1 after the runs they need)' in r.out and '3 runs: 3 done' in r.out, r.out
    assert r.out.index('done: s2_digits/darts') < r.out.index('done: eval_digits/'), r.out
    r = rdarts('grid', g, '--executor', 'debug', check=0)
    assert '0 to run (0 after the runs they need), 3 skipped' in r.out, r.out   # the evaluation's folder, named before its search ran, is found again
    for nb in ('search', 'random_ws', 'evaluate'):
        runs = [p.parent for p in out.glob(f'*/*/{nb}.ipynb')]
        assert len(runs) == 1 and (runs[0]/'result.json').exists(), nb
        cells = [c for c in json.loads((runs[0]/f'{nb}.ipynb').read_text())['cells'] if c['cell_type'] == 'code']
        assert not any(o.get('output_type') == 'error' for c in cells for o in c.get('outputs', [])), nb
    ev = next(out.glob('eval_digits/*/result.json')).parent
    src = next(out.glob('s2_digits/darts-*')).resolve()
    assert yaml.safe_load((ev/'config.yaml').read_text())['genotype'] == str(src)
    assert (ev/'genotype.txt').read_text() == (src/'genotype.txt').read_text()
    rdarts('collect', out, check=0)
    import pandas as pd
    df = pd.read_csv(out/'results.csv')
    assert sorted(df.kind) == ['evaluate', 'random_ws', 'search']
    perf = yaml.safe_load((out/'reference'/'evaluate'/'results_perf.yaml').read_text())
    assert list(perf) == ['s2_digits'] and list(perf['s2_digits']) == ['0.0_0.0003'] and len(perf['s2_digits']['0.0_0.0003'][1]) == 1
    # packed: both runs in one job, each in its own kernel at the same time (in this process: no second start-up)
    from robust_darts.cli import grid_main
    out2 = tmp_path/'packed'
    assert grid_main([str(g), '--executor', 'debug', '--runs-per-gpu', '2', '--only', 'srch', 'rws', '--out', str(out2)]) == 0
    assert '2 runs: 2 done' in capsys.readouterr().out
    subs = [json.loads(p.read_text()) for p in (out2/'_jobs').glob('*/*/submitted.json')]
    assert len(subs) == 2 and len({s['job_id'] for s in subs}) == 1 and all(len(s['pack']) == 2 for s in subs), subs
    for p in out.glob('s2_digits/*/result.json'): same_run(p.parent, out2/p.parent.relative_to(out))
    assert len(list(out2.glob('s2_digits/*/result.json'))) == 2

CHAIN = """
name: chain
out: {out}
set: {{dataset: digits, batch_size: 32, init_channels: 4, layers: 3, max_steps: 2, device: cpu}}
experiments:
  - {{name: srch, kind: search, grid: {{seed: [1, 2]}}, set: {{space: s2, epochs: 2, order: first}}}}
  - {{name: pt, kind: pt_select, from: srch, set: {{proj_intv: 1}}}}
  - {{name: ev, kind: evaluate, from: pt, set: {{epochs: 1}}}}
"""

def test_selection_and_evaluation_chained(tmp_path, capsys):
    "search -> DARTS-PT selection -> evaluation in one grid: each job names the run it needs and is submitted after it."
    from robust_darts.grid import load_grid, _layers
    from robust_darts.cli import grid_main
    g = tmp_path/'chain.yaml'; g.write_text(CHAIN.format(out=tmp_path/'out'))
    jobs = load_grid(g).jobs
    assert [[j.kind for j in l] for l in _layers(jobs)] == [['search'] * 2, ['pt_select'] * 2, ['evaluate'] * 2]
    for j in jobs[2:4]: assert j.params['source'] == str(j.after[0].run_dir) and j.after[0].kind == 'search'
    for j in jobs[4:]: assert j.params['genotype'] == str(j.after[0].run_dir) and j.after[0].kind == 'pt_select'
    grid_main([str(g), '--dry-run'])
    rows = capsys.readouterr().out.splitlines()
    assert rows[-1] == '6 to run (0 resuming, 4 after the runs they need), 0 skipped', rows[-1]
    assert sum(f'  after {jobs[k].key}' in r for k in range(4) for r in rows) == 4

def test_errors_users_cause(tmp_path):
    "Bad grid files and an unavailable executor: one line each, naming the file/key/tool, exit code 2."
    g = tmp_path/'g.yaml'
    g.write_text((ROOT/'configs'/'tiny.yaml').read_text().replace('max_steps: 3', 'max_step: 3'))
    r = rdarts('grid', g, '--dry-run', check=2)
    assert f"{g}, experiment 'darts': unknown key 'max_step' for SearchConfig" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    g.write_text((ROOT/'configs'/'tiny.yaml').read_text().replace('space: [s1, s3]', 'space: [s1, s9]'))
    r = rdarts('grid', g, '--dry-run', check=2)
    assert "experiment 'darts': space = 's9': expected one of s1" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    # slurm chosen where sbatch is not on PATH (only the interpreter's folder is)
    r = rdarts('grid', ROOT/'configs'/'tiny.yaml', '--executor', 'slurm', '--out', tmp_path/'o', check=2,
               env={'PATH': str(Path(sys.executable).parent)})
    assert "executor 'slurm' is not available: sbatch not found on PATH" in r.stderr and not (tmp_path/'o').exists()
    r = rdarts('grid', ROOT/'configs'/'tiny.yaml', check=2)   # never guessed
    assert '--executor is required' in r.stderr
