"""Batch runs on a REAL one-node Slurm cluster (tests/slurm/start-local-slurm.sh; skipped when `scontrol ping` fails).

Submits with the same `rdarts grid` command users run, waits, and checks run folders, executed notebooks, status and the
collected table; then interrupts jobs (scancel; a submitit preemption signal) and checks they resume from their checkpoints.
"""
import json, os, shutil, subprocess, sys, time
from pathlib import Path
import pytest, yaml

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT/'configs'/'tiny.yaml'

def rdarts(*args, check=None, timeout=300, env=None):
    "Run the `rdarts` command as users do; returns the CompletedProcess (stdout+stderr in .out)."
    exe = shutil.which('rdarts')
    cmd = [exe] if exe else [sys.executable, '-c', 'import sys; from robust_darts.cli import main; sys.exit(main())']
    r = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})})
    r.out = r.stdout + r.stderr
    if check is not None: assert r.returncode == check, r.out
    return r

def squeued(jid) -> str:
    return subprocess.run(['squeue', '-h', '-j', str(jid), '-o', '%T'], capture_output=True, text=True).stdout.strip()

def metrics(run) -> list:
    p = Path(run)/'metrics.jsonl'
    return [json.loads(l) for l in p.read_text().splitlines() if l.strip()] if p.exists() else []

def wait_for(cond, timeout, what, poll=0.3):
    end = time.time() + timeout
    while time.time() < end:
        if cond(): return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")

def check_run(run: Path, epochs: int, nb='search.ipynb'):
    "A finished run folder: config, metrics of every epoch once, genotype, result, the executed notebook without errors."
    for f in ('config.yaml', 'metrics.jsonl', 'genotype.txt', 'result.json', nb): assert (run/f).exists(), f"{run}/{f} missing"
    assert [m['epoch'] for m in metrics(run)] == list(range(epochs))
    cfg = yaml.safe_load((run/'config.yaml').read_text())
    nbj = json.loads((run/nb).read_text())
    cells = [c for c in nbj['cells'] if c['cell_type'] == 'code']
    inj = next(c for c in cells if 'injected-parameters' in c['metadata'].get('tags', []))
    src = ''.join(inj['source'])
    assert f'space = "{cfg["space"]}"' in src and f"seed = {cfg['seed']}" in src
    assert not any(o.get('output_type') == 'error' for c in cells for o in c.get('outputs', []))
    assert all(c.get('execution_count') for c in cells), "every code cell executed"
    return cfg

def test_tiny_grid(slurm_env, tmp_path):
    "configs/tiny.yaml as users run it: submit, wait, check folders + notebooks, status, collect; a re-run skips everything."
    out = tmp_path/'tiny'
    r = rdarts('grid', TINY, '--executor', 'slurm', '--out', out, '--wait', '--poll', '1', check=0)
    assert 'submitted 4 job(s) as Slurm job' in r.out and '4 runs: 4 done' in r.out
    runs = sorted(p.parent for p in out.glob('*/*/result.json'))
    assert len(runs) == 4
    assert sorted((c['space'], c['seed']) for c in (check_run(p, 3) for p in runs)) == [('s1', 1), ('s1', 2), ('s3', 1), ('s3', 2)]
    for p in runs:  # the job ran as an array task with one thread, and recorded its state
        st = json.loads((out/'_jobs'/p.relative_to(out)/'state.json').read_text())
        assert st['state'] == 'done' and st['attempt'] == 1 and '_' in st['job_id']
    s = rdarts('status', out, '--check', check=0)
    assert s.out.count('done ') == 4
    rdarts('collect', out, check=0)
    import pandas as pd
    df = pd.read_csv(out/'results.csv')
    assert len(df) == 4 and {'space', 'seed', 'valid_error', 'genotype', 'notebook', 'kind'} <= set(df.columns)
    assert set(df.kind) == {'search'} and df.genotype.str.startswith('Genotype(').all()
    arch = yaml.safe_load((out/'reference'/'search_darts'/'results_arch.yaml').read_text())
    assert sorted(arch) == ['s1_digits', 's3_digits'] and sorted(arch['s1_digits']['0.0_0.0003']) == [1, 2]
    again = rdarts('grid', TINY, '--executor', 'slurm', '--out', out, check=0)
    assert '0 to run, 4 skipped' in again.out

GRID = """
name: interrupt
out: {out}
resources: {{cpus: 1, mem_gb: 2, time_min: 10}}
set: {{dataset: digits, batch_size: 32, init_channels: 4, layers: 3, max_steps: 3, valid_batches: 2, hessian_every: 0,
       device: cpu, method: darts, order: first, space: s1}}
experiments:
  - {{name: killed, kind: search, set: {{seed: 1, epochs: 8}}}}
  - {{name: preempted, kind: search, set: {{seed: 2, epochs: 8}}}}
  - {{name: broken, kind: search, set: {{seed: 3, epochs: 2, dataset: no_such_data.npz}}}}
"""

