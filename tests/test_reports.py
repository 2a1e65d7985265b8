"""Report notebooks end to end: `rdarts report` (papermill + nbconvert) on a run-folder fixture and on the
published logs, then the HTML opened in a real headless browser (Debian's chromium): every figure must
decode and be visible, and a screenshot must not be blank.

Needs: chromium (`apt-get install -y chromium`; browser tests skip with that message without it), the
published logs for the logs tests (skip with a message when `default_logs_dir()` is None).
About 1.5-2.5 min on 2 cores (each report notebook starts a kernel that imports torch).
"""
import html, json, os, re, shutil, subprocess, sys
from html.parser import HTMLParser
from pathlib import Path
import numpy as np
import pytest
from robust_darts.core import default_logs_dir
from robust_darts.plots import synthetic_run_folder
from robust_darts.report import REPORTS, build_report

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next((p for p in map(shutil.which, ('chromium', 'chromium-browser', 'google-chrome')) if p), None)
ENV = dict(os.environ, OMP_NUM_THREADS='1')


# ---------------------------------------------------------------------------------------------------------
# helpers: HTML structure, a headless browser
# ---------------------------------------------------------------------------------------------------------
class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(); self.imgs, self.scripts = [], []
    def handle_starttag(self, tag, attrs):
        if tag == 'img': self.imgs.append(dict(attrs))
        if tag == 'script': self.scripts.append(dict(attrs))

def tags(text):
    p = _Tags(); p.feed(text); return p

def chromium(*args, user_dir, timeout=120):
    "Run headless chromium with the flags that keep it offline and quiet; returns the CompletedProcess."
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', f'--user-data-dir={user_dir}']
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout)

