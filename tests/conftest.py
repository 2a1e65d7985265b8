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
