"""The run lifecycle as it fails: real `rdarts` processes SIGKILLed right after each checkpoint, each write of
the derived files (metrics, adaptations) and at random instants, then resumed with the same command; the result
must equal an uninterrupted run's. Plus: a second process on a live run, a planted malicious checkpoint, a
stale temporary file, and a table of bad inputs (CLI, YAML, API) that must each end in one line, exit code 2,
and leave every folder as it was."""
import json, os, random, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from robust_darts.core import RDartsError
from robust_darts.runs import checkpoints, latest_checkpoint, load_checkpoint, read_jsonl, read_status
from events_check import assert_events_match, events_untimed

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
CMD = [sys.executable, '-c', 'import sys; from robust_darts.cli import main; sys.exit(main())']
TIMINGS = {'seconds', 'elapsed', 'eig_seconds', 'selection_seconds'}

# DARTS-ADA on a hair trigger (window 1, consecutive evaluations, factor 0.5: the rule fires at its first
# check), first order, tiny supernet: two rollbacks to epoch 1 (L2 3e-4 -> 3e-3 -> 3e-2), 8 checkpoints.
ADA = ['search', '--method', 'ada', '--space', 's3', '--dataset', 'digits', '--epochs', '6', '--batch-size', '16',
       '--init-channels', '4', '--layers', '3', '--max-steps', '2', '--valid-batches', '1', '--hessian-every', '1',
       '--es-window', '1', '--es-delta', '1', '--es-factor', '0.5', '--es-start-epoch', '1', '--order', 'first',
       '--seed', '3', '--device', 'cpu', '--quiet']
EVAL = ['evaluate', '--genotype', 'darts_v2', '--dataset', 'digits', '--epochs', '4', '--batch-size', '32', '--layers', '3',
        '--init-channels', '4', '--max-steps', '3', '--test-batches', '2', '--cutout-length', '8', '--seed', '0',
        '--device', 'cpu', '--quiet']
RSWS = ['random-ws', '--space', 's3', '--dataset', 'digits', '--epochs', '4', '--batch-size', '32', '--init-channels', '4',
        '--layers', '3', '--max-steps', '2', '--n-samples', '6', '--n-score-batches', '1', '--top-k', '2',
        '--valid-batches', '1', '--seed', '0', '--device', 'cpu', '--quiet']

