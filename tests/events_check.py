"""Checks of a run folder's TensorBoard events against its JSON files, read by TensorBoard's own reader
(`events.read_scalars`: EventAccumulator). Used by the kill-and-resume tests and test_tensorboard.py."""
import json
from collections import defaultdict
from pathlib import Path
import numpy as np
from robust_darts.events import read_scalars, tb_tag

def _rows(p: Path) -> list:
    return [json.loads(l) for l in p.read_text().splitlines() if l.strip()] if p.exists() else []

def expected_scalars(rows: list) -> dict:
    "`{tag: [(step, float32 value)]}` that rows of metrics.jsonl should give."
    out = defaultdict(list)
    for r in rows:
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and tb_tag(k) and np.isfinite(v):
                out[tb_tag(k)].append((r['epoch'], np.float32(v)))
    return dict(out)

def _check(tb: Path, rows: list, untimed: bool):
    got, want = read_scalars(tb), expected_scalars(rows)
    if untimed: got, want = ({t: v for t, v in d.items() if not t.startswith('time/')} for d in (got, want))
    missing = set(want) - set(got)
    assert not missing, f"{tb}: tags missing: {sorted(missing)}"
    for t, pts in want.items(): assert got[t] == pts, (tb, t, got[t], pts)
    extra = {t for t in got if t not in want and not t.startswith(('skip/', 'final/'))}
    assert not extra, f"{tb}: tags not in metrics.jsonl: {sorted(extra)}"
    return got

def assert_events_match(run_dir, untimed: bool = False) -> dict:
    """Every scalar of metrics.jsonl at every step is in `tb/` (each step once), the rolled-back rows are under
    `tb/rolled_back/iteration_<k>/`, and no temporary file is left; returns the main run's scalars."""
    run_dir = Path(run_dir); tb = run_dir/'tb'
    assert tb.is_dir(), f"no tb/ in {run_dir}"
    got = _check(tb, _rows(run_dir/'metrics.jsonl'), untimed)
    by_it = defaultdict(list)
    for r in _rows(run_dir/'metrics_rolled_back.jsonl'): by_it[r.get('iteration') or 0].append(r)
    subs = {p.name for p in (tb/'rolled_back').iterdir()} if (tb/'rolled_back').exists() else set()
    assert subs == {f"iteration_{k}" for k in by_it}, (subs, sorted(by_it))
    for k, rows in by_it.items(): _check(tb/'rolled_back'/f"iteration_{k}", rows, untimed)
    assert not list(tb.rglob('.tmp-ev.*')), "temporary event files left behind"
    return got

def events_untimed(run_dir) -> dict:
    "All scalars of a run's tb/ (main and rolled back) without the time/ tags: two runs of one config compare equal."
    tb = Path(run_dir)/'tb'
    return {str(d.relative_to(tb)): {t: v for t, v in read_scalars(d).items() if not t.startswith('time/')}
            for d in [tb, *[p for p in tb.rglob('*') if p.is_dir() and any(p.glob('events.*'))]]}
