"""The Table 1 ablation models of Mentzer et al. (imgcomp.systems.mentzer2018.ablation)."""

import numpy as np

from imgcomp.systems.mentzer2018.ablation import coded_bytes, model_rows


def test_adaptive_models_count_what_came_before():
    v = np.random.default_rng(0).integers(0, 6, (3, 4, 5))
    flat = v.ravel()
    for name in ("uniform", "zeroth", "first"):
        rows = model_rows(name, v, 6)
        assert rows.shape == (60, 6) and np.allclose(rows.sum(1), 1) and rows.min() > 0
    counts = np.bincount(v[1].ravel()[:3], minlength=6) + 1  # channel 1, its 4th symbol
    assert np.allclose(model_rows("zeroth", v, 6)[20 + 3], counts / counts.sum())
    i = 17
    counts = np.bincount([flat[j] for j in range(1, i) if flat[j - 1] == flat[i - 1]], minlength=6) + 1
    assert np.allclose(model_rows("first", v, 6)[i], counts / counts.sum())


def test_skewed_volumes_cost_less_than_uniform():
    v = np.zeros((4, 8, 8), np.int64)
    v[0, ::3] = 2
    uniform, _ = coded_bytes("uniform", v, 6)
    zeroth, _ = coded_bytes("zeroth", v, 6)
    first, _ = coded_bytes("first", v, 6)
    assert first < uniform and zeroth < uniform
