"""Hostile inputs on real runs and real files (issue "Nothing silent"): damaged run files, damaged and foreign
checkpoints, the environment, reused PIDs (divergence and config files: test_hostile.py). Each case runs the `rdarts`
CLI as a user would and asserts its exit code, that it prints one line without a traceback naming the file or
option, and that every file that existed before is byte-identical afterwards -- or, for the checkpoint cases, that
the good checkpoint survives and the run resumes from it to the result of a run that was never damaged.

Broken files are made in the test from a tiny real search (S3 on the embedded digits, 8x8, 2 epochs: ~5 s)."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from hostile import SEARCH, ENV, rdarts, snapshot, refused, args_of, untimed

@pytest.fixture(scope='module')
def done(tmp_path_factory):
    "A finished tiny search: its folder (copied by each case that breaks it)."
    out = tmp_path_factory.mktemp('hostile')/'runs'
    r = rdarts(*SEARCH, '--seed', '1', '--out', out)
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip().splitlines()[-1])

@pytest.fixture
def copy(done, tmp_path):
    "A copy of the finished search with the same config (its `out` is recorded: the copy keeps it under that name)."
    def make(name='copy'):
        dest = tmp_path/name/done.relative_to(done.parents[1])
        shutil.copytree(done, dest)
        return dest
    return make

# -- run files that do not parse to what they should ------------------------------------------------------------------
@pytest.mark.parametrize('content', [b'- a\n- b\n', b'\x00\xff\xfe binary', b'space: s3\nlr: [0.1\n'])
def test_run_config_damaged(content, copy):
    d = copy(); (d/'config.yaml').write_bytes(content)
    before = snapshot(d.parents[1])
    refused(rdarts(*args_of(d)), 'config.yaml')
    assert snapshot(d.parents[1]) == before

@pytest.mark.parametrize('content', [b'[1, 2]', b'\x00\xff', b'{"kind": 3}'])
def test_run_identity_damaged(content, copy):
    d = copy(); (d/'run.json').write_bytes(content)
    before = snapshot(d.parents[1])
    r = rdarts('collect', d.parents[1], '-o', d.parents[2]/'collected')   # a reader of the folder
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr
    assert snapshot(d.parents[1]) == before

@pytest.mark.parametrize('content', [b'[1, 2]', b'\x00\xff', b''])
def test_status_damaged(content, copy):
    d = copy(); (d/'status.json').write_bytes(content)
    r = rdarts('status', d.parents[1])
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr

# -- checkpoints: verified before they are trusted, nothing deleted before its successor -----------------------------
def _ckpts(d): return sorted((d/'checkpoints').glob('ckpt_*.pt'))

def _resumable(copy):
    "A copy of the finished search without its result.json: re-running resumes from the final checkpoint and finishes."
    d = copy(); (d/'result.json').unlink()
    return d

def _other_checkpoint(tmp_path)->Path:
    "The newest checkpoint of another run (another seed and length)."
    r = rdarts(*SEARCH, '--seed', '2', '--epochs', '1', '--out', tmp_path/'other'); assert r.returncode == 0, r.stderr
    return sorted((tmp_path/'other').rglob('ckpt_*.pt'))[-1]

@pytest.mark.parametrize('damage', ['flip', 'truncate', 'zero', 'pickle', 'empty'])
def test_damaged_newest_checkpoint_falls_back(damage, copy, done):
    d = _resumable(copy)
    good, = _ckpts(d)
    newest = d/'checkpoints'/'ckpt_000099_epoch_001.pt'   # newer than the good one
    b = bytearray(good.read_bytes())
    if damage == 'flip': b[len(b) // 2] ^= 0xFF            # torch.load alone would read a wrong number
    elif damage == 'truncate': b = b[:len(b) // 2]
    elif damage == 'zero': b = bytearray(len(b))
    elif damage == 'pickle': b = bytearray(b'\x80\x04K\x01.')
    else: b = bytearray()
    newest.write_bytes(bytes(b))
    r = rdarts(*args_of(d))
    assert r.returncode == 0, r.stderr
    assert good.exists() and newest.with_name(newest.name + '.damaged').read_bytes() == bytes(b)   # nothing lost
    assert 'set aside as' in (d/'log.txt').read_text()
    # the result of the run that was never damaged (same config, code and machine)
    assert json.loads((d/'result.json').read_text())['genotype'] == json.loads((done/'result.json').read_text())['genotype']
    assert (d/'metrics.jsonl').read_text() == (done/'metrics.jsonl').read_text()

def test_every_checkpoint_damaged_refuses(copy):
    d = _resumable(copy)
    for p in _ckpts(d): p.write_bytes(p.read_bytes()[:100])
    before = snapshot(d.parents[1])
    refused(rdarts(*args_of(d)), 'no checkpoint', '--fresh')
    assert snapshot(d.parents[1]) == before

def test_foreign_newest_checkpoint_refused(copy, tmp_path):
    d = _resumable(copy)
    shutil.copy(_other_checkpoint(tmp_path), d/'checkpoints'/'ckpt_000099_epoch_001.pt')
    before = snapshot(d.parents[1])
    refused(rdarts(*args_of(d)), 'ckpt_000099_epoch_001.pt', 'another config')
    assert snapshot(d.parents[1]) == before                   # nothing pruned, nothing rewritten

def test_foreign_checkpoint_in_a_finished_run_refused(copy, tmp_path):
    d = copy()
    shutil.copy(_other_checkpoint(tmp_path), d/'checkpoints'/'ckpt_000099_epoch_001.pt')
    (d/'metrics.jsonl').write_text('')   # would be rewritten from the newest checkpoint: never from a foreign one
    before = snapshot(d.parents[1])
    refused(rdarts(*args_of(d)), 'another config')
    assert snapshot(d.parents[1]) == before

# -- the environment --------------------------------------------------------------------------------------------------
def test_out_is_a_file(tmp_path):
    f = tmp_path/'file'; f.write_text('keep me')
    refused(rdarts(*SEARCH, '--out', f), str(f))
    assert f.read_text() == 'keep me'

def test_out_below_a_file(tmp_path):
    f = tmp_path/'file'; f.write_text('keep me')
    refused(rdarts(*SEARCH, '--out', f/'sub'), str(f))
    assert f.read_text() == 'keep me'

def test_disk_full_then_resumed(done, tmp_path):
    "Writes fail past a size (RLIMIT_FSIZE: EFBIG, as a full disk fails them): one line, no half-written file left;"
    " with room again the same command runs to the result of a run that never failed."
    import resource
    def small(): resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))   # checkpoints are larger; text is not
    code = 'import sys; from robust_darts.cli import main; sys.exit(main(sys.argv[1:]))'
    args = [*SEARCH, '--seed', '1', '--out', str(tmp_path/'runs')]
    r = subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True, env=ENV, preexec_fn=small,
                       timeout=300)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode != 0 and 'Traceback' not in r.stderr and len(lines) == 1, r.stderr[-2000:]
    assert 'checkpoints' in lines[0] and 'too large' in lines[0].lower(), lines[0]
    run, = [p.parent for p in (tmp_path/'runs').rglob('config.yaml')]
    assert not [p for p in run.rglob('*') if p.name.endswith('.tmp')]         # nothing half-written left
    assert json.loads((run/'status.json').read_text())['state'] == 'failed'
    r = rdarts(*args); assert r.returncode == 0, r.stderr                     # room again: the same command
    assert json.loads((run/'result.json').read_text())['genotype'] == json.loads((done/'result.json').read_text())['genotype']
    assert untimed(run) == untimed(done)

def test_pt_select_divergence_fails_the_run(copy):
    "DARTS-PT tunes at most at the search's learning rate (--lr-factor <= 1): a supernet whose weights overflow is"
    " what makes it diverge. It fails the selection run with one line; the source run is left as it was."
    import torch
    src = copy()
    for ck in (src/'checkpoints').glob('ckpt_*.pt'):
        st = torch.load(ck, weights_only=True)
        k = next(k for k, v in st['model'].items() if k.endswith('weight') and v.dim() == 4)   # a convolution
        st['model'][k] = st['model'][k] * 1e38; torch.save(st, ck)
    before = snapshot(src)
    r = rdarts('pt-select', '--source', src, '--proj-intv', '1', '--max-steps', '2', '--valid-batches', '1',
               '--score-batches', '1', '--lr-factor', '1', '--seed', '0', '--device', 'cpu', '--quiet',
               '--out', src.parents[1]/'pt')
    refused(r, 'non-finite')
    st, = [json.loads(p.read_text()) for p in (src.parents[1]/'pt').rglob('status.json')]
    assert st['state'] == 'failed'
    assert snapshot(src) == before

def test_evaluation_config_of_an_older_version_resumes(tmp_path):
    "`cutout: true` (how evaluation wrote it before cutout took auto/on/off) reads as `on`: the run resumes."
    import torch, yaml
    from hostile import EVAL
    args = [*EVAL, '--epochs', '2', '--out', tmp_path]
    r = rdarts(*args); assert r.returncode == 0, r.stderr
    run, = [p.parent for p in tmp_path.rglob('result.json')]
    want = (run/'metrics.jsonl').read_text()
    (run/'result.json').unlink()
    cfg = yaml.safe_load((run/'config.yaml').read_text()); assert cfg['cutout'] == 'on'
    cfg['cutout'] = True; (run/'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    for ck in (run/'checkpoints').glob('ckpt_*.pt'):
        st = torch.load(ck, weights_only=True); st['config']['cutout'] = True; torch.save(st, ck)
    r = rdarts(*args); assert r.returncode == 0, r.stderr
    assert (run/'metrics.jsonl').read_text() == want and (run/'result.json').exists()

# -- processes are identified, not guessed ---------------------------------------------------------------------------
GRID = """name: pidreuse
out: runs
resources: {cpus: 1, time_min: 10}
set: {dataset: digits, space: s3, epochs: 100000, max_steps: 1, batch_size: 16, init_channels: 4, layers: 3,
      valid_batches: 1, hessian_every: 0, image_size: 8, device: cpu}
