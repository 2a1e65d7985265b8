"""Hostile inputs on real runs (issue "Nothing silent"): diverging runs of every stage, config files with duplicate
keys or no mapping, broken user data and data replaced under a run. Each case runs the `rdarts` CLI as a user
would and asserts its exit code, one line without a traceback naming the file or option, files left as they were,
and (divergence) a `failed` run whose files are strict JSON. Run files,
checkpoints, the environment and processes: test_hostile_files.py."""
import json, os
import numpy as np
import pytest
from hostile import TINY, SEARCH, RSWS, EVAL, rdarts, refused, untimed

# -- divergence: every stage checks what it writes -------------------------------------------------------------------
DIVERGE = {
    'search --lr 1e5': ([*SEARCH, '--lr', '1e5'], ['non-finite', 'epoch 0/1', '--lr']),
    'search --arch-lr 1e30': ([*SEARCH, '--arch-lr', '1e30'], ['--arch-lr']),
    'search second order --lr 1e5': ([*SEARCH[:-len(TINY)], *TINY, '--order', 'second', '--lr', '1e5'], ['--lr']),
    'sdarts-rs --lr 1e5': ([*SEARCH, '--method', 'sdarts-rs', '--lr', '1e5'], ['--lr']),
    'beta-darts --lr 1e5': ([*SEARCH, '--method', 'beta-darts', '--lr', '1e5'], ['--lr']),
    'random-ws --lr 1e5': ([*RSWS, '--lr', '1e5'], ['non-finite', '--lr']),
    'evaluate --lr 1e5': ([*EVAL, '--lr', '1e5'], ['non-finite', '--lr']),
    'sdarts-adv --lr 1e5': ([*SEARCH, '--method', 'sdarts-adv', '--sdarts-steps', '1', '--lr', '1e5'], ['--lr']),
    'darts-es --lr 1e5': ([*SEARCH, '--method', 'es', '--lr', '1e5'], ['non-finite', '--lr']),
    'darts-ada --lr 1e5': ([*SEARCH, '--method', 'ada', '--lr', '1e5'], ['non-finite', '--lr']),
}

@pytest.mark.parametrize('case', list(DIVERGE))
def test_divergence_fails_the_run(case, tmp_path):
    args, names = DIVERGE[case]
    r = rdarts(*args, '--out', tmp_path)
    refused(r, *names)
    run, = [p.parent for p in tmp_path.rglob('status.json')]
    st = json.loads((run/'status.json').read_text())
    assert st['state'] == 'failed' and not (run/'result.json').exists()
    for p in run.rglob('*.json*'):   # strict JSON everywhere: nothing a strict reader rejects
        for line in p.read_text().splitlines():
            if line.strip(): json.loads(line if p.suffix == '.jsonl' else p.read_text(), parse_constant=_no_constants)

def _no_constants(c): raise AssertionError(f"non-strict JSON constant {c}")

def test_select_divergence_fails_the_selection(tmp_path):
    "The selection protocol retrains its candidates: a diverging candidate fails it; nothing is ranked."
    r = rdarts('select', 'darts_v2', 'darts_v2', '--select-epochs', '1', *EVAL[3:], '--lr', '1e5', '--out', tmp_path)
    refused(r, 'non-finite', '--lr')
    states = {p.parent.name: json.loads(p.read_text())['state'] for p in tmp_path.rglob('status.json')}
    assert 'failed' in states.values() and 'done' not in states.values(), states
    assert not list(tmp_path.rglob('ranking.json')) and not list(tmp_path.rglob('result.json'))

# -- config files -----------------------------------------------------------------------------------------------------
def test_duplicate_key_in_a_config_file(tmp_path):
    cfg = tmp_path/'c.yaml'; cfg.write_text('space: s3\nlr: 0.025\nseed: 1\nlr: 0.5\n')
    refused(rdarts('search', '--config', cfg, '--out', tmp_path), str(cfg), "'lr'", 'lines 2 and 4')

def test_duplicate_key_in_a_grid(tmp_path):
    g = tmp_path/'g.yaml'; g.write_text('name: g\nout: runs\nname: h\nexperiments: []\n')
    refused(rdarts('grid', g, '--executor', 'debug', cwd=tmp_path), str(g), "'name'", 'lines 1 and 3')

