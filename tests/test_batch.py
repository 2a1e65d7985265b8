"""Batch machinery without Slurm: the run templates (papermill, real runs on the embedded digits data through
`rdarts grid --executor debug`), the paper grid's expansion, and errors users can cause. The Slurm side is in test_slurm.py."""
import json, os, shutil, subprocess, sys
from dataclasses import asdict
from pathlib import Path
import pytest, yaml

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
    from robust_darts.batch import KINDS, template_parameters
    for k in KINDS.values():
        assert template_parameters(k.template_path()) == asdict(k.config_class()()), \
            f"{k.name}: template out of date; run python -c 'from robust_darts.batch import update_templates; update_templates()'"
    assert (ROOT/'nbs'/'runs'/'.notest').exists()  # templates run through papermill here, not under nbdev_test

def test_paper_grid_expands():
    "configs/paper.yaml: every value of every grid (DP 0.6 included), duplicates merged, evaluations waiting for searches."
    from robust_darts.batch import load_grid
    g = load_grid(ROOT/'configs'/'paper.yaml', out='/nonexistent/paper')
    search = [j for j in g.jobs if j.kind == 'search']
    assert (len(search), len(g.jobs) - len(search), g.merged, g.waiting) == (360, 36, 72, 396)
    assert sorted({j.params['drop_path_prob'] for j in search}) == [0.0, 0.2, 0.4, 0.6]
    assert sorted({j.params['weight_decay'] for j in search}) == [3e-4, 9e-4, 2.7e-3, 8.1e-3, 2.43e-2]
    assert {j.params['method'] for j in search} == {'darts', 'es', 'ada'} and {j.params['order'] for j in search} == {'second'}
    assert len({j.run_dir for j in g.jobs}) == len(g.jobs)

GRID = """
name: tmpl
out: {out}
resources: {{cpus: 1, time_min: 10}}
grid: {{seed: [1]}}
set: {{dataset: digits, batch_size: 32, init_channels: 4, layers: 3, max_steps: 2, device: cpu}}
experiments:
  - {{name: s, kind: search, set: {{space: s2, epochs: 2, valid_batches: 1, hessian_every: 0, order: first}}}}
  - {{name: rs, kind: random_ws, set: {{space: s2, epochs: 1, n_samples: 4, top_k: 2, n_score_batches: 1, valid_batches: 1}}}}
  - {{name: ev, kind: evaluate, from: s, set: {{epochs: 1, test_batches: 1, init_channels: 4, layers: 3, max_steps: 2}}}}
"""

def test_templates_run_in_debug_executor(tmp_path):
    "search, random_ws and evaluate templates executed by papermill via `rdarts grid --executor debug`; evaluate follows its search."
    out = tmp_path/'out'; g = tmp_path/'g.yaml'; g.write_text(GRID.format(out=out))
    r = rdarts('grid', g, '--executor', 'debug', check=0)
    assert '2 jobs (+1 waiting for unfinished source runs' in r.out and '2 runs: 2 done' in r.out, r.out
    r = rdarts('grid', g, '--executor', 'debug', check=0)
    assert '3 jobs' in r.out and '1 to run, 2 skipped' in r.out, r.out
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