experiments:
  - {name: long, kind: search, set: {method: darts, order: first}}
"""

def test_cancel_and_status_after_a_killed_grid_whose_pid_was_reused(tmp_path):
    import signal, time
    g = tmp_path/'g.yaml'; g.write_text(GRID)
    code = 'import sys; from robust_darts.cli import main; sys.exit(main(sys.argv[1:]))'
    grid = subprocess.Popen([sys.executable, '-c', code, 'grid', str(g), '--executor', 'local'], cwd=tmp_path, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    stranger = None
    try:
        t0 = time.time()
        while not list((tmp_path/'runs').rglob('metrics.jsonl')):
            assert time.time() - t0 < 240 and grid.poll() is None, 'the grid did not start its run'
            time.sleep(1)
        r = rdarts('status', tmp_path/'runs'); assert 'running' in r.stdout, r.stdout + r.stderr
        os.killpg(grid.pid, signal.SIGKILL); grid.wait()           # the grid and its job die without a word
        # the notebook kernel runs in its own session: it notices its parent is gone (ipykernel polls each second)
        # and exits, which releases the run's lock; it must not go on training alone
        from robust_darts.runs import RunLock
        folder, = {p.parent for p in (tmp_path/'runs').rglob('metrics.jsonl')}
        t0 = time.time()
        while RunLock(folder).held():
            assert time.time() - t0 < 60, 'the run goes on after its grid was killed'
            time.sleep(0.5)
        # its PID now belongs to another process: a stranger takes it over in the records (PIDs are reused)
        stranger = subprocess.Popen(['sleep', '120'])
        for p in (tmp_path/'runs'/'_jobs').rglob('*.json'):
            d = json.loads(p.read_text())
            if d.get('pid') == grid.pid or 'pid' in d: d['pid'] = stranger.pid; p.write_text(json.dumps(d))
        lock, = (tmp_path/'runs').rglob('.lock')
        h = json.loads(lock.read_text()); h['pid'] = stranger.pid; lock.write_text(json.dumps(h))
        r = rdarts('status', tmp_path/'runs')
        assert r.returncode == 0 and 'running' not in r.stdout and 'interrupted' in r.stdout, r.stdout + r.stderr
        r = rdarts('cancel', g, cwd=tmp_path)
        assert 'Traceback' not in r.stderr, r.stderr
        time.sleep(0.5)
        assert stranger.poll() is None, 'cancel signalled a process that is not the recorded grid'
    finally:
        if grid.poll() is None: os.killpg(grid.pid, signal.SIGKILL)
        if stranger is not None: stranger.kill()