def test_duplicate_key_in_a_space_file(tmp_path):
    s = tmp_path/'s.yaml'; s.write_text('name: s\nnormal: [[skip_connect]]\nnormal: [[none]]\nreduce: [[none]]\n')
    refused(rdarts(*SEARCH, '--space', s, '--out', tmp_path), str(s), "'normal'")

@pytest.mark.parametrize('text', ['- 1\n- 2\n', 'a: [1\n', '\x00\x01binary'])
def test_config_file_not_a_mapping(text, tmp_path):
    cfg = tmp_path/'c.yaml'; cfg.write_bytes(text.encode())
    refused(rdarts('search', '--config', cfg, '--out', tmp_path), str(cfg))


# -- user data is validated when loaded -------------------------------------------------------------------------------
def _npz(path, x=None, y=None, **more):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8) if x is None else x
    y = np.arange(40) % 4 if y is None else y
    np.savez(path, x=x, y=y, **more)
    return path

def _png(path, a, mode=None):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, mode).save(path)

def _folder(root, classes=('a', 'b'), n=3, split=None):
    rng = np.random.default_rng(1)
    for c in classes:
        for i in range(n): _png(root/(split or '')/c/f"{i}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    return root

def _bad_crc(p):
    b = bytearray(p.read_bytes()); i = b.index(b'x.npy') + 200; b[i] ^= 0xFF; p.write_bytes(bytes(b)); return p

def _object_array(p):
    np.savez(p, x=np.array([np.zeros((8, 8, 1), np.uint8), 'x'], dtype=object), y=np.array([0, 1])); return p

def _npy_as_npz(p):
    np.save(p.with_suffix('.npy'), np.zeros((4, 8, 8), np.uint8)); p.with_suffix('.npy').rename(p); return p

def _truncated_png(root):
    _folder(root); p = root/'a'/'0.png'; p.write_bytes(p.read_bytes()[:60]); return root

def _linked_twice(root):
    _folder(root, split='train'); _folder(root, split='test')
    os.symlink(root/'train'/'a', root/'test'/'a'/'same')   # the training folder of class a, reached from the test split
    return root

BAD_DATA = {
    'one class': (lambda p: _npz(p/'d.npz', y=np.zeros(40, int)), ['d.npz', 'two classes']),
    'labels with a gap (0,1,2,99999)': (lambda p: _npz(p/'d.npz', y=np.array([0, 1, 2, 99999] * 10)), ['0..K-1', '99999']),
    'negative labels': (lambda p: _npz(p/'d.npz', y=np.arange(40) % 4 - 1), ['0..K-1', '-1']),
    'uint64 labels >= 2**63': (lambda p: _npz(p/'d.npz', y=(np.arange(40, dtype=np.uint64) % 2) + np.uint64(2**63)), ['0..K-1']),
    'a test label never trained on': (lambda p: _npz(p/'d.npz', x_test=np.zeros((4, 8, 8, 1), np.uint8),
                                                     y_test=np.array([0, 1, 2, 7])), ['test labels 7']),
    'N×C×H×W images': (lambda p: _npz(p/'d.npz', x=np.zeros((40, 3, 8, 8), np.uint8)), ['N×C×H×W', 'transpose(0, 2, 3, 1)']),
    'zero channels': (lambda p: _npz(p/'d.npz', x=np.zeros((40, 8, 8, 0), np.uint8)), ['empty']),
    'float images': (lambda p: _npz(p/'d.npz', x=np.zeros((40, 8, 8, 1), np.float32)), ['uint8']),
    '16-bit array': (lambda p: _npz(p/'d.npz', x=np.zeros((40, 8, 8, 1), np.uint16)), ['x // 257']),
    'object array': (lambda p: _object_array(p/'d.npz'), ['d.npz', 'cannot be read safely']),
    '.npy renamed .npz': (lambda p: _npy_as_npz(p/'d.npz'), ['one .npy array']),
    'bad CRC': (lambda p: _bad_crc(_npz(p/'d.npz')), ['d.npz', 'damaged']),
    'no x/y arrays': (lambda p: (np.savez(p/'d.npz', a=np.zeros(3)), p/'d.npz')[1], ["needs arrays 'x' and 'y'"]),
    'truncated PNG': (lambda p: _truncated_png(p/'imgs'), ['0.png', 'not a readable image']),
    'one class folder': (lambda p: _folder(p/'imgs', classes=('a',)), ['one class folder']),
    'a folder linked into the test split': (lambda p: _linked_twice(p/'imgs'), ['both a training and a test image']),
    'x and y of different lengths': (lambda p: _npz(p/'d.npz', y=np.arange(39) % 4), ['d.npz', '40', '39']),
    'fractional labels': (lambda p: _npz(p/'d.npz', y=(np.arange(40) % 4) + 0.5), ['d.npz', 'integer']),
    'test images of another size': (lambda p: _npz(p/'d.npz', x_test=np.zeros((4, 6, 6, 1), np.uint8),
                                                   y_test=np.arange(4)), ['test images', 'training images']),
}

@pytest.mark.parametrize('case', list(BAD_DATA))
def test_bad_user_data_refused(case, tmp_path):
    make, names = BAD_DATA[case]
    src = make(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file() and not p.is_symlink()}
    refused(rdarts('data', '--dataset', src), *names)
    assert {p: p.read_bytes() for p in before} == before

def test_16_bit_png_scaled_not_clipped(tmp_path):
    for c in ('a', 'b'):
        for i in range(3): _png(tmp_path/'imgs'/c/f"{i}.png", np.full((8, 8), 32768, np.uint16))   # a 16-bit PNG
    r = rdarts('data', '--dataset', tmp_path/'imgs')
    assert r.returncode == 0, r.stderr
    mean = json.loads(r.stdout)['mean'][0]
    assert abs(mean - 128 / 255) < 0.01, mean                    # 32768/65535 of full scale, not 1.0 (white)

def test_linked_folder_counted_once(tmp_path):
    root = _folder(tmp_path/'imgs', n=4)
    os.symlink(root/'a', root/'a'/'again')                         # class a's images reached twice
    r = rdarts('data', '--dataset', root)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout); assert d['n_train'] + d['n_test'] == 8, d

