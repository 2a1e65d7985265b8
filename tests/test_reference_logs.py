"""The published RobustDARTS logs read in full by `robust_darts.reference` (skipped when the logs are absent).

The quick test reads every run folder without Hessians (< 1 s); the slow one computes all 1,742
eigenvalues and checks them against the reference's own computation (~15 s on one core).
"""
import time
from dataclasses import replace
from collections import Counter
import numpy as np
import pytest
from robust_darts.core import default_logs_dir
from robust_darts.earlystop import EigenTracker
from robust_darts.genotypes import load_results_yaml, reg_key
from robust_darts.reference import load_reference_runs, read_derivatives

LOGS = default_logs_dir()
pytestmark = pytest.mark.skipif(LOGS is None, reason="published logs not found; set RDARTS_LOGS")


def test_tree_counts_and_results_yaml():
    runs = load_reference_runs(LOGS)
    darts = [r for r in runs if r.method == "darts"]
    rnas = [r for r in runs if r.method == "random_ws"]
    assert (len(runs), len(darts), len(rnas)) == (223, 211, 12)
    assert sum(r.has_hessians for r in runs) == 67
    assert len(load_reference_runs(LOGS, unfinished="include")) == 236   # + 13 unfinished seeds
    assert {(r.space, r.dataset) for r in darts} == {("s1", "cifar10"), ("s3", "svhn")}
    assert all(len(r.errors["valid_error"]) == 50 for r in darts)
    assert Counter(len(r.errors["valid_error"]) for r in rnas) == Counter({49: 8, 34: 4})
    # the final genotypes agree with the authors' results_arch.yaml (2 of its 208 DARTS entries,
    # s3_svhn 0.2_0.0003 seeds 1 and 2, match no published arch file: data as published)
    for sub, method, expected_misses in (("search_logs", "darts", 2), ("search_logs_RandomNAS", "random_ws", 0)):
        misses = 0
        for sd, regs in load_results_yaml(LOGS/sub/"results_arch.yaml").items():
            for reg, seeds in regs.items():
                for seed, g in seeds.items():
                    cands = [r for r in runs if r.method == method and f"{r.space}_{r.dataset}" == sd and r.seed == seed
                             and (method == "random_ws" or reg_key(r.drop_path_prob, r.weight_decay) == reg)]
                    misses += not any(r.final_genotype == g for r in cands)
        assert misses == expected_misses, (sub, misses)


@pytest.mark.slow
def test_all_hessians_eigenvalues_and_es_replay():
    t0 = time.time()
    runs = [r for r in load_reference_runs(LOGS, eigenvalues=True) if r.has_hessians]
    elapsed = time.time() - t0
    print(f"{len(runs)} runs with Hessians, {sum(len(r.eigenvalues) for r in runs)} Hessians, loaded in {elapsed:.1f} s")
    assert len(runs) == 67 and sum(len(r.eigenvalues) for r in runs) == 1742
    assert Counter((r.space, r.hessian_size) for r in runs) == Counter({("s1", 56): 33, ("s3", 84): 34})
    worst = 0.0
    for r in runs:
        assert r.epochs == list(range(0, 50, 2)) + [49]
        assert len(r.genotypes) == 50 and r.genotypes[-1] == r.final_genotype
        for row, ev in zip(read_derivatives(r.derivatives_path), r.eigenvalues):
            H = row["H"]
            assert np.array_equal(H, H.T)                                     # stored exactly symmetric
            worst = max(worst, abs(max(np.linalg.eigvals(H).real) - ev) / abs(ev))   # the reference's computation
    assert worst < 1e-12, worst
    # DARTS-ES on every real trace: the live tracker's first decision equals the replay
    fired = 0
    for r in runs:
        d = r.es_decision()
        t = EigenTracker(total_epochs=50)
        live = None
        for e, v in zip(r.epochs, r.eigenvalues):
            t.update(e, v, r.genotype_at(e))
            s = t.check(e)
            if s is not None and live is None: live = (s, e)
        assert live == (None if d is None else (d.stop_epoch, d.decision_epoch))
        fired += d is not None
        # the offline plotting rule fires at least as early, and differs only via the end windows
        p = r.es_decision(rule="plots")
        if d is not None: assert p == replace(d, rule="plots")
        elif p is not None: assert 38 <= p.stop_epoch <= 42 and p.decision_epoch == 49
    assert fired == 40
