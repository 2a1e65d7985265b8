"""Eigenvalue accuracy checks too slow for nbs/08_hessian.ipynb (one CPU thread):
- S5 (n=224) tiny float64: Lanczos λ_max/λ_min == eigvalsh of the reference-style dense Hessian (~30 s);
- the full-size S1 supernet (C=16, 8 cells) in float32, briefly trained: λ_max within 1e-3 of the dense (~50 s)."""
import numpy as np, pytest, torch
from robust_darts.hessian import ArchHessian, dominant_eigenvalue, full_hessian
from robust_darts.bench import warmed_up_supernet
from robust_darts.supernet import Supernet

@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

@pytest.mark.slow
def test_s5_tiny_float64_matches_dense():
    torch.manual_seed(0)
    m = Supernet('s5', 10, C=2, layers=3, in_channels=1).double(); m.train()
    with torch.no_grad():
        for a in m.arch_parameters(): a.normal_(0, 0.5)
    x, y = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (4,))
    H, g = full_hessian(m, x, y)
    assert H.shape == (224, 224) and torch.equal(H, H.T)
    w = np.linalg.eigvalsh(H.numpy())
    r = dominant_eigenvalue(m, x, y, tol=1e-7, both_ends=True)
    assert abs(r.eig_max - w[-1]) <= 1e-6 * abs(w[-1]), (r.eig_max, w[-1])
    assert abs(r.eig_min - w[0]) <= 1e-6 * max(abs(w[0]), abs(w[-1])), (r.eig_min, w[0])
    op = ArchHessian(m, x, y)   # fast products == the dense rows (plain graph)
    U = torch.randn(224, 2, dtype=torch.float64)
    assert torch.allclose(torch.stack([op(u) for u in U.T], 1), H @ U, rtol=0, atol=1e-12)
    assert torch.allclose(op.gradient, g, rtol=0, atol=1e-12)

@pytest.mark.slow
def test_full_size_s1_float32_within_1e3():
    "Full-size S1 (C=16, 8 cells), 5 warm-up steps on digits, batch 16 of 16×16, float32: λ_max within 1e-3."
    m, (x, y) = warmed_up_supernet('s1', steps=5, batch=16, image_size=16)
    assert (m.C, m.layers) == (16, 8) and x.dtype == torch.float32
    H, _ = full_hessian(m, x, y)
    dense = np.linalg.eigvalsh(H.double().numpy())[-1]
    for criterion in ('gap', 'residual'):   # the default estimate and the rigorous bound, tol=1e-3
        r = dominant_eigenvalue(m, x, y, criterion=criterion)
        assert r.converged and abs(r.eig_max - dense) <= 1e-3 * abs(dense), (criterion, r.eig_max, dense, r.hvps)