def test_resume_on_other_data_refused(tmp_path):
    rng = np.random.default_rng(0)
    data = _npz(tmp_path/'d.npz', x=rng.integers(0, 256, (96, 8, 8, 1), dtype=np.uint8), y=np.arange(96) % 4)
    args = [*SEARCH, '--dataset', data, '--epochs', '2', '--seed', '1', '--out', tmp_path/'runs']
    r = rdarts(*args); assert r.returncode == 0, r.stderr
    run, = [p.parent for p in (tmp_path/'runs').rglob('result.json')]
    (run/'result.json').unlink()
    _npz(data, x=np.random.default_rng(5).integers(0, 256, (96, 8, 8, 1), dtype=np.uint8), y=np.arange(96) % 4)   # replaced between runs
    before = {p: p.read_bytes() for p in run.rglob('*') if p.is_file() and p.name not in ('.lock', 'status.json', 'log.txt')}
    refused(rdarts(*args), 'other data', 'fingerprint')
    assert {p: p.read_bytes() for p in before} == before

def test_moved_data_resumes(tmp_path):
    "The same data in another place is the same run: the checkpoint's fingerprint, not the path, decides."
    rng = np.random.default_rng(0)
    (tmp_path/'a').mkdir()
    data = _npz(tmp_path/'a'/'d.npz', x=rng.integers(0, 256, (96, 8, 8, 1), dtype=np.uint8), y=np.arange(96) % 4)
    common = [*SEARCH, '--epochs', '2', '--seed', '1']
    r = rdarts(*common, '--dataset', data, '--out', tmp_path/'whole'); assert r.returncode == 0, r.stderr
    whole, = [p.parent for p in (tmp_path/'whole').rglob('result.json')]
    r = rdarts(*common, '--dataset', data, '--out', tmp_path/'runs'); assert r.returncode == 0, r.stderr
    run, = [p.parent for p in (tmp_path/'runs').rglob('result.json')]
    (run/'result.json').unlink()                     # resumable: the last epoch's derived files are rebuilt
    (tmp_path/'b').mkdir(); moved = data.rename(tmp_path/'b'/'d.npz')
    r = rdarts(*common, '--dataset', moved, '--out', tmp_path/'runs')
    assert r.returncode == 0, r.stderr
    assert json.loads((run/'result.json').read_text())['genotype'] == json.loads((whole/'result.json').read_text())['genotype']
    assert untimed(run) == untimed(whole)
    assert str(moved) in (run/'config.yaml').read_text()   # the config records where the data is now
