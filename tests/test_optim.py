"""numbce.optim: Adam, AdamW and SGD against a NumPy transcription of their formulas and
against torch.optim (ten steps, same hyperparameters), plus their input checks."""

import numpy as np
import pytest
from conftest import eps, torch_or_skip

from numbce.optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR, views_like

SHAPES = [(5, 3), (5,), (1, 4)]
STEPS = 10

ADAM_CASES = [
    {},
    {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
    {"weight_decay": 0.1},
    {"amsgrad": True},
    {"lr": 0.05, "weight_decay": 0.05, "amsgrad": True},
]
SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
]
CASES = (
    [(Adam, options) for options in ADAM_CASES]
    + [(AdamW, options) for options in ADAM_CASES]
    + [(SGD, options) for options in SGD_CASES]
)


def _problem(dtype, seed=0):
    """Initial parameters and, per step, gradients (random, some of them tiny)."""
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=shape).astype(dtype) for shape in SHAPES]
    grads = [
        [
            (rng.normal(size=shape) * 10.0 ** rng.integers(-6, 2)).astype(dtype)
            for shape in SHAPES
        ]
        for _ in range(STEPS)
    ]
    return params, grads


def _run_numbce(optimizer_class, options, params, grads):
    params = [p.copy() for p in params]
    optimizer = optimizer_class(params, **options)
    for step_grads in grads:
        optimizer.step(step_grads)
    return params


def _reference(optimizer_class, options, params, grads):
    """The update rules transcribed from PyTorch's documentation, in float64 NumPy."""
    params = [p.astype(np.float64) for p in params]
    if optimizer_class is SGD:
        lr, momentum = options["lr"], options.get("momentum", 0.0)
        dampening, decay = (
            options.get("dampening", 0.0),
            options.get("weight_decay", 0.0),
        )
        buffers = [None] * len(params)
        for step_grads in grads:
            for i, (p, g) in enumerate(zip(params, step_grads)):
                g = g + decay * p
                if momentum:
                    buffers[i] = (
                        g.copy()
                        if buffers[i] is None
                        else momentum * buffers[i] + (1 - dampening) * g
                    )
                    g = (
                        g + momentum * buffers[i]
                        if options.get("nesterov")
                        else buffers[i]
                    )
                p -= lr * g
        return params
    lr = options.get("lr", 1e-3)
    beta1, beta2 = options.get("betas", (0.9, 0.999))
    epsilon = options.get("eps", 1e-8)
    decay = options.get("weight_decay", 1e-2 if optimizer_class is AdamW else 0.0)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    v_max = [np.zeros_like(p) for p in params]
    for t, step_grads in enumerate(grads, start=1):
        for i, (p, g) in enumerate(zip(params, step_grads)):
            if optimizer_class is AdamW:
                p *= 1 - lr * decay
            else:
                g = g + decay * p
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            v_max[i] = np.maximum(v_max[i], v[i])
            v_used = v_max[i] if options.get("amsgrad") else v[i]
            denominator = np.sqrt(v_used) / np.sqrt(1 - beta2**t) + epsilon
            p -= lr / (1 - beta1**t) * m[i] / denominator
    return params


def _close(actual, expected, rtol):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * np.abs(e).max())


@pytest.mark.parametrize(("optimizer_class", "options"), CASES)
def test_ten_steps_match_the_formulas(optimizer_class, options):
    params, grads = _problem(np.float64)
    ours = _run_numbce(optimizer_class, options, params, grads)
    _close(
        ours, _reference(optimizer_class, options, params, grads), 64 * eps(np.float64)
    )


