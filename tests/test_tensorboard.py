"""TensorBoard events of real tiny runs, read back by TensorBoard's own reader and served by a real
`tensorboard --logdir`: every scalar of metrics.jsonl at every step, images, text and hparams; rebuilt after
deletion; nothing written with --no-tensorboard. (Kill-and-resume: test_lifecycle.same_run checks the events.)"""
import json, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from hostile import TINY, rdarts
from events_check import assert_events_match
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

SEARCH = ['search', '--space', 's3', '--epochs', '3', '--order', 'first', '--valid-batches', '1', '--hessian-every', '2',
          '--hessian-tol', '0.1', '--seed', '1', *TINY]

def _run(*args):
    r = rdarts(*args); assert r.returncode == 0, r.stderr[-2000:]
    return Path(r.stdout.strip().splitlines()[-1])

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp('tb')
    s = _run(*SEARCH, '--out', out)
    pt = _run('pt-select', '--source', s, '--proj-intv', '1', '--max-steps', '1', '--valid-batches', '1',
              '--score-batches', '1', '--seed', '0', '--device', 'cpu', '--quiet', '--out', out)
    ev = _run('evaluate', '--genotype', s, '--epochs', '2', '--test-batches', '1', '--seed', '0', *TINY, '--out', out)
    return out, s, pt, ev

def test_events_equal_metrics(runs):
    out, s, pt, ev = runs
    for d in (s, pt, ev): assert_events_match(d)
    acc = EventAccumulator(str(s/'tb'), size_guidance={'images': 0, 'tensors': 0}); acc.Reload()
    rows = [json.loads(l) for l in (s/'metrics.jsonl').read_text().splitlines()]
    eig_epochs = [r['epoch'] for r in rows if r['eig_max'] is not None]
    assert eig_epochs == [0, 2], eig_epochs
    assert [e.step for e in acc.Images('alpha/normal')] == [0, 1, 2]
    assert [e.step for e in acc.Images('cells')] == eig_epochs + [2]   # eigenvalue epochs and the end
    img = acc.Images('cells')[-1]
    assert img.width > 100 and img.height > 100 and img.encoded_image_string[:4] == b'\x89PNG'
    text = acc.Tensors('genotype')[-1].tensor_proto.string_val[0].decode()
    assert text == json.loads((s/'result.json').read_text())['genotype']
    from tensorboard.plugins.hparams import plugin_data_pb2
    ssi = acc.PluginTagToContent('hparams')['_hparams_/session_start_info']
    hp = plugin_data_pb2.HParamsPluginData.FromString(ssi).session_start_info.hparams
    assert hp['space'].string_value == 's3' and hp['seed'].number_value == 1 and 'device' not in hp
    assert acc.Scalars('final/valid_error')[0].value == pytest.approx(json.loads((s/'result.json').read_text())['valid_error'])
    # the evaluation's test error under error/, DARTS-PT's epoch -1 (before its first decision) kept as a step
    assert 'error/test_error' in EventAccumulator(str(ev/'tb')).Reload().Tags()['scalars']
    assert EventAccumulator(str(pt/'tb')).Reload().Scalars('error/valid_error')[0].step == -1

def test_events_rebuilt_in_a_finished_run(runs, tmp_path):
    out, s, *_ = runs
    copy = tmp_path/s.relative_to(out); shutil.copytree(s, copy)
    before = {p.name: p.read_bytes() for p in (copy/'tb').iterdir()}
    shutil.rmtree(copy/'tb')
    r = rdarts(*SEARCH, '--out', tmp_path); assert r.returncode == 0, r.stderr
    assert_events_match(copy)
    assert sorted(p.name for p in (copy/'tb').iterdir()) == sorted(before)   # same rows, same file names

def test_no_tensorboard_writes_no_event_file(tmp_path):
    s = _run(*SEARCH, '--epochs', '1', '--no-tensorboard', '--out', tmp_path)
    pt = _run('pt-select', '--source', s, '--proj-intv', '1', '--max-steps', '1', '--valid-batches', '1',
              '--score-batches', '1', '--device', 'cpu', '--quiet', '--no-tensorboard', '--out', tmp_path)
    rw = _run('random-ws', '--space', 's3', '--epochs', '1', '--n-samples', '2', '--n-score-batches', '1', '--top-k', '1',
              '--valid-batches', '1', *TINY, '--no-tensorboard', '--out', tmp_path)
    assert (s/'result.json').exists() and (pt/'result.json').exists() and (rw/'result.json').exists()
    assert not list(tmp_path.rglob('tb')) and not list(tmp_path.rglob('events.out.tfevents*'))

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r: return json.loads(r.read())

def test_tensorboard_serves_the_runs(runs):
    out, s, pt, ev = runs
    port = _free_port()
    p = subprocess.Popen([sys.executable, '-m', 'tensorboard.main', '--logdir', str(out), '--port', str(port),
                          '--host', '127.0.0.1', '--reload_interval', '1'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        want = {str((d/'tb').relative_to(out)) for d in (s, pt, ev)}
        t0, got = time.time(), set()
        while time.time() - t0 < 90 and not want <= got:
            time.sleep(1)
            try: got = set(_get(f"http://127.0.0.1:{port}/data/runs"))
            except OSError: pass
        assert want <= got, (want, got)
        tags = _get(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
        run = str((s/'tb').relative_to(out))
        assert {'error/valid_error', 'curvature/eig_max', 'skip/normal', 'loss/train_loss'} <= set(tags[run]), tags[run]
    finally:
        p.terminate(); p.wait(timeout=30)
