"""Shared pytest fixtures. One section per area; append yours below, clearly marked."""
import os, shutil, subprocess
from pathlib import Path
import pytest

# =====================================================================================================
# Slurm (batch helper): a real one-node cluster on loopback, started by tests/slurm/start-local-slurm.sh
# -----------------------------------------------------------------------------------------------------
# Tests do NOT start the cluster by default: installing and starting daemons needs root and ~20 s, and
# it is system-wide state. CI (.ci/run, with tests/slurm/start-local-slurm.sh) starts it before pytest
# and stops it (by PID) afterwards; tests that need it skip with the reason when `scontrol ping` fails.
# Locally, either start it yourself (`bash tests/slurm/start-local-slurm.sh`, as root) or set
# RDARTS_START_SLURM=1: the session fixture then starts it and stops it again at the end of the session (only if it started it).
# =====================================================================================================
SLURM_SCRIPT = Path(__file__).parent/"slurm"/"start-local-slurm.sh"

def slurm_unavailable() -> str | None:
    "Why no Slurm controller can be reached (None when `scontrol ping` succeeds)."
    if not shutil.which("scontrol"): return "scontrol not found (Slurm client not installed)"
    try: r = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired: return "scontrol ping timed out"
    if r.returncode != 0 or " is UP" not in r.stdout:
        lines = [l.strip() for l in (r.stdout + r.stderr).splitlines() if l.strip().strip('*')]
        return f"scontrol ping failed: {lines[0] if lines else 'rc=' + str(r.returncode)}"
    return None

def _slurm_script(cmd: str):
    return subprocess.run(["bash", str(SLURM_SCRIPT), cmd], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)

@pytest.fixture(scope="session")
def slurm_cluster():
    "A reachable Slurm controller (skips otherwise); yields dict(partition=default partition, sacct=bool)."
    why, started = slurm_unavailable(), False
    if why and os.environ.get("RDARTS_START_SLURM") == "1":
        r = _slurm_script("start")
        if r.returncode != 0: pytest.fail(f"RDARTS_START_SLURM=1 but start-local-slurm.sh failed: {r.stderr.strip()[-500:]}")
        started, why = True, slurm_unavailable()
    if why:
        pytest.skip(f"no Slurm cluster ({why}); start one with `bash tests/slurm/start-local-slurm.sh` "
                    "as root, or set RDARTS_START_SLURM=1")
    parts = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
    default = next((p.rstrip("*") for p in parts if p.endswith("*")), parts[0] if parts else None)
    sacct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, text=True).returncode == 0
    yield dict(partition=default, sacct=sacct)
    if started: _slurm_script("stop")

@pytest.fixture
def slurm_env(slurm_cluster, monkeypatch):
    "Environment for submitting tiny jobs: one OpenMP thread per job."
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return slurm_cluster

# =====================================================================================================
# Reports (results/figures/report helper): a tiny real study, built once per test session
# -----------------------------------------------------------------------------------------------------
# Real searches (`search.run_search`) and retrainings (`evaluate.run_evaluate`) at toy size through
# `results.tiny_study`: digits at 8x8, 4 channels, 3 cells, 3 epochs of 2 steps, λ_max every epoch, the ES
# rule set to fire at epoch 1 unless λ_max halves. S1: DARTS at L2 3e-4 and 2.7e-3 (2 seeds each), at drop
# path 0.2, DARTS-ES and DARTS-ADA (1 seed each); S3: DARTS (1 seed). Every architecture found is
# retrained for one short epoch. Two worker processes; the seconds it took are printed (pytest -s) and
# kept in the returned object. The numbers mean nothing: the files, formats and arithmetic are real.
# =====================================================================================================
TINY_STUDY = ([dict(space="s1", seed=s, weight_decay=wd) for s in (1, 2) for wd in (3e-4, 2.7e-3)]
              + [dict(space="s1", seed=1, drop_path_prob=0.2), dict(space="s1", seed=1, method="es"), dict(space="s1", seed=1, method="ada"),
                 dict(space="s3", seed=1)])

@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    "Path of a folder of real tiny run folders (searches + retrainings); `.seconds` says how long it took."
    import time
    from robust_darts.results import tiny_study as build
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.time()
    root = build(tmp_path_factory.mktemp("tiny_study"), TINY_STUDY, eval_seeds=(1,), processes=2)
    seconds = time.time() - t0
    print(f"\n[tiny_study] {len(TINY_STUDY)} searches + retrainings in {seconds:.0f} s")
    class P(type(root)): pass
    p = P(root); p.seconds = seconds
    return p
