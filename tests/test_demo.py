"""`rdarts demo`, the README's main job, run at reduced size (2 epochs of 3 steps, 2 validation batches; its report is the `rdarts report` of tests/test_reports.py)."""
import json, os, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def test_demo_reduced(tmp_path):
    cmd = [shutil.which('rdarts')] if shutil.which('rdarts') else [sys.executable, '-c', 'import sys; from robust_darts.cli import main; sys.exit(main())']
    out = tmp_path/'demo'
    t0 = time.time()
    # --no-report: `rdarts report` on run folders is built and checked in tests/test_reports.py (two kernels cost ~1 min)
    r = subprocess.run(cmd + ['demo', '--out', str(out), '--epochs', '2', '--max-steps', '3', '--valid-batches', '2', '--quiet', '--no-report'],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode == 0, r.stderr[-2000:]
    run = next(out.rglob('result.json')).parent
    res = json.loads((run/'result.json').read_text())
    recs = [json.loads(l) for l in open(run/'metrics.jsonl')]
    assert [x['epoch'] for x in recs] == [0, 1] and res['epochs_run'] == 2
    assert all(x['eig_max'] is not None and x['discrete_valid_error'] is not None for x in recs)   # λ_max and the discretised error every epoch
    assert (run/'genotype.txt').read_text().startswith('Genotype(')
    # what it prints is what the files say
    assert f"{res['valid_error']:.2f}%" in r.stdout and str(run) in r.stdout
    print(f"rdarts demo (2 epochs x 3 steps, no report): {time.time() - t0:.0f} s")
