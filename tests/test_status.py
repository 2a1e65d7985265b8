"""`rdarts status` / `rdarts collect` on a folder of runs started by hand (`rdarts search`): one finished, one
interrupted (SIGKILLed right after its first checkpoint, before metrics.jsonl is derived from it), one failed (a diverging run,
at its second epoch), one still running.
Each must be listed with its state, its last epoch and its log.txt. Real tiny searches on the embedded digits
data; about 1-2.5 min on 2 CPU cores (the four runs start in parallel)."""
import json, os, re, shutil, signal, subprocess, sys, time
import pytest

pytestmark = pytest.mark.slow

TINY = ['--space', 's3', '--dataset', 'digits', '--batch-size', '16', '--init-channels', '4', '--layers', '3', '--max-steps', '1',
        '--valid-batches', '1', '--hessian-every', '0', '--device', 'cpu', '--quiet']

def rdarts_cmd():
    exe = shutil.which('rdarts')
    return [exe] if exe else [sys.executable, '-c', 'import sys; from robust_darts.cli import main; sys.exit(main())']

def env(**kw): return {**os.environ, 'OMP_NUM_THREADS': '1', **kw}

def start(out, name, *args, **envkw):
    "Start `rdarts search` with the tiny settings in out/s3_digits/<name>; returns the Popen."
    return subprocess.Popen(rdarts_cmd() + ['search', *TINY, '--out', str(out), '--name', name, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(**envkw))

def rdarts(*args, cwd=None):
    r = subprocess.run(rdarts_cmd() + [str(a) for a in args], capture_output=True, text=True, timeout=300, env=env(), cwd=cwd)
    r.out = r.stdout + r.stderr
    return r

def state_of(run):
    try: return json.loads((run/'status.json').read_text()).get('state')
    except (OSError, ValueError): return None

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "Four hand-started runs under one --out: done, interrupted, failed, running (killed at the end)."
    out = tmp_path_factory.mktemp('status')/'runs'
    d = out/'s3_digits'
    procs = dict(
        done=start(out, 'done', '--epochs', 2, '--seed', 1),
        interrupted=start(out, 'interrupted', '--epochs', 3, '--seed', 2, RDARTS_CRASH_AFTER='checkpoint:1'),
        failed=start(out, 'failed', '--epochs', 2, '--seed', 3, '--lr', '1e12', '--grad-clip', '1e30'),
        running=start(out, 'running', '--epochs', 100000, '--seed', 4))
    try:
        res = {k: p.communicate(timeout=240) + (p.returncode,) for k, p in procs.items() if k != 'running'}
        assert res['done'][2] == 0, res['done'][1]
        assert res['interrupted'][2] == -signal.SIGKILL, res['interrupted'][1]
        assert res['failed'][2] == 2 and 'non-finite' in res['failed'][1] and '--lr' in res['failed'][1], res['failed'][1]
        t0 = time.time()   # the long run: until it says running and has finished an epoch
        while not (state_of(d/'running') == 'running' and (d/'running'/'metrics.jsonl').exists()
                   and (d/'running'/'metrics.jsonl').read_text().strip()):
            assert procs['running'].poll() is None, procs['running'].communicate()[1]
            assert time.time() - t0 < 240, 'the long run did not start'
            time.sleep(0.5)
        # paused from here on: still a live process (its folder reads as running) without taking a CPU from the tests
        os.kill(procs['running'].pid, signal.SIGSTOP)
        yield out, procs['running']
    finally:
        for p in procs.values():
            if p.poll() is None: p.kill(); p.communicate()

COLS = ('state', 'run', 'job', 'epochs', 'log', 'job log', 'info')

def table(text):
    "{run: {column: value}} of the status table (columns are separated by two or more spaces)."
    lines = text.splitlines()
    assert re.split(r'\s{2,}', lines[0].strip()) == list(COLS), lines[0]
    rows = [dict(zip(COLS, re.split(r'\s{2,}', l.strip(), maxsplit=6))) for l in lines[1:-1]]
    return {r['run']: r for r in rows}

def test_status_lists_hand_started_runs(runs):
    out, running = runs
    d = out/'s3_digits'
    r = rdarts('status', out)
    assert r.returncode == 0, r.out
    rows = table(r.stdout)
    assert set(rows) == {f's3_digits/{k}' for k in ('done', 'interrupted', 'failed', 'running')}, r.stdout
    got = {k.split('/')[1]: (v['state'], v['epochs'], v['log']) for k, v in rows.items()}
    assert got == dict(done=('done', '2/2', str(d/'done'/'log.txt')), interrupted=('interrupted', '1/3', str(d/'interrupted'/'log.txt')),
                       failed=('failed', '-', str(d/'failed'/'log.txt')), running=('running', got['running'][1], str(d/'running'/'log.txt'))), r.stdout
    assert got['running'][1].endswith('/100000') and int(got['running'][1].split('/')[0]) >= 1
    assert {v['job log'] for v in rows.values()} == {'-'}   # started by hand: no scheduler job, no job log
    assert 'non-finite' in rows['s3_digits/failed']['info'] and '--lr' in rows['s3_digits/failed']['info']
    assert f'PID {running.pid}' in rows['s3_digits/running']['info']
    assert rows['s3_digits/done']['info'].startswith('valid_error ')
    assert 're-run the same command to resume' in rows['s3_digits/interrupted']['info']
    assert r.stdout.splitlines()[-1].startswith('4 runs: ')
    # from the folder above, paths are shown relative to it; one run folder alone works too
    r = rdarts('status', 'runs', cwd=out.parent)
    assert table(r.stdout)['s3_digits/done']['log'] == 'runs/s3_digits/done/log.txt', r.out
    r = rdarts('status', d/'interrupted')
    assert r.returncode == 0 and r.stdout.splitlines()[1].startswith('interrupted'), r.out
    assert rdarts('status', out, '--check').returncode == 1

def test_status_tolerates_damage_and_lists_set_aside(runs, tmp_path):
    "A torn metrics.jsonl line does not break status; --fresh's *.prev-* folders are counted, listed with --set-aside."
    out, _ = runs
    copy = tmp_path/'copy'
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns('checkpoints', '.lock'))
    m = copy/'s3_digits'/'done'/'metrics.jsonl'
    m.write_text(m.read_text() + '{"epoch": 7, "train_lo')
    shutil.copytree(copy/'s3_digits'/'done', copy/'s3_digits'/'done.prev-20250101-000000')
    r = rdarts('status', copy)
    assert r.returncode == 0, r.out
    rows = table(r.stdout)
    assert rows['s3_digits/done']['epochs'] == '2/2' and 's3_digits/done.prev-20250101-000000' not in rows, r.stdout
    assert '1 set-aside *.prev-* folders not listed' in r.stdout
    r = rdarts('status', copy, '--set-aside')
    assert 's3_digits/done.prev-20250101-000000' in table(r.stdout), r.stdout

def test_collect_takes_finished_runs_and_names_the_rest(runs, tmp_path):
    out, _ = runs
    r = rdarts('collect', out, '-o', tmp_path)
    assert r.returncode == 0, r.out
    import pandas as pd
    df = pd.read_csv(tmp_path/'results.csv')
    assert list(df.run) == ['s3_digits/done'] and list(df.kind) == ['search']
    assert 'not collected (unfinished):' in r.stdout and '1 failed' in r.stdout and '1 interrupted' in r.stdout and '1 running' in r.stdout, r.out
