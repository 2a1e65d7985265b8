"""`rdarts random-ws`, `rdarts evaluate` and `rdarts select` as a user runs them: real subprocesses, tiny configs
on the embedded digits (the library behaviour itself is tested in nbs/12_randomws.ipynb and nbs/13_evaluate.ipynb)."""
import json, os, subprocess, sys
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--dataset", "digits", "--batch-size", "32", "--init-channels", "4", "--layers", "3", "--device", "cpu",
        "--seed", "0", "--max-steps", "1", "--quiet"]

def rdarts(*args, cwd=None):
    # the `rdarts` console script's entry point, with this interpreter (cli.py has no __main__ block)
    return subprocess.run([sys.executable, "-c", "import sys; from robust_darts.cli import main; sys.exit(main())", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=300)

def test_search_evaluate_select_chain(tmp_path):
    "random-ws -> evaluate its run folder -> select among it and DARTS' cell; each prints its folder."
    r = rdarts("random-ws", "--space", "s3", "--epochs", "1", "--n-samples", "4", "--n-score-batches", "1", "--top-k", "2",
               "--valid-batches", "1", "--out", tmp_path/"rs", *TINY)
    assert r.returncode == 0, r.stderr
    run = Path(r.stdout.strip().splitlines()[-1])
    assert (run/"result.json").exists() and (run/"genotype.txt").exists()
    common = ["--epochs", "1", "--test-batches", "1", "--cutout-length", "8", *TINY]
    r = rdarts("evaluate", "--genotype", run, "--out", tmp_path/"ev", *common)
    assert r.returncode == 0, r.stderr
    ev = Path(r.stdout.strip().splitlines()[-1])
    res = json.loads((ev/"result.json").read_text())
    assert res["genotype"] == (run/"genotype.txt").read_text().strip() and res["test_error"] is not None
    r = rdarts("select", run, "darts_v2", "--select-epochs", "1", "--out", tmp_path/"sel", *common)
    assert r.returncode == 0, r.stderr
    sel = Path(r.stdout.strip().splitlines()[-1])
    assert len(json.loads((sel/"ranking.json").read_text())) == 2
    assert json.loads((sel/"result.json").read_text())["test_error"] is not None

BAD = [
    (["evaluate", "--genotype", "Genotype(normal=[('conv_9x9', 0), ('skip_connect', 1)], normal_concat=[2], "
      "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])", "--dataset", "digits"], "unknown op 'conv_9x9'"),
    (["evaluate", "--genotype", "Genotype(normal=[('skip_connect', 0), ('skip_connect', 3)], normal_concat=[2], "
      "reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])", "--dataset", "digits"], "node 0 cannot take input 3"),
    (["evaluate", "--genotype", "nowhere/at/all"], "is neither a run folder"),
    (["evaluate", "--archs-file", "{tmp}/results_arch.yaml", "--search-space", "s1", "--search-dataset", "cifar10", "--search-dp", "0.2"],
     "no entry '0.2_0.0003' under 's1_cifar10'; available: 0.0_0.0003"),
    (["random-ws", "--space", "s9"], "space = 's9': expected one of s1"),
    (["select", "--dataset", "digits"], "no candidates"),
    # values the config refuses: one line naming the option, before any folder exists
    (["evaluate", "--genotype", "darts_v2", "--momentum", "-0.1"], "--momentum = '-0.1': expected a finite number in [0, 1)"),
    (["evaluate", "--genotype", "darts_v2", "--epochs", "ten"], "--epochs = 'ten': expected an integer > 0"),
    (["evaluate", "--genotype", "darts_v2", "--grad-clip", "0"], "--grad-clip = '0': expected a finite number > 0"),
    (["evaluate", "--genotype", "darts_v2", "--lr", "0.01", "--lr-min", "0.1"], "lr_min = 0.1 must not exceed lr = 0.01"),
    (["evaluate", "--genotype", "darts_v2", "--dataset", "imagenet"], "imagenet"),
    (["select", "darts_v2", "--select-valid-portion", "1"], "--select-valid-portion = '1': expected a finite number in (0, 1)"),
]
# one interpreter for all cases (each torch import costs seconds): cli.main per case, stderr captured per case
DRIVER = """
import sys, io, json, contextlib
from robust_darts.cli import main
out = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err): rc = main(args)
    out.append([rc, err.getvalue()])
print(json.dumps(out))
"""

def test_bad_input_one_line_errors(tmp_path):
    "Bad genotypes, missing YAML keys (listing what is there), bad spaces, no candidates, bad values: exit 2, one line on stderr, no folder."
    (tmp_path/"results_arch.yaml").write_text("s1_cifar10:\n  0.0_0.0003:\n    1: \"Genotype(normal=[('skip_connect', 0), "
        "('skip_connect', 1)], normal_concat=[2], reduce=[('skip_connect', 0), ('skip_connect', 1)], reduce_concat=[2])\"\n")
    cases = [[a.replace("{tmp}", str(tmp_path)) for a in args] for args, _ in BAD]
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], capture_output=True, text=True, env=ENV, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results_arch.yaml"]   # no run folder (default --out runs) was made
    for (args, msg), (rc, err) in zip(BAD, json.loads(r.stdout.strip().splitlines()[-1])):
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and msg in lines[0] and lines[0].startswith(f"rdarts {args[0]}: error: "), (args, rc, err)