def test_interrupted_jobs_resume(slurm_env, tmp_path):
    "scancel mid-run + resubmit, and a submitit preemption (USR2 -> checkpoint -> requeue): both finish from their checkpoints."
    out = tmp_path/'out'
    g = tmp_path/'interrupt.yaml'; g.write_text(GRID.format(out=out))
    rdarts('grid', g, '--executor', 'slurm', check=0)
    killed, pre = out/'s1_digits'/'darts-first_dp0_wd0.0003_seed1', out/'s1_digits'/'darts-first_dp0_wd0.0003_seed2'
    jid = lambda run: json.loads((out/'_jobs'/run.relative_to(out)/'submitted.json').read_text())['job_id']
    wait_for(lambda: len(metrics(killed)) >= 2 and len(metrics(pre)) >= 2, 120, "two epochs of both long jobs")
    # 1. scancel: the job dies without a result; rdarts status says so
    subprocess.run(['scancel', jid(killed)], check=True)
    # 2. preemption as submitit tests it (timeout signal): the job checkpoints and requeues itself
    subprocess.run(['scancel', '--signal=USR2', jid(pre)], check=True)
    wait_for(lambda: not squeued(jid(killed)), 60, "the cancelled job to leave the queue")
    before_k, before_p = metrics(killed), metrics(pre)
    assert len(before_k) < 8 and not (killed/'result.json').exists()
    wait_for(lambda: squeued(jid(pre)) == 'PENDING', 60, "the preempted job to be requeued")
    assert 'requeued' in rdarts('status', out).out
    subprocess.run(['scontrol', 'update', f'JobId={jid(pre)}', 'StartTime=now'], check=True)  # skip Slurm's requeue delay
    st = rdarts('status', out).out
    assert 'interrupted' in st and 'darts-first_dp0_wd0.0003_seed1' in st, st
    # 3. resubmit only the killed run (the broken one would just fail again); --wait also waits for the requeued one
    r = rdarts('grid', g, '--executor', 'slurm', '--only', 'killed', '--wait', '--poll', '1', check=0)
    assert '1 to run' in r.out, r.out
    wait_for(lambda: (pre/'result.json').exists(), 120, "the preempted job to finish")
    for run, before in ((killed, before_k), (pre, before_p)):
        check_run(run, 8)
        after = metrics(run)
        assert after[:len(before)] == before[:len(after)], "epochs finished before the interruption are kept unchanged"
        assert 'resuming' in (run/'log.txt').read_text()
    assert json.loads((out/'_jobs'/pre.relative_to(out)/'state.json').read_text())['attempt'] == 2  # same submission, 2nd run
    # 4. the job that failed inside its notebook: its cell's error, the others unaffected
    broken = lambda: json.loads(next((out/'_jobs').glob('s1_no_such_data/*/state.json')).read_text())
    wait_for(lambda: list((out/'_jobs').glob('s1_no_such_data/*/state.json')) and broken()['state'] == 'failed', 120, "the broken job")
    s = rdarts('status', out, '--check')
    assert s.returncode == 1
    line = next(l for l in s.out.splitlines() if 'seed3' in l)
    assert line.startswith('failed') and 'In [' in line and 'no_such_data' in line, line
    assert sum(l.startswith('done') for l in s.out.splitlines()) == 2

def test_bad_partition_and_gpus(slurm_env, tmp_path):
    "A partition that does not exist, and GPUs on a CPU-only node -> one-line errors, nothing submitted."
    g = tmp_path/'g.yaml'
    g.write_text(TINY.read_text().replace('cpus: 1 ', 'cpus: 1\n  partition: nosuchpart '))
    r = rdarts('grid', g, '--executor', 'slurm', '--out', tmp_path/'o', check=2)
    assert "Slurm partition 'nosuchpart' (experiment 'darts') does not exist; partitions here: " + slurm_env['partition'] in r.out
    g.write_text(TINY.read_text().replace('cpus: 1 ', 'cpus: 1\n  gpus: 1 '))
    r = rdarts('grid', g, '--executor', 'slurm', '--out', tmp_path/'o', check=2)
    assert "Slurm rejects the resources of experiment 'darts' (gpus=1 " in r.out and 'gres' in r.out and len(r.stderr.strip().splitlines()) == 1, r.out
    assert not list((tmp_path/'o').glob('_jobs/*/*/submitted.json'))  # rolled back

def test_controller_down(slurm_env, tmp_path):
    "A controller that does not answer (a config pointing at an unused port) -> a clear error before anything is written."
    conf = tmp_path/'slurm.conf'
    conf.write_text(Path(os.environ.get('SLURM_CONF', '/etc/slurm/slurm.conf')).read_text().replace('SlurmctldPort=6817', 'SlurmctldPort=6999'))
    r = rdarts('grid', TINY, '--executor', 'slurm', '--out', tmp_path/'o', check=2, env={'SLURM_CONF': str(conf)})
    assert 'the Slurm controller does not answer' in r.stderr and 'use --executor local' in r.stderr, r.stderr
    assert not (tmp_path/'o').exists()
