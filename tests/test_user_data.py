"""Your own data through `rdarts search` and `rdarts evaluate` as a user runs them: real subprocesses on a one-channel
28×28 `.npz` (the size where the reference's auxiliary head fails), with the default network and augmentation
settings except the tiny sizes. The run folders' `config.yaml` must say what was used: no horizontal flips, and a
Cutout length fitted to 28-pixel images (the library behaviour itself is tested in nbs/05_evalnet.ipynb,
nbs/06_data.ipynb, nbs/10_search.ipynb and nbs/13_evaluate.ipynb)."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest, yaml

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

def rdarts(*args):
    # the `rdarts` console script's entry point, with this interpreter (cli.py has no __main__ block)
    return subprocess.run([sys.executable, "-c", "import sys; from robust_darts.cli import main; sys.exit(main())", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=600)

@pytest.fixture(scope="module")
def digits28(tmp_path_factory) -> Path:
    "scikit-learn's 8×8 digits upsampled to 28×28, 300 images, uint8 N×H×W×C with C = 1, integer labels 0..9."
    import torch, torch.nn.functional as F
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images[:300], dtype=torch.float32).div(16.).unsqueeze(1)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    x = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    path = tmp_path_factory.mktemp("data")/"digits28.npz"
    np.savez(path, x=x, y=d.target[:300].astype(np.int64))
    assert x.shape == (300, 28, 28, 1) and x.dtype == np.uint8
    return path

def _folder(r) -> Path:
    assert r.returncode == 0, r.stderr[-3000:]
    return Path(r.stdout.strip().splitlines()[-1])

def test_search_then_evaluate_on_28px_grayscale(digits28, tmp_path):
    "search, then train its genotype from scratch with the default auxiliary head, Cutout and flips setting."
    run = _folder(rdarts("search", "--dataset", digits28, "--epochs", "2", "--batch-size", "16", "--init-channels", "4",
                         "--layers", "3", "--max-steps", "2", "--valid-batches", "1", "--hessian-every", "0",
                         "--out", tmp_path/"s", "--quiet"))
    assert (run/"result.json").exists() and (run/"genotype.txt").exists()
    cfg = yaml.safe_load((run/"config.yaml").read_text())
    assert (cfg["hflip"], cfg["cutout_length"]) == ("off", 14), cfg   # resolved: user data is not flipped; half of 28 px
    assert cfg["cutout"] == "auto"                                     # the reference's rule: off at drop path 0
    assert "hflip off, cutout off" in (run/"log.txt").read_text()

    ev = _folder(rdarts("evaluate", "--genotype", run, "--dataset", digits28, "--epochs", "1", "--max-steps", "2",
                        "--test-batches", "1", "--batch-size", "16", "--layers", "3", "--init-channels", "4",
                        "--out", tmp_path/"e", "--quiet"))
    res = json.loads((ev/"result.json").read_text())
    assert res["genotype"] == (run/"genotype.txt").read_text().strip() and res["test_error"] is not None
    assert res["params_with_aux"] > res["params"]                      # the auxiliary head was built and trained
    cfg = yaml.safe_load((ev/"config.yaml").read_text())
    assert (cfg["auxiliary"], cfg["cutout"], cfg["hflip"], cfg["cutout_length"]) == (True, "on", "off", 14), cfg   # cutout: one type in every stage
    assert "hflip off, cutout 14 px" in (ev/"log.txt").read_text()

    # the same command again finds the finished run (the resolved config.yaml matches the defaults' resolution)
    again = _folder(rdarts("evaluate", "--genotype", run, "--dataset", digits28, "--epochs", "1", "--max-steps", "2",
                           "--test-batches", "1", "--batch-size", "16", "--layers", "3", "--init-channels", "4",
                           "--out", tmp_path/"e", "--quiet"))
    assert again == ev

def test_options_are_recorded_as_given(digits28, tmp_path):
    "--hflip on and an explicit --cutout-length are used and recorded as given."
    ev = _folder(rdarts("evaluate", "--genotype", "darts_v2", "--dataset", digits28, "--epochs", "1", "--max-steps", "1",
                        "--test-batches", "1", "--batch-size", "16", "--layers", "3", "--init-channels", "4",
                        "--hflip", "on", "--cutout-length", "6", "--out", tmp_path/"e", "--quiet"))
    cfg = yaml.safe_load((ev/"config.yaml").read_text())
    assert (cfg["hflip"], cfg["cutout_length"]) == ("on", 6), cfg

def test_too_small_images_one_line(tmp_path):
    "2×2 images cannot pass two reductions: one line naming --image-size, exit code 2, no run folder."
    x = np.random.default_rng(0).integers(0, 256, (40, 2, 2), dtype=np.uint8)
    np.savez(tmp_path/"tiny.npz", x=x, y=np.arange(40) % 2)
    r = rdarts("evaluate", "--genotype", "darts_v2", "--dataset", tmp_path/"tiny.npz", "--epochs", "1", "--batch-size", "8",
               "--out", tmp_path/"e", "--quiet")
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    err = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(err) == 1 and "--image-size" in err[0] and "2×2 px are too small" in err[0], r.stderr
    assert not (tmp_path/"e").exists()
