"""The wheel works on its own: `pip wheel .` of a clean copy of the checkout, installed (no deps) into a fresh venv that
sees the system's torch etc. (--system-site-packages) but imports robust_darts from the wheel; then, from an empty
folder, `rdarts grid --executor debug` runs a one-step search through the packaged run template and `rdarts report`
renders it with the packaged report notebooks. About 1.5-2 min on 2 CPU cores (venv, wheel, three kernels)."""
import os, shutil, site, subprocess, sys, venv
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

GRID = """name: wheel
out: runs
resources: {cpus: 1, time_min: 10}
set: {dataset: digits, space: s3, epochs: 1, max_steps: 1, batch_size: 16, init_channels: 4, layers: 3,
      valid_batches: 1, hessian_every: 0, device: cpu}
experiments:
  - {name: darts, kind: search, set: {method: darts, order: first}}
"""

def clean_copy(dest:Path)->Path:
    "The checkout's files as a fresh clone would have them, plus uncommitted work (tracked and untracked, not ignored)."
    r = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT, capture_output=True)
    if r.returncode: pytest.skip(f"not a git checkout ({r.stderr.decode().strip()[:100]})")
    for f in filter(None, r.stdout.decode().split('\0')):
        src = ROOT/f
        if src.is_file():
            (dest/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, dest/f)
    return dest

def run(cmd, cwd, env, timeout=600):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    r.out = r.stdout + r.stderr
    return r

@pytest.mark.slow
def test_wheel_ships_templates_and_reports(tmp_path):
    src = clean_copy(tmp_path/'src')
    # templates and reports are mapped into the wheel at build time: no copies live in the checkout
    assert not (src/'robust_darts'/'_templates').exists() and not (src/'robust_darts'/'_reports').exists()
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'RDARTS_REPORTS', 'VIRTUAL_ENV')}
    env['OMP_NUM_THREADS'] = '1'
    r = run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', tmp_path/'dist', src], tmp_path, env)
    assert r.returncode == 0, r.out
    whl, = (tmp_path/'dist').glob('robust_darts-*.whl')
    import zipfile
    names = set(zipfile.ZipFile(whl).namelist())
    for nb in (ROOT/'nbs'/'runs').glob('*.ipynb'): assert f'robust_darts/_templates/{nb.name}' in names, names
    for nb in (ROOT/'reports').glob('*.ipynb'): assert f'robust_darts/_reports/{nb.name}' in names, names

    v = tmp_path/'venv'
    venv.create(v, system_site_packages=True, with_pip=True)
    py, bindir = v/'bin'/'python', v/'bin'
    if sys.prefix != sys.base_prefix:
        # run from a virtual environment: a --system-site-packages venv sees the *base* interpreter's packages, not
        # this one's (submitit etc. live here); a .pth file appends this interpreter's site-packages to its path
        lib = run([py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], tmp_path, env).stdout.strip()
        Path(lib, '_outer_site.pth').write_text(''.join(f"{d}\n" for d in site.getsitepackages()))
    r, ours = run([py, '-c', 'import sys; print("\\n".join(sys.path))'], tmp_path, env), [d for d in site.getsitepackages() if Path(d).is_dir()]
    assert all(d in r.stdout.splitlines() for d in ours), r.out   # the test's own packages are seen
    env['PATH'] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"   # `python` of a kernel spec is the venv's
    # the data files of the system's packages (nbconvert's HTML templates) live under the system prefix, which a
    # --system-site-packages venv does not search; a full `pip install` would put them under the venv's prefix
    # (from inside a venv, they live under the base interpreter's prefix: both are named)
    shares = dict.fromkeys(str(Path(p)/'share'/'jupyter') for p in (sys.prefix, sys.base_prefix))
    env['JUPYTER_PATH'] = os.pathsep.join(filter(None, [*shares, env.get('JUPYTER_PATH')]))
    r = run([py, '-m', 'pip', 'install', '-q', '--no-deps', '--no-index', whl], tmp_path, env)
    assert r.returncode == 0, r.out
    empty = tmp_path/'work'; empty.mkdir()
    r = run([py, '-c', 'import robust_darts, robust_darts.grid as g; print(robust_darts.__file__); print(g.templates_dir())'], empty, env)
    assert r.returncode == 0, r.out
    mod, tdir = r.stdout.split()
    assert Path(mod).is_relative_to(v) and Path(tdir) == Path(mod).parent/'_templates', r.out  # the wheel, not the editable checkout

    cfg = tmp_path/'cfg'; cfg.mkdir(); (cfg/'wheel.yaml').write_text(GRID)
    r = run([bindir/'rdarts', 'grid', cfg/'wheel.yaml', '--executor', 'debug'], empty, env)
    assert r.returncode == 0 and '1 runs: 1 done' in r.out, r.out
    assert 'without encryption' not in r.out, r.out   # our kernels get CurveZMQ keys
    run_dir, = [p.parent for p in (empty/'runs').glob('*/*/result.json')]
    assert (run_dir/'search.ipynb').exists() and (run_dir/'genotype.txt').exists()
    import json
    sub = json.loads(next((empty/'runs'/'_jobs').glob('*/*/submitted.json')).read_text())
    assert Path(sub['template']).is_relative_to(v), sub['template']  # the packaged template ran

    r = run([bindir/'rdarts', 'report', 'runs', '--out', 'html/'], empty, env)
    assert r.returncode == 0, r.out
    assert 'without encryption' not in r.out, r.out
    html = empty/'html'
    assert (html/'index.html').exists()
    for name in ('search_report', 'paper_figures'):
        assert (html/f'{name}.html').stat().st_size > 10_000 and (html/f'{name}.ipynb').exists(), name
    assert sorted(p.name for p in empty.iterdir()) == ['html', 'runs']   # nothing else written into the working folder