def rdarts(args, crash=None, timeout=600):
    env = {**ENV, **({'RDARTS_CRASH_AFTER': crash} if crash else {})}
    return subprocess.run(CMD + [str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout)

def newest_seq(run_dir): return max((s for s, _, _ in checkpoints(Path(run_dir)/'checkpoints')), default=-1)

def killed_at_random(args, lo, hi, run_dir):
    """Start the command and SIGKILL it at a random instant of its work: [lo, hi] s after its first new checkpoint
    (counted from there, not from the start, so that a fast machine does not finish the run first). True if it was killed."""
    p = subprocess.Popen(CMD + [str(a) for a in args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seq0, t0 = newest_seq(run_dir), time.time()
    while p.poll() is None and newest_seq(run_dir) == seq0:
        assert time.time() - t0 < 300, "no checkpoint within 300 s"
        time.sleep(0.02)
    try: p.wait(timeout=random.uniform(lo, hi)); return False
    except subprocess.TimeoutExpired: p.send_signal(signal.SIGKILL); p.wait(); return True

def run_with_kills(args, modes, run_dir, finish=True):
    """Run `args` (its folder: `run_dir`) once per kill mode (a crash spec, or ('random', lo, hi)); a spec ending in '*'
    repeats until the run completes. Returns the kinds of the kills that happened, in order (e.g. ['checkpoint', 'random'])."""
    kills = []
    for m in modes:
        if isinstance(m, tuple):
            if killed_at_random(args, *m[1:], run_dir): kills.append('random')
            continue
        for _ in range(100 if m.endswith('*') else 1):
            r = rdarts(args, crash=m.rstrip('*'))
            if r.returncode == 0: break           # this invocation had nothing left to crash on: the run is complete
            assert r.returncode == -signal.SIGKILL, (m, r.returncode, r.stderr[-2000:])
            kills.append(m.rstrip('*').split(':')[0])
    if finish:
        r = rdarts(args); assert r.returncode == 0, r.stderr[-2000:]
    return kills

def strip(rows): return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]

def same_run(a:Path, b:Path, files=()):
    "Two run folders hold the same final state: newest checkpoint's tensors and records, derived files, result."
    sa, sb = load_checkpoint(latest_checkpoint(a/'checkpoints')), load_checkpoint(latest_checkpoint(b/'checkpoints'))
    assert sa['epoch'] == sb['epoch']
    for k in sa['model']: assert torch.equal(sa['model'][k], sb['model'][k]), k
    assert strip(read_jsonl(a/'metrics.jsonl')) == strip(read_jsonl(b/'metrics.jsonl'))
    for f in files:
        if f.endswith('.jsonl'): assert strip(read_jsonl(a/f)) == strip(read_jsonl(b/f)), f
        else: assert (a/f).read_text() == (b/f).read_text(), f
    ra, rb = json.loads((a/'result.json').read_text()), json.loads((b/'result.json').read_text())
    assert {k: v for k, v in ra.items() if k not in TIMINGS} == {k: v for k, v in rb.items() if k not in TIMINGS}
    assert read_status(b)['state'] == 'done'
    assert not list(b.glob('**/.*.tmp')), "temporary files left behind"
    # TensorBoard's events: each step once, equal to metrics.jsonl, and to the events of the run never killed
    assert_events_match(b); assert events_untimed(a) == events_untimed(b)

@pytest.mark.slow
def test_ada_search_survives_sigkill_anywhere(tmp_path):
    ref = rdarts(ADA + ['--out', tmp_path, '--name', 'ref'])
    assert ref.returncode == 0, ref.stderr
    a = tmp_path/'s3_digits'/'ref'
    adapt = read_jsonl(a/'adaptations.jsonl')
    assert len(adapt) >= 2, adapt                                  # the test needs two rollbacks
    # killed right after every checkpoint (a process dies after its first one; the two rollbacks' checkpoints,
    # which hold the adaptations, included), right after the derived files (metrics, adaptations) of some
    # steps, at random instants, and right after result.json
    b = tmp_path/'s3_digits'/'killed'
    kills = run_with_kills(ADA + ['--out', tmp_path, '--name', 'killed'],
                           ['checkpoint:1', 'rollback:1', 'rollback:1', ('random', 0, 1), 'files:1', ('random', 0, 1),
                            'checkpoint:1', 'result:1'], b)
    print(f"ADA search: {len(kills)} kills: {kills}")
    # both rollbacks killed right after their checkpoint, and every other kind of kill happened
    assert kills.count('rollback') == 2 and {'checkpoint', 'files', 'result'} <= set(kills), kills
    same_run(a, b, ['adaptations.jsonl', 'metrics_rolled_back.jsonl', 'genotype.txt', 'genotype_es.txt'])
    assert [r['epoch'] for r in read_jsonl(b/'metrics.jsonl')] == list(range(6))

@pytest.mark.slow
@pytest.mark.parametrize('kind', ['evaluate', 'random_ws'])
def test_evaluation_and_random_ws_survive_sigkill(tmp_path, kind):
    args, sub, files = dict(evaluate=(EVAL, 'eval_digits', ['genotype.txt']),
                            random_ws=(RSWS, 's3_digits', ['genotype.txt', 'selection.json']))[kind]
    ref = rdarts(args + ['--out', tmp_path, '--name', 'ref'])
    assert ref.returncode == 0, ref.stderr
    kills = run_with_kills(args + ['--out', tmp_path, '--name', 'killed'],
                           ['checkpoint:1', 'files:1', ('random', 0, 0.3), 'result:1'], tmp_path/sub/'killed')
    assert {'checkpoint', 'files', 'result'} <= set(kills), kills    # (the random kill may find the short run finished)
    a, b = tmp_path/sub/'ref', tmp_path/sub/'killed'
    same_run(a, b, files)
    if kind == 'evaluate':
        wa, wb = torch.load(a/'weights.pt', weights_only=True), torch.load(b/'weights.pt', weights_only=True)
        for k in wa: assert torch.equal(wa[k], wb[k]), k

def test_second_process_refused_and_dead_lock_taken_over(tmp_path):
    args = ['search', '--space', 's3', '--dataset', 'digits', '--epochs', '50', '--batch-size', '16', '--init-channels', '4',
            '--layers', '3', '--hessian-every', '0', '--device', 'cpu', '--out', tmp_path, '--name', 'live', '--quiet']
    run = tmp_path/'s3_digits'/'live'
    p = subprocess.Popen(CMD + [str(a) for a in args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while read_status(run).get('state') != 'running':
            assert p.poll() is None and time.time() - t0 < 120, p.stderr.read() if p.poll() is not None else 'no status'
            time.sleep(0.1)
        r = rdarts(args)
        assert r.returncode == 2
        line, = r.stderr.strip().splitlines()
        assert f"is in use by PID {p.pid} on" in line, line
        assert 'Traceback' not in r.stderr
        # the refused process changed nothing (the live one may have written meanwhile: compare what it did not touch)
        assert (run/'config.yaml').exists() and read_status(run)['pid'] == p.pid
    finally:
        p.send_signal(signal.SIGKILL); p.wait()
    # the holder is dead: its lock is taken over, and the status says the run can be resumed
    assert read_status(run)['state'] == 'interrupted'
    r = rdarts([a if a != '50' else '1' for a in args])   # a different config is refused by content, not by the lock
    assert r.returncode == 2 and 'holds a different run (epochs: 50 there, 1 now)' in r.stderr

def test_malicious_checkpoint_never_runs(tmp_path):
    args = ['search', '--space', 's3', '--dataset', 'digits', '--epochs', '3', '--batch-size', '16', '--init-channels', '4',
            '--layers', '3', '--max-steps', '1', '--valid-batches', '1', '--hessian-every', '0', '--device', 'cpu',
            '--out', tmp_path, '--name', 'evil', '--quiet']
    r = rdarts(args, crash='checkpoint:1'); assert r.returncode == -signal.SIGKILL
    run = tmp_path/'s3_digits'/'evil'
    marker = tmp_path/'pwned'
    prog = (f"import os, torch\nclass E:\n    def __reduce__(self): return (os.system, ('touch {marker}',))\n"
            f"torch.save(dict(version=2, x=E()), {str(run/'checkpoints'/'ckpt_999999_epoch_001.pt')!r})")
    subprocess.run([sys.executable, '-c', prog], check=True)
    r = rdarts(args)   # never unpickled: set aside (kept), and the run resumes from its own checkpoint and finishes
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr
    assert not marker.exists()
    assert (run/'checkpoints'/'ckpt_999999_epoch_001.pt.damaged').exists()
    assert 'holds objects other than tensors' in (run/'log.txt').read_text()
    assert [m['epoch'] for m in read_jsonl(run/'metrics.jsonl')] == [0, 1, 2]
    assert not marker.exists()

def test_repairs_after_kills_between_writes(tmp_path):
    "A stale temporary file is removed; metrics one row short (kill before the derived files) and a damaged metrics file of a finished run are rewritten."
    args = ['search', '--space', 's3', '--dataset', 'digits', '--epochs', '2', '--batch-size', '16', '--init-channels', '4',
            '--layers', '3', '--max-steps', '1', '--valid-batches', '1', '--hessian-every', '0', '--device', 'cpu',
            '--out', tmp_path, '--name', 'r', '--quiet']
    run = tmp_path/'s3_digits'/'r'
    r = rdarts(args, crash='checkpoint:2'); assert r.returncode == -signal.SIGKILL
    assert len(read_jsonl(run/'metrics.jsonl')) == 1               # the last checkpoint's row is not written yet
    (run/'checkpoints'/'.ckpt_000003_epoch_002.pt.abc.tmp').write_bytes(b'half')
    r = rdarts(args); assert r.returncode == 0, r.stderr
    assert [m['epoch'] for m in read_jsonl(run/'metrics.jsonl')] == [0, 1]
    assert not list(run.glob('**/*.tmp'))
    good = (run/'metrics.jsonl').read_text()
    (run/'metrics.jsonl').write_text(good[:len(good) // 2])          # truncated in a finished run
    with pytest.raises(RDartsError, match=r'line \d+, is damaged'): read_jsonl(run/'metrics.jsonl')
    r = rdarts(args); assert r.returncode == 0, r.stderr
    assert (run/'metrics.jsonl').read_text() == good

# ----------------------------------------------------------------------------------------------------------
# Bad input: >= 30 cases over the CLI, YAML files and the API. Each exits 2 with one line (the CLI) or
# raises one `RDartsError` of one line (the API), and creates or changes no file under the output root.
# ----------------------------------------------------------------------------------------------------------
S = ['search', '--dataset', 'digits', '--quiet']
CLI_BAD = [
    (S + ['--grad-clip', '-1'], "--grad-clip = '-1': expected a finite number > 0"),
    (S + ['--max-steps', '-1'], "--max-steps = '-1': expected an integer >= 0"),
    (S + ['--report-freq', '0'], "--report-freq = '0': expected an integer > 0"),
    (S + ['--momentum', '-1'], "--momentum = '-1': expected a finite number in [0, 1)"),
    (S + ['--layers', '1'], "--layers = '1': expected an integer >= 3"),
    (S + ['--lr', 'inf'], "--lr = 'inf': expected a finite number > 0"),
    (S + ['--lr', 'nan'], "--lr = 'nan': expected a finite number > 0"),
    (S + ['--epochs', 'ten'], "--epochs = 'ten': expected an integer > 0"),
    (S + ['--seed', 'abc'], "--seed = 'abc': expected an integer"),
    (S + ['--seed', '-5'], "--seed = '-5': expected an integer in [0,"),
    (S + ['--method', 'random'], "--method = 'random': expected one of darts, es, ada"),
    (S + ['--order', 'third'], "--order = 'third': expected one of auto, first, second"),
    (S + ['--cutout', 'maybe'], "--cutout = 'maybe': expected one of auto, on, off"),
    (S + ['--hessian-tol', 'nan'], "--hessian-tol = 'nan': expected a finite number in (0, 1)"),
    (S + ['--es-factor', '-0.5'], "--es-factor = '-0.5': expected a finite number > 0"),
    (S + ['--es-window', '4'], "es_window = 4: expected an odd number"),
    (S + ['--num-workers', '-2'], "--num-workers = '-2': expected an integer >= 0"),
    (S + ['--valid-batches', '-1'], "--valid-batches = '-1': expected an integer >= 0"),
    (S + ['--arch-weight-decay', '-1e-3'], "--arch-weight-decay = '-1e-3': expected a finite number >= 0"),
    (S + ['--train-portion', '1'], "--train-portion = '1': expected a finite number in (0, 1)"),
    (S + ['--lr', '0.01', '--lr-min', '0.1'], "lr_min = 0.1 must not exceed lr = 0.01"),
    (S + ['--multiplier', '5'], "multiplier = 5 cannot exceed steps = 4"),
    (S + ['--method', 'es', '--hessian-every', '0'], "method es needs eigenvalues"),
    (S + ['--space', 's9'], "space = 's9': expected one of s1"),
    (S + ['--device', 'gpu0'], "device = 'gpu0': expected auto, cpu, cuda, cuda:N or mps"),
    (S + ['--name', '../../x'], "name = '../../x': expected a folder name below --out"),
    (S + ['--name', '/abs/x'], "name = '/abs/x': expected a folder name below --out"),
    (S + ['--frobnicate', '1'], "unrecognized arguments: --frobnicate 1; see rdarts search --help"),
    (S + ['--lr'], "argument --lr: expected one argument"),
    (['search', '--dataset', 'imagenet'], "imagenet"),
    (['search', '--dataset', 'cifar10', '--data-dir', '/nonexistent/data'], "cifar-10"),
    (S + ['--batch-size', '100000', '--name', 'big'], "is larger than"),
    (['random-ws', '--top-k', '0'], "--top-k = '0': expected an integer > 0"),
    (['random-ws', '--cutout', 'sometimes'], "--cutout = 'sometimes': expected one of auto, on, off"),
    (['evaluate', '--genotype', 'darts_v2', '--dataset', 'digits', '--epochs', '-3'], "--epochs = '-3': expected an integer > 0"),
    (['evaluate', '--genotype', "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=range(0, 10**12), "
      "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])", '--dataset', 'digits'], "normal_concat"),
    (['demo', '--epochs', 'ten'], "--epochs = 'ten': expected an integer > 0"),
]
YAML_BAD = [
    ("weight_decay: [3e-4\n", "is not valid YAML at line"),
    ("epochs: ten\n", "epochs = 'ten': expected an integer > 0"),
    ("- 1\n- 2\n", "expected a mapping of config keys"),
    ("spcae: s1\n", "unknown key 'spcae' for SearchConfig"),
    ("lr: .inf\n", "lr = inf: expected a finite number > 0"),
    ("momentum: 1.5\n", "momentum = 1.5: expected a finite number in [0, 1)"),
    ("layers: 2\n", "layers = 2: expected an integer >= 3"),
    ("method: ada\nhessian_every: 0\n", "method ada needs eigenvalues"),
]
API_BAD = [
    (dict(seed='abc'), "SearchConfig.seed = 'abc': expected an integer"),
    (dict(lr=float('inf')), "SearchConfig.lr = inf: expected a finite number > 0"),
    (dict(hessian_tol=float('nan')), "SearchConfig.hessian_tol = nan"),
    (dict(num_workers=-1), "SearchConfig.num_workers = -1: expected an integer >= 0"),
    (dict(arch_weight_decay=-1.0), "SearchConfig.arch_weight_decay = -1.0"),
    (dict(valid_batches=-3), "SearchConfig.valid_batches = -3"),
    (dict(es_factor=-1.3), "SearchConfig.es_factor = -1.3: expected a finite number > 0"),
    (dict(epochs=True), "SearchConfig.epochs = True: expected an integer > 0"),
    (dict(name='../escape'), "below --out"),
]

def snapshot(root:Path):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob('*'))

@pytest.fixture
def populated(tmp_path):
    "An output root holding a finished run (so a bad run could damage it) and a work folder for YAML files."
    out, work = tmp_path/'out', tmp_path/'work'; work.mkdir()
    r = rdarts(['search', '--space', 's3', '--dataset', 'digits', '--epochs', '1', '--batch-size', '16', '--init-channels', '4',
                '--layers', '3', '--max-steps', '1', '--valid-batches', '1', '--hessian-every', '0', '--device', 'cpu',
                '--out', out, '--quiet'])
    assert r.returncode == 0, r.stderr
    return out, work

def cli_in_process(args):
    "`rdarts ARGS` in this process: (exit code, stderr)."
    import contextlib, io
    from robust_darts.cli import main
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try: rc = main([str(a) for a in args])
        except SystemExit as e: rc = e.code
    return rc, err.getvalue()

def test_bad_input_table(populated):
    out, work = populated
    cases = [(args + ['--out', out], msg) for args, msg in CLI_BAD]
    for i, (text, msg) in enumerate(YAML_BAD):
        f = work/f'bad{i}.yaml'; f.write_text(text)
        cases.append((['search', '--config', f, '--dataset', 'digits', '--out', out, '--quiet'], msg))
    cases.append((['search', '--config', work/'missing.yaml', '--out', out], "config file"))
    assert len(cases) + len(API_BAD) >= 30
    before, cwd_before = snapshot(out), snapshot(work)
    for args, msg in cases:   # the `rdarts` entry point in this process (fast); a few below as real processes
        rc, err = cli_in_process(args)
        lines = err.strip().splitlines()
        assert rc == 2, (args, rc, err[-1500:])
        assert len(lines) == 1 and 'Traceback' not in err, (args, err[-1500:])
        assert msg in lines[0], (args, lines[0])
        assert snapshot(out) == before, f"{args} changed {out}"
    for args, msg in cases[::12]:
        r = rdarts(args)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [cli_in_process(args)[1].strip()], (args, r.stderr[-1500:])
    assert snapshot(out) == before and snapshot(work) == cwd_before
    from robust_darts.search import SearchConfig
    for kw, msg in API_BAD:
        with pytest.raises(RDartsError) as e: SearchConfig(out=str(out), **kw)
        assert msg in str(e.value) and '\n' not in str(e.value), (kw, str(e.value))
    assert snapshot(out) == before
