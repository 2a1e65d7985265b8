"""Smoke test: `jupyter lab` serves the project's notebooks on localhost (started here, queried through its
REST API with a token, stopped by PID). About 5-15 s."""
import json, os, secrets, signal, socket, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def get(url, token=None, timeout=10):
    "(status, body) of a GET; `token` goes in the Authorization header."
    req = urllib.request.Request(url, headers={'Authorization': f'token {token}'} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r: return r.status, r.read().decode()
    except urllib.error.HTTPError as e: return e.code, e.read().decode(errors='replace')

@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on a free localhost port, serving the checkout; yields (base url, token)."
    token, port = secrets.token_hex(16), free_port()
    env = dict(os.environ, OMP_NUM_THREADS='1', JUPYTER_RUNTIME_DIR=str(tmp_path/'runtime'),
               JUPYTER_CONFIG_DIR=str(tmp_path/'config'))   # no user config, no files left in the home folder
    log = open(tmp_path/'lab.log', 'w')
    p = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', '--allow-root', '--ip', '127.0.0.1', f'--port={port}',
                          f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={ROOT}', '--ServerApp.port_retries=0'],
                         stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    base = f'http://127.0.0.1:{port}'
    try:
        t0 = time.time()
        while True:
            if p.poll() is not None: pytest.fail(f"jupyter lab exited with {p.returncode}: {(tmp_path/'lab.log').read_text()[-1500:]}")
            try:
                if get(f'{base}/api/status', token, timeout=2)[0] == 200: break
            except (urllib.error.URLError, ConnectionError, socket.timeout): pass
            if time.time() - t0 > 90: pytest.fail(f"jupyter lab did not answer in 90 s: {(tmp_path/'lab.log').read_text()[-1500:]}")
            time.sleep(0.3)
        yield base, token
    finally:
        p.send_signal(signal.SIGTERM)          # stop exactly the server we started
        try: p.wait(timeout=20)
        except subprocess.TimeoutExpired: p.kill(); p.wait(timeout=10)
        log.close()

def test_jupyterlab_serves_notebooks(lab):
    base, token = lab
    code, body = get(f'{base}/api/status', token)
    assert code == 200 and 'started' in json.loads(body)
    code, body = get(f'{base}/api/contents/nbs', token)
    assert code == 200
    listing = json.loads(body)
    names = {c['name'] for c in listing['content']}
    assert listing['type'] == 'directory' and {'00_core.ipynb', '16_results.ipynb', '17_report.ipynb'} <= names
    code, body = get(f'{base}/api/contents/nbs/16_results.ipynb', token)
    nb = json.loads(body)
    assert code == 200 and nb['type'] == 'notebook' and len(nb['content']['cells']) > 10
    code, body = get(f'{base}/api/contents/reports', token)
    assert code == 200 and 'paper_figures.ipynb' in {c['name'] for c in json.loads(body)['content']}
    assert get(f'{base}/api/contents/nbs')[0] == 403                       # the token is required
    code, body = get(f'{base}/lab?token={token}')
    assert code == 200 and 'JupyterLab' in body
