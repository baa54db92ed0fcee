"""numbce inside PyTorch, XGBoost and LightGBM, against each framework's own way.

* ``test_torch_loss_step``: the loss part of a training step, forward and backward, on
  float32 logits that require grad (``loss = f(x, y); loss.backward()``):
  ``numbce.torch.binary_cross_entropy_with_logits`` against
  ``torch.nn.functional.binary_cross_entropy_with_logits`` on the same tensors. At
  N = 2,000 and 10,000 (a training batch) the per-call overhead is most of the time; at
  1e6 and 1e7 the passes over memory.
* ``test_torch_train_step``: a whole step of ``torch.nn.Linear`` + ``torch.optim.SGD``
  with each loss (the share of the step the loss is), N = 2,000 and 1e6.
* ``test_boosting_objective``: one call of a custom objective as a booster makes it each
  round (labels and weights read from the DMatrix / Dataset, margins in the library's
  dtype: float32 for XGBoost, float64 for LightGBM): numbce's focal objective against the
  NumPy focal objective most users copy (clipped probabilities, ``np.where``, powers).
* ``test_boosting_round``: a whole boosting round (margins, objective, tree) with numbce's
  logloss objective against the library's built-in binary log-loss.

Threads: ``--threads`` for Numba and PyTorch, ``nthread``/``num_threads`` for the boosters.
Run: ``pytest bench/test_bench_integrations.py --benchmark-only``.
"""

import numpy as np
import pytest
from contestants import size_id

torch = pytest.importorskip("torch")

import numbce.torch as nt
from numbce import boosting

SIZES = [1_000_000, 10_000_000]
TORCH_SIZES = [2_000, 10_000, *SIZES]
"""Batches as trained (where the per-call overhead shows) and arrays as streamed."""
TRAIN_SIZES = [2_000, 1_000_000]
FEATURES = 16


def _logits(size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, generator=generator).mul_(3.0).requires_grad_()
    y = (torch.rand(size, generator=generator) < 0.3).float()
    return x, y


TORCH_LOSSES = {
    "pytorch": torch.nn.functional.binary_cross_entropy_with_logits,
    "numbce": nt.binary_cross_entropy_with_logits,
}


@pytest.mark.parametrize("contestant", list(TORCH_LOSSES))
@pytest.mark.parametrize("size", TORCH_SIZES, ids=size_id)
def test_torch_loss_step(benchmark, size, contestant, threads):
    x, y = _logits(size)
    loss_function = TORCH_LOSSES[contestant]

    def step():
        loss = loss_function(x, y)
        loss.backward()
        x.grad = None

    # Same loss and gradient (float32: to a few ulps of the mean; the gradient, of 1/N,
    # where it is not tiny), then time.
    ours, theirs = (f(x, y) for f in TORCH_LOSSES.values())
    (grad,), (expected,) = (torch.autograd.grad(v, x) for v in (ours, theirs))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6 / size)
    step()
    benchmark.group = f"torch loss+backward float32 n={size:.0e}"
    benchmark.extra_info.update(
        suite="integrations", op="torch_loss_step", n=size, contestant=contestant,
        threads=threads, dtype="float32",
    )  # fmt: skip
    benchmark(step)