@pytest.mark.parametrize(("optimizer_class", "options"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ten_steps_match_torch_optim(optimizer_class, options, dtype):
    torch = torch_or_skip()
    params, grads = _problem(dtype, seed=1)
    ours = _run_numbce(optimizer_class, options, params, grads)
    torch_params = [torch.tensor(p, requires_grad=True) for p in params]
    torch_class = getattr(torch.optim, optimizer_class.__name__)
    torch_options = dict(options, foreach=False)
    torch_optimizer = torch_class(torch_params, **torch_options)
    for step_grads in grads:
        for p, g in zip(torch_params, step_grads):
            p.grad = torch.tensor(g)
        torch_optimizer.step()
    theirs = [p.detach().numpy() for p in torch_params]
    # float64: equal to 1e-10 (in fact to a few ulps); float32: a few ulps per step.
    _close(ours, theirs, 1e-10 if dtype == np.float64 else 16 * STEPS * eps(dtype))


def test_updates_in_place_and_keeps_the_arrays():
    weight = np.ones((2, 3))
    bias = np.zeros(2)
    optimizer = Adam([weight, bias], lr=0.1)
    optimizer.step([np.full((2, 3), 2.0), np.array([-1.0, 0.0])])
    assert optimizer.params[0] is weight and optimizer.params[1] is bias
    # Adam's first step is lr * sign(g) (up to eps), and nothing where g = 0.
    np.testing.assert_allclose(weight, 0.9, rtol=1e-7)
    np.testing.assert_allclose(bias, [0.1, 0.0], rtol=1e-7)
    assert optimizer.step_count == 1


def test_first_sgd_momentum_step_is_plain_sgd():
    p = np.array([1.0, 2.0])
    SGD([p], lr=0.5, momentum=0.9, dampening=0.5).step([np.array([1.0, -1.0])])
    np.testing.assert_array_equal(p, [0.5, 2.5])


def test_non_contiguous_gradients_are_accepted():
    p, q = np.zeros((3, 4)), np.zeros((3, 4))
    grad = np.arange(24.0).reshape(3, 8)[:, ::2]  # a strided (3, 4) view
    assert not grad.flags.c_contiguous
    Adam([p], lr=0.1).step([grad])
    Adam([q], lr=0.1).step([np.ascontiguousarray(grad)])
    np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: Adam(p, lr=-1), "lr"),
        (lambda p: Adam(p, betas=(1.0, 0.9)), "betas"),
        (lambda p: Adam(p, eps=-1e-8), "eps"),
        (lambda p: AdamW(p, weight_decay=-0.1), "weight_decay"),
        (lambda p: SGD(p, nesterov=True), "Nesterov"),
        (lambda p: SGD(p, momentum=-0.5), "momentum"),
        (lambda p: Adam([]), "empty"),
    ],
)
def test_bad_hyperparameters(make, message):
    with pytest.raises(ValueError, match=message):
        make([np.zeros(3)])


def _read_only():
    array = np.zeros(3)
    array.flags.writeable = False
    return array


@pytest.mark.parametrize(
    ("param", "error", "message"),
    [
        (np.zeros(3, np.int64), TypeError, "float32 or float64, got int64"),
        (np.zeros(3, np.float16), TypeError, "float32 or float64, got float16"),
        ([0.0, 1.0], TypeError, "a NumPy array, got list"),
        (np.zeros((4, 4))[:, 0], ValueError, r"C-contiguous .* strides \(32,\)"),
        (_read_only(), ValueError, "writable"),
    ],
)
def test_parameters_must_be_writable_contiguous_float_arrays(param, error, message):
    with pytest.raises(error, match=f"parameter 0 must be {message}"):
        Adam([param])


