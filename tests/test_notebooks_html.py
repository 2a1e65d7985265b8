"""`rdarts notebooks` for real: library notebooks executed in fresh kernels, rendered to HTML, opened in headless
Chromium (every figure decodes and is drawn, the page is not blank), and a failing notebook reported as failed.

Needs: chromium (the browser checks skip with that message without it)."""
import os, re, shutil, subprocess
from pathlib import Path
import pytest
from browser import CHROMIUM, NO_CHROMIUM, browser_images, screenshot_stats

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS='1')

def rdarts(*args, cwd):
    return subprocess.run(['rdarts', *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)

@pytest.fixture(scope='module')
def rendered(tmp_path_factory):
    "A library notebook with a figure and a small notebook made to fail, rendered by the command."
    import nbformat
    tmp = tmp_path_factory.mktemp('nbhtml')
    nbs = tmp/'nbs'; nbs.mkdir()
    shutil.copy(ROOT/'nbs'/'09_earlystop.ipynb', nbs)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('# broken\n> made to fail'),
                                         nbformat.v4.new_code_cell("print('before')"), nbformat.v4.new_code_cell("raise ValueError('planted failure')")])
    nbformat.write(nb, nbs/'02_broken.ipynb')
    r = rdarts('notebooks', '--nbs', str(nbs), '--out', str(tmp/'html'), '--quiet', cwd=tmp)
    return tmp, r

def test_pages_and_index(rendered):
    tmp, r = rendered
    assert r.returncode == 1, r.stderr[-2000:]                      # one notebook failed: the command says so
    assert 'failed: 02_broken' in r.stdout
    html = tmp/'html'
    index = (html/'index.html').read_text()
    assert re.findall(r"href='([^']+)'", index) == ['02_broken.html', '09_earlystop.html']
    assert index.count("class='bad'") == 1 and 'planted failure' in index
    es = (html/'09_earlystop.html').read_text()
    assert 'es_stop_epoch' in es and 'Traceback' not in es            # code and its run, no error
    assert 'from fastcore.test import' not in es                     # #| hide cells are left out
    broken = (html/'02_broken.html').read_text()
    assert 'before' in broken and 'planted failure' in broken        # the output up to the failure, and the failure

def test_figures_in_browser(rendered):
    if CHROMIUM is None: pytest.skip(NO_CHROMIUM)
    tmp, _ = rendered
    page = tmp/'html'/'09_earlystop.html'
    imgs = browser_images(page, tmp)
    figs = [i for i in imgs if i['naturalWidth'] > 100]
    assert figs, "the DARTS-ES figure is on the page"
    assert all(i['complete'] and i['visible'] and i['width'] > 100 and i['height'] > 50 for i in figs), figs
    std, ink = screenshot_stats(page, tmp)
    assert std > 10 and ink > 0.02, (std, ink)                        # not a blank page

def test_explorer_page_is_static(tmp_path):
    "The run explorer's widgets cannot run on a static page: it shows the newest epoch's figure instead."
    r = rdarts('notebooks', '--nbs', str(ROOT/'nbs'), '--only', '16e_explorer', '--out', str(tmp_path/'html'), '--quiet',
               cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    page = tmp_path/'html'/'16e_explorer.html'
    html = page.read_text()
    assert '<script type="application/vnd.jupyter.widget' not in html      # no widget view, no widget state
    assert html.count('data:image/png;base64') >= 2     # the explorer's static figure and the figure after reload
    if CHROMIUM is None: pytest.skip(NO_CHROMIUM)
    figs = [i for i in browser_images(page, tmp_path) if i['naturalWidth'] > 300]
    assert len(figs) >= 2 and all(i['complete'] and i['visible'] for i in figs), figs