@pytest.mark.parametrize("contestant", list(TORCH_LOSSES))
@pytest.mark.parametrize("size", TRAIN_SIZES, ids=size_id)
def test_torch_train_step(benchmark, size, contestant, threads):
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(size, FEATURES, generator=generator)
    labels = (features[:, :1] + torch.randn(size, 1, generator=generator) > 0.5).float()
    torch.manual_seed(0)
    model = torch.nn.Linear(FEATURES, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_function = TORCH_LOSSES[contestant]

    def step():
        optimizer.zero_grad()
        loss_function(model(features), labels).backward()
        optimizer.step()

    step()
    benchmark.group = f"torch Linear({FEATURES}, 1) + SGD step float32 n={size:.0e}"
    benchmark.extra_info.update(
        suite="integrations", op="torch_train_step", n=size, contestant=contestant,
        threads=threads, dtype="float32",
    )  # fmt: skip
    benchmark(step)


def numpy_focal_objective(preds, data, alpha=0.25, gamma=2.0):
    """The focal objective as it is usually copied into boosting code: probabilities
    clipped away from 0 and 1, ``np.where`` for p_t and alpha_t, powers of ``1 - p_t``."""
    y = data.get_label()
    w = data.get_weight()
    p = 1.0 / (1.0 + np.exp(-preds))
    p = np.clip(p, 1e-7, 1 - 1e-7)
    pt = np.where(y == 1, p, 1 - p)
    at = np.where(y == 1, alpha, 1 - alpha)
    sign = np.where(y == 1, 1.0, -1.0)
    log_pt = np.log(pt)
    grad = (
        at * sign * (gamma * pt * (1 - pt) ** gamma * log_pt - (1 - pt) ** (gamma + 1))
    )
    hess = (
        at
        * pt
        * (1 - pt)
        * (
            (1 - pt) ** gamma * (gamma * log_pt + 2 * gamma + 1)
            - gamma**2 * pt * (1 - pt) ** (gamma - 1) * log_pt
        )
    )
    if w is not None and np.size(w):
        grad, hess = grad * w, hess * w
    return grad, hess


def _boosting_data(library, size, threads):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(size, FEATURES)).astype(np.float32)
    score = X[:, 0] + 0.5 * X[:, 1] ** 2 - X[:, 2] + rng.normal(size=size)
    y = (score > np.quantile(score, 0.9)).astype(np.float32)  # 10% positives
    w = rng.uniform(0.5, 2.0, size=size).astype(np.float32)
    if library == "xgboost":
        xgb = pytest.importorskip("xgboost")
        return xgb.DMatrix(X, y, weight=w, nthread=threads)
    lgb = pytest.importorskip("lightgbm")
    data = lgb.Dataset(X, y, weight=w, params={"verbose": -1, "num_threads": threads})
    return data.construct()


@pytest.mark.parametrize("contestant", ["numbce", "numpy"])
@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosting_objective(benchmark, library, contestant, threads):
    size = 1_000_000
    data = _boosting_data(library, size, threads)
    dtype = np.float32 if library == "xgboost" else np.float64
    margins = np.random.default_rng(1).normal(scale=3.0, size=size).astype(dtype)
    make = getattr(boosting, f"{library}_objective")
    numbce_objective = make("focal", alpha=0.25, gamma=2.0)
    objective = numbce_objective if contestant == "numbce" else numpy_focal_objective
    # Both compute the focal loss' derivatives (where the clip does not bite), then time.
    ours, theirs = numbce_objective(margins, data), numpy_focal_objective(margins, data)
    unclipped = np.abs(margins) < 12
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a[unclipped], b[unclipped], rtol=2e-3, atol=1e-6)
    benchmark.group = f"{library} focal objective n=1e6"
    benchmark.extra_info.update(
        suite="integrations", op="boosting_objective", library=library, n=size,
        contestant=contestant, threads=threads,
    )  # fmt: skip
    benchmark(objective, margins, data)


@pytest.mark.parametrize("contestant", ["numbce", "builtin"])
@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosting_round(benchmark, library, contestant, threads):
    size = 1_000_000
    data = _boosting_data(library, size, threads)
    objective = getattr(boosting, f"{library}_objective")("logloss")
    if library == "xgboost":
        import xgboost as xgb

        params = {"objective": "binary:logistic", "base_score": 0.5, "max_depth": 6,
                  "tree_method": "hist", "nthread": threads}  # fmt: skip
        booster = xgb.Booster(params, [data])
        fobj = objective if contestant == "numbce" else None
        iteration = iter(range(10**6))

        def one_round():
            booster.update(data, next(iteration), fobj=fobj)

    else:
        import lightgbm as lgb

        params = {"objective": "binary", "boost_from_average": False, "num_leaves": 63,
                  "num_threads": threads, "verbose": -1}  # fmt: skip
        if contestant == "numbce":
            params["objective"] = "none"
        booster = lgb.Booster(params, data)
        fobj = objective if contestant == "numbce" else None

        def one_round():
            booster.update(fobj=fobj)

    one_round()
    benchmark.group = f"{library} boosting round (logloss) n=1e6"
    benchmark.extra_info.update(
        suite="integrations", op="boosting_round", library=library, n=size,
        contestant=contestant, threads=threads,
    )  # fmt: skip
    benchmark.pedantic(one_round, rounds=8, iterations=1, warmup_rounds=1)
