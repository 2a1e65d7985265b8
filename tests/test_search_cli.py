"""`rdarts search` as users run it: SIGKILL mid-epoch and resume bit-identically (bad input: tests/test_lifecycle.py)."""
import os, re, signal, subprocess, sys, time, json
from pathlib import Path
import torch
from robust_darts.runs import checkpoints, latest_checkpoint, load_checkpoint

TINY = ['--space', 's3', '--dataset', 'digits', '--epochs', '4', '--batch-size', '32', '--init-channels', '4',
        '--layers', '3', '--max-steps', '6', '--valid-batches', '2', '--hessian-every', '2', '--drop-path-prob', '0.2',
        '--seed', '3', '--quiet']
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

import shutil
# the console script installed next to this interpreter (`pip install -e .`), else the one on PATH
RDARTS = str(Path(sys.executable).parent/'rdarts') if (Path(sys.executable).parent/'rdarts').exists() else shutil.which('rdarts')

def rdarts(*args, **kw):
    return subprocess.run([RDARTS, *args], env=ENV, capture_output=True, text=True, **kw)

def test_sigkill_mid_epoch_resumes_bit_identically(tmp_path):
    ref = rdarts('search', *TINY, '--out', str(tmp_path), '--name', 'ref')
    assert ref.returncode == 0, ref.stderr
    run = tmp_path/'s3_digits'/'killed'
    p = subprocess.Popen([RDARTS, 'search', *TINY, '--out', str(tmp_path), '--name', 'killed'],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not any(e == 1 for _, e, _ in checkpoints(run/'checkpoints')):   # wait for epoch 1's checkpoint ...
        assert p.poll() is None and time.time() - t0 < 300, "search ended or hung before epoch 1"
        time.sleep(0.05)
    time.sleep(0.5)                                              # ... and kill it inside epoch 2
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (run/'result.json').exists()
    res = rdarts('search', *[a for a in TINY if a != '--quiet'], '--out', str(tmp_path), '--name', 'killed')   # with progress
    assert res.returncode == 0, res.stderr
    a = load_checkpoint(latest_checkpoint(tmp_path/'s3_digits'/'ref'/'checkpoints'))
    b = load_checkpoint(latest_checkpoint(run/'checkpoints'))
    assert a['epoch'] == b['epoch'] == 3
    for k in a['model']: assert torch.equal(a['model'][k], b['model'][k]), k
    assert (tmp_path/'s3_digits'/'ref'/'genotype.txt').read_text() == (run/'genotype.txt').read_text()
    ma = [json.loads(l) for l in (tmp_path/'s3_digits'/'ref'/'metrics.jsonl').read_text().splitlines()]
    mb = [json.loads(l) for l in (run/'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in mb] == [0, 1, 2, 3]
    assert [r['eig_max'] for r in ma] == [r['eig_max'] for r in mb]
    assert [r['valid_loss'] for r in ma] == [r['valid_loss'] for r in mb]
    # what the person watching saw: one epoch numbering (0-based, like metrics.jsonl), a bar for every phase,
    # and the eigenvalue's bar counting the products the metrics record
    err = res.stderr.replace('\r', '\n')
    assert 'after epoch 1/3 (ckpt_' in err                                   # resumed after epoch 1 of 0..3
    for e in (2, 3):
        for phase in ('train', 'valid + discretised', 'λ_max'): assert f'epoch {e}/3 {phase}' in err, (e, phase)
        hvps = max(int(n) for n in re.findall(rf'epoch {e}/3 λ_max: (\d+)HVP', err))
        assert hvps == mb[e]['eig_hvps'] > 0
        assert re.search(rf'epoch {e}/3 lr [\d.]+ .*valid err {mb[e]["valid_error"]:.2f} .*discretised {mb[e]["discrete_valid_error"]:.2f}', err)
    assert 'epoch 0/3' not in err and 'epoch 4/' not in err                  # nothing redone, nothing past the end