# runs at the page's load event and writes what the browser made of every <img> into the DOM
_PROBE = """<script>
window.addEventListener('load', function () {
  var out = [];
  document.querySelectorAll('img').forEach(function (im) {
    var r = im.getBoundingClientRect(), cs = getComputedStyle(im);
    out.push({complete: im.complete, naturalWidth: im.naturalWidth, naturalHeight: im.naturalHeight,
              width: r.width, height: r.height, left: r.left, docWidth: document.documentElement.scrollWidth,
              visible: cs.display !== 'none' && cs.visibility !== 'hidden' && parseFloat(cs.opacity) > 0});
  });
  var pre = document.createElement('pre'); pre.id = 'rdarts-probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

def browser_images(html_path, tmp):
    "What headless chromium reports for each <img> of the page (decoded size, rendered size, visibility)."
    page = tmp/f"probe_{html_path.stem}.html"
    page.write_text(html_path.read_text().replace('</body>', _PROBE + '</body>'))
    r = chromium('--virtual-time-budget=10000', '--dump-dom', page.as_uri(), user_dir=tmp/'chrome-profile')
    m = re.search(r'<pre id="rdarts-probe">(.*?)</pre>', r.stdout, re.S)
    assert m, f"chromium did not run the probe (rc {r.returncode}): {r.stderr[-800:]}"
    return json.loads(html.unescape(m.group(1)))

def screenshot_stats(html_path, tmp, size=(1280, 2400)):
    "Screenshot the top of the page; returns (std of grey values, fraction of non-white pixels)."
    from PIL import Image
    shot = tmp/f"shot_{html_path.stem}.png"
    r = chromium('--hide-scrollbars', f'--window-size={size[0]},{size[1]}', f'--screenshot={shot}', '--virtual-time-budget=10000',
                 html_path.as_uri(), user_dir=tmp/'chrome-profile')
    assert shot.exists(), f"no screenshot (rc {r.returncode}): {r.stderr[-800:]}"
    a = np.asarray(Image.open(shot).convert('L'), dtype=float)
    assert a.shape == (size[1], size[0])
    return float(a.std()), float((a < 245).mean())

def check_html(h: Path, min_figures: int):
    "Offline, self-contained, code-free HTML whose figures are embedded PNGs with captions."
    text = h.read_text()
    t = tags(text)
    assert [s['src'] for s in t.scripts if 'src' in s] == [], "the page loads scripts from elsewhere"
    assert 'mathjax' not in text.lower()
    imgs = [i for i in t.imgs if i.get('src', '').startswith('data:image/png;base64,')]
    assert len(imgs) == len(t.imgs) and len(imgs) >= min_figures, (len(imgs), len(t.imgs), min_figures)
    assert all(i.get('alt') for i in imgs), "every figure carries its caption as alt text"
    assert text.count('<strong>Figure.</strong>') == len(imgs), "one caption under each figure"
    assert 'Traceback' not in text and 'load_runs(' not in text  # no errors, no code
    return text

def check_executed(nb_path: Path):
    "No error outputs and no stderr noise in the executed notebook."
    nb = json.loads(nb_path.read_text())
    for c in nb['cells']:
        for o in c.get('outputs', []):
            assert o['output_type'] != 'error', f"{nb_path.name}: {o.get('ename')}: {o.get('evalue')}"
            assert not (o['output_type'] == 'stream' and o.get('name') == 'stderr'), f"{nb_path.name} wrote to stderr: {o['text'][:500]}"
    tags_ = [c['metadata'].get('tags', []) for c in nb['cells'] if c['cell_type'] == 'code']
    assert ['parameters'] in tags_ and ['injected-parameters'] in tags_
    return nb

def not_available(text):
    return re.findall(r'<em>([^<]*not available from this source[^<]*)</em>', text)


# ---------------------------------------------------------------------------------------------------------
# the builds (session-scoped: each is used by several tests)
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='session')
def fixture_runs(tmp_path_factory):
    """A folder of run folders in the documented format (config.yaml, metrics.jsonl, result.json,
    derivatives.jsonl) with made-up trajectories: a FORMAT fixture, not results. L2 sweep x 2 seeds,
    two drop-path values, one S4 run."""
    root = tmp_path_factory.mktemp('runs')
    for wd in (3e-4, 2.7e-3, 2.43e-2):
        for s in (1, 2): synthetic_run_folder(root/'s3_digits'/f'darts-second_dp0_wd{wd:g}_seed{s}', weight_decay=wd, seed=s, epochs=12)
    synthetic_run_folder(root/'s3_digits'/'darts-second_dp0.2_wd0.0003_seed1', drop_path_prob=0.2, epochs=12)
    synthetic_run_folder(root/'s4_digits'/'darts-second_dp0_wd0.0003_seed1', space='s4', epochs=12)
    return root

@pytest.fixture(scope='session')
def fixture_report(fixture_runs, tmp_path_factory):
    "Both reports on the fixture, through the command line (`rdarts report`)."
    out = tmp_path_factory.mktemp('html_fixture')
    # the installed console script if it is on PATH, else the same entry point through this interpreter
    cmd = [shutil.which('rdarts')] if shutil.which('rdarts') else [sys.executable, '-c', 'import sys; from robust_darts.cli import main; sys.exit(main())']
    r = subprocess.run(cmd + ['report', str(fixture_runs), '--out', str(out)], capture_output=True, text=True, env=ENV, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return out, r.stdout

@pytest.fixture(scope='session')
def logs_report(tmp_path_factory):
    logs = default_logs_dir()
    if logs is None: pytest.skip("published logs not found; set RDARTS_LOGS or put them at ../shared/data/robustdarts-logs")
    out = tmp_path_factory.mktemp('html_logs')
    return out, build_report(logs, out)


# ---------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------
def test_report_on_run_folders(fixture_report):
    out, stdout = fixture_report
    lines = stdout.strip().splitlines()
    assert lines[:len(REPORTS)] == [str(out/f'{n}.html') for n in REPORTS] and lines[-1].startswith('index: ')
    idx = (out/'index.html').read_text()
    assert all(f'href="{n}.html"' in idx for n in REPORTS)
    for n in REPORTS: check_executed(out/f'{n}.ipynb')
    s = check_html(out/'search_report.html', min_figures=8)
    assert 'S4 digits' in s and 'Softmaxed architecture weights' in s
    p = check_html(out/'paper_figures.html', min_figures=10)
    # the fixture has no test errors: the error figures say they show search validation errors
    assert 'not the test error of the retrained architecture' in p
    assert 'Pearson correlation' in p
    assert not_available(s) == []

def test_report_on_published_logs(logs_report):
    out, paths = logs_report
    assert [p.name for p in paths] == [f'{n}.html' for n in REPORTS]
    for n in REPORTS: check_executed(out/f'{n}.ipynb')
    p = check_html(out/'paper_figures.html', min_figures=14)
    for bench in ('S1 CIFAR-10', 'S3 SVHN'): assert bench in p
    assert 'r = 0.867' in p and re.search(r'S1 CIFAR-10 r = -?0\.\d{3}', p)
    assert 'store accuracies, not errors' in p          # the loader's note on the older jobs
    assert 'seed 1' in p                                # the trajectories draw seed 1, as the authors' scripts
    # the logs have no softmaxed α: that figure says so instead of failing
    s = check_html(out/'search_report.html', min_figures=6)
    assert any('architecture weights' in m for m in not_available(s))

@pytest.mark.browser
@pytest.mark.parametrize('which', ['fixture', 'logs'])
def test_figures_visible_in_browser(which, request, tmp_path):
    if CHROMIUM is None: pytest.skip("chromium not found; install it with `apt-get install -y chromium chromium-driver`")
    out = request.getfixturevalue('fixture_report' if which == 'fixture' else 'logs_report')[0]
    for n in REPORTS:
        page = out/f'{n}.html'
        n_img = len(tags(page.read_text()).imgs)
        seen = browser_images(page, tmp_path)
        assert len(seen) == n_img > 0
        for i, im in enumerate(seen):
            assert im['complete'] and im['naturalWidth'] > 200 and im['naturalHeight'] > 150, (n, i, im)   # decoded
            assert im['visible'] and im['width'] > 200 and im['height'] > 100, (n, i, im)                  # laid out, shown
            assert im['left'] >= 0 and im['left'] + im['width'] <= im['docWidth'] + 1, (n, i, im)         # inside the page
        std, ink = screenshot_stats(page, tmp_path)
        assert std > 20 and ink > 0.02, f"{n}: screenshot looks blank (grey std {std:.1f}, non-white {ink:.3f})"
