"""JupyterLab for real: `jupyter lab` serves the project's notebooks on localhost (started here, queried through
its REST API with a token, stopped by PID); a kernel opened through the server runs the Usage cells of the
search notebook (a tiny search on the digits) and the run explorer's; headless Chromium opens the lab's UI on a
notebook. About 60 s."""
import json, os, re, secrets, signal, socket, subprocess, sys, time, urllib.error, urllib.request
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


def usage_cells(nb:dict)->list:
    "The code cells of a notebook's `## Usage` section (up to its next `## ` heading)."
    out, inside = [], False
    for c in nb['cells']:
        text = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if c['cell_type'] == 'markdown' and text.startswith('## '): inside = text.startswith('## Usage')
        elif inside and c['cell_type'] == 'code': out.append(text)
    return out

def execute_in_kernel(base, token, cells, timeout=300)->list:
    """Start a kernel through the server's REST API, run `cells` over its websocket (the protocol JupyterLab
    speaks), shut it down; returns per cell its iopub outputs (stream, display_data, execute_result, error)."""
    import asyncio, uuid
    from tornado.websocket import websocket_connect
    from tornado.httpclient import HTTPRequest
    req = urllib.request.Request(f'{base}/api/kernels', data=b'{"name": "python3"}', method='POST',
                                 headers={'Authorization': f'token {token}', 'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=30) as r: kid = json.loads(r.read())['id']
    async def run():
        ws = await websocket_connect(HTTPRequest(f"{base.replace('http', 'ws')}/api/kernels/{kid}/channels",
                                                 headers={'Authorization': f'token {token}'}))
        session, results = uuid.uuid4().hex, []
        for code in cells:
            mid = uuid.uuid4().hex
            ws.write_message(json.dumps({'header': {'msg_id': mid, 'username': 'test', 'session': session,
                                                    'msg_type': 'execute_request', 'version': '5.3'},
                                         'parent_header': {}, 'metadata': {}, 'channel': 'shell', 'buffers': [],
                                         'content': {'code': code, 'silent': False, 'store_history': True,
                                                     'user_expressions': {}, 'allow_stdin': False, 'stop_on_error': True}}))
            outs, t0 = [], time.time()
            while True:
                msg = await asyncio.wait_for(ws.read_message(), timeout=max(1, timeout - (time.time() - t0)))
                assert msg is not None, "the kernel's websocket closed"
                m = json.loads(msg)
                if m.get('parent_header', {}).get('msg_id') != mid or m.get('channel') != 'iopub': continue
                t = m['header']['msg_type']
                if t in ('stream', 'display_data', 'execute_result', 'error'): outs.append({'type': t, **m['content']})
                if t == 'status' and m['content']['execution_state'] == 'idle': break
            results.append(outs)
            if any(o['type'] == 'error' for o in outs): break
        ws.close()
        return results
    try: return asyncio.run(run())
    finally:
        req = urllib.request.Request(f'{base}/api/kernels/{kid}', method='DELETE', headers={'Authorization': f'token {token}'})
        urllib.request.urlopen(req, timeout=30).close()

def _nb(base, token, name)->dict:
    code, body = get(f'{base}/api/contents/nbs/{name}', token); assert code == 200, body[:300]
    return json.loads(body)['content']

def _errors(results): return [f"{o['ename']}: {o['evalue']}" for outs in results for o in outs if o['type'] == 'error']

def test_usage_cells_run_in_a_jupyterlab_kernel(lab):
    import base64, io, math, re
    import numpy as np
    from PIL import Image
    base, token = lab
    search = usage_cells(_nb(base, token, '10_search.ipynb'))
    assert search, "10_search has Usage code cells"
    res = execute_in_kernel(base, token, search)
    assert not _errors(res), _errors(res)
    lines = [l for outs in res for o in outs if o['type'] == 'stream' for l in o['text'].splitlines()]
    rows = [l for l in lines if re.match(r'\d+ valid error', l)]
    assert [r.split()[0] for r in rows] == ['0', '1', '2'], lines                  # one line per epoch of the tiny search
    vals = [float(x) for r in rows for x in re.findall(r'(?:error|λ_max) ([-\d.e]+)', r)]
    assert len(vals) == 6 and all(math.isfinite(v) for v in vals) and all(0 <= v <= 100 for v in vals[::2]), rows
    ex = execute_in_kernel(base, token, usage_cells(_nb(base, token, '16e_explorer.ipynb')))
    assert not _errors(ex), _errors(ex)
    shown = [o['data'] for outs in ex for o in outs if o['type'] in ('execute_result', 'display_data')]
    assert any('application/vnd.jupyter.widget-view+json' in d for d in shown), [list(d) for d in shown]   # the widgets
    pngs = [np.asarray(Image.open(io.BytesIO(base64.b64decode(d['image/png'])))) for d in shown if 'image/png' in d]
    assert len(pngs) >= 2, [list(d) for d in shown]                              # the explorer's figure, then epoch 1's
    for a in pngs: assert a.shape[0] > 300 and a.shape[1] > 300 and a[..., :3].std() > 10   # a figure, not blank

def test_lab_ui_in_chromium(lab, tmp_path):
    from browser import CHROMIUM, NO_CHROMIUM, chromium
    if CHROMIUM is None: pytest.skip(NO_CHROMIUM)
    import numpy as np
    from PIL import Image
    base, token = lab
    url = f'{base}/lab/tree/nbs/05b_events.ipynb?token={token}'
    shot = tmp_path/'lab.png'
    r = chromium('--virtual-time-budget=25000', '--window-size=1400,900', f'--screenshot={shot}', url,
                 user_dir=tmp_path/'chrome', timeout=180)
    assert shot.exists(), r.stderr[-1000:]
    a = np.asarray(Image.open(shot).convert('L'), float)
    assert a.std() > 10 and (a < 200).mean() > 0.01, (a.std(), (a < 200).mean())   # not a blank page
    dom = chromium('--virtual-time-budget=25000', '--window-size=1400,900', '--dump-dom', url,
                   user_dir=tmp_path/'chrome', timeout=180).stdout
    (tmp_path/'lab.html').write_text(dom)
    heads = re.findall(r'<h1[^>]*>(.*?)</h1>', dom, re.S)
    assert 'jp-Notebook' in dom and any(re.sub(r'<[^>]+>', '', h).strip().startswith('events') for h in heads), heads