def test_step_checks_the_gradients():
    optimizer = SGD([np.zeros((2, 3)), np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="2 parameters"):
        optimizer.step([np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        optimizer.step([np.zeros((3, 2)), np.zeros(2)])
    assert optimizer.step_count == 0


@pytest.mark.parametrize(("optimizer_class", "options"), CASES)
def test_one_flat_step_equals_per_parameter_steps(optimizer_class, options):
    params, grads = _problem(np.float64, seed=2)
    flat = np.concatenate([p.ravel() for p in params])
    views = views_like(flat, params)
    optimizer = optimizer_class(views, **options)
    assert optimizer.flat_params is flat
    for step_grads in grads:
        optimizer.step_flat(np.concatenate([g.ravel() for g in step_grads]))
    expected = _run_numbce(optimizer_class, options, params, grads)
    for view, other in zip(views, expected):
        np.testing.assert_array_equal(view, other)


def test_flat_steps_need_parameters_that_tile_one_buffer():
    flat = np.zeros(10)
    assert Adam([flat[:4], flat[4:]]).flat_params is flat
    assert Adam([flat[4:], flat[:4]]).flat_params is None  # out of order
    assert Adam([flat[:4], flat[5:]]).flat_params is None  # a gap
    assert Adam([flat[:4]]).flat_params is None  # not all of it
    separate = Adam([np.zeros(3), np.zeros(2)])
    assert separate.flat_params is None
    with pytest.raises(ValueError, match="views of one buffer"):
        separate.step_flat(np.zeros(5))
    with pytest.raises(ValueError, match=r"shape \(9,\)"):
        Adam([flat[:4], flat[4:]]).step_flat(np.zeros(9))


@pytest.mark.parametrize("dtype", [np.complex128, np.float16, object])
def test_a_gradient_that_is_not_real_is_refused_before_the_step_is_counted(dtype):
    flat = np.ones(5)
    params = views_like(flat, [np.zeros(3), np.zeros(2)])
    optimizer = Adam(params, lr=0.1)
    with pytest.raises(
        TypeError, match=f"gradient 1 must hold .* got {np.dtype(dtype)}"
    ):
        optimizer.step([np.ones(3), np.ones(2, dtype)])
    with pytest.raises(TypeError, match="flat_grad must hold"):
        optimizer.step_flat(np.ones(5, dtype))
    with pytest.raises(TypeError, match="must be a NumPy array"):
        optimizer.step([[1.0, 1.0, 1.0], np.ones(2)])
    assert optimizer.step_count == 0
    np.testing.assert_array_equal(flat, 1.0)
    optimizer.step([np.ones(3), np.ones(2, np.int64)])  # integers are real numbers
    assert optimizer.step_count == 1


@pytest.mark.parametrize(("optimizer_class", "options"), CASES)
@pytest.mark.parametrize("flat", [False, True])
def test_state_dict_resumes_training_bit_for_bit(optimizer_class, options, flat):
    params, grads = _problem(np.float64, seed=3)
    expected = _run_numbce(optimizer_class, options, params, grads)

    def optimizer_over(arrays):
        if not flat:
            return optimizer_class(arrays, **options), arrays
        views = views_like(np.concatenate([p.ravel() for p in arrays]), arrays)
        return optimizer_class(views, **options), views

    first, first_params = optimizer_over([p.copy() for p in params])
    for step_grads in grads[:4]:
        first.step(step_grads)
    saved = first.state_dict()
    for step_grads in grads[4:6]:  # the saved state is a copy: later steps leave it
        first.step(step_grads)
    resumed, resumed_params = optimizer_over([p.copy() for p in first_params])
    for ours, theirs in zip(
        resumed_params, _run_numbce(optimizer_class, options, params, grads[:4])
    ):
        np.copyto(ours, theirs)
    resumed.load_state_dict(saved)
    assert resumed.step_count == 4
    for step_grads in grads[4:]:
        resumed.step(step_grads)
    for ours, theirs in zip(resumed_params, expected):
        np.testing.assert_array_equal(ours, theirs)


def test_load_state_dict_refuses_another_layout():
    optimizer = Adam([np.zeros((2, 3)), np.zeros(2)])
    state = optimizer.state_dict()
    assert sorted(state["state"]) == ["exp_avg", "exp_avg_sq"]
    with pytest.raises(ValueError, match="exp_avg has shapes"):
        Adam([np.zeros((3, 2)), np.zeros(2)]).load_state_dict(state)
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        Adam([np.zeros((2, 3)), np.zeros(2)], amsgrad=True).load_state_dict(state)
    with pytest.raises(ValueError, match="momentum_buffer"):
        SGD([np.zeros((2, 3)), np.zeros(2)]).load_state_dict(state)


@pytest.mark.parametrize(
    ("schedule", "torch_scheduler"),
    [
        (
            StepLR(0.1, step_size=3, gamma=0.5),
            ("StepLR", {"step_size": 3, "gamma": 0.5}),
        ),
        (
            CosineAnnealingLR(0.1, T_max=7, eta_min=0.01),
            ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.01}),
        ),
    ],
)
def test_schedules_match_torch_schedulers_stepped_per_step(schedule, torch_scheduler):
    torch = torch_or_skip()
    params, grads = _problem(np.float64, seed=4)
    ours = _run_numbce(SGD, {"lr": schedule, "momentum": 0.9}, params, grads)
    torch_params = [torch.tensor(p, requires_grad=True) for p in params]
    optimizer = torch.optim.SGD(torch_params, lr=0.1, momentum=0.9, foreach=False)
    name, options = torch_scheduler
    scheduler = getattr(torch.optim.lr_scheduler, name)(optimizer, **options)
    for step_grads in grads:
        for p, g in zip(torch_params, step_grads):
            p.grad = torch.tensor(g)
        optimizer.step()
        scheduler.step()
    _close(ours, [p.detach().numpy() for p in torch_params], 1e-12)


def test_a_schedule_is_called_with_the_steps_taken():
    seen = []
    w = np.zeros(1)
    optimizer = SGD([w], lr=lambda t: seen.append(t) or 1.0 / (t + 1))
    for _ in range(3):
        optimizer.step([np.ones(1)])
    assert seen == [0, 1, 2]
    assert w[0] == pytest.approx(-(1 + 1 / 2 + 1 / 3))
    assert CosineAnnealingLR(1.0, T_max=4)(2) == pytest.approx(0.5)
    assert StepLR(1.0, step_size=2)(5) == pytest.approx(0.01)


def test_a_negative_scheduled_rate_is_refused_before_the_step():
    w = np.zeros(2)
    optimizer = Adam([w], lr=lambda t: 0.1 - t)
    optimizer.step([np.ones(2)])
    with pytest.raises(ValueError, match="learning rate at step 1"):
        optimizer.step([np.ones(2)])
    assert optimizer.step_count == 1
