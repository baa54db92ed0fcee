"""A small neural-network library in NumPy whose loss and loss gradient come from the
numbce kernels: layers with hand-derived backward passes, networks with Keras-style
training, and a scikit-learn classifier. Optimizers live in :mod:`numbce.optim`.

Needs the ``nn`` extra (scikit-learn, matplotlib, tqdm): ``pip install 'numbce[nn]'``.
"""


def needs_the_nn_extra(module: str, error: ModuleNotFoundError) -> ModuleNotFoundError:
    """The error to raise when ``module`` cannot import a package of the ``nn`` extra."""
    package = (error.name or "").partition(".")[0]
    return ModuleNotFoundError(
        f"{module} needs {package!r}, part of numbce's 'nn' extra: "
        "pip install 'numbce[nn]'",
        name=package,
    )


try:
    from numbce.nn.callbacks import (
        Callback,
        EarlyStopping,
        EpochLog,
        History,
        ModelCheckpoint,
        ProgressBar,
    )
    from numbce.nn.layers import (
        Dropout,
        Flatten,
        Layer,
        LeakyReLU,
        Linear,
        ReLU,
        Sigmoid,
        Tanh,
    )
    from numbce.nn.network import MLP, Sequential, loss_families
except ModuleNotFoundError as error:
    raise needs_the_nn_extra("numbce.nn", error) from error


def __getattr__(name: str):
    """``MLPBinaryClassifier``, imported on first use (scikit-learn takes a second to
    import, which training a network does not need)."""
    if name == "MLPBinaryClassifier":
        try:
            from numbce.nn.sklearn import MLPBinaryClassifier
        except ModuleNotFoundError as error:
            raise needs_the_nn_extra("numbce.nn", error) from error
        return MLPBinaryClassifier
    raise AttributeError(f"module 'numbce.nn' has no attribute {name!r}")


__all__ = [
    "MLP",
    "Callback",
    "Dropout",
    "EarlyStopping",
    "EpochLog",
    "Flatten",
    "History",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MLPBinaryClassifier",
    "ModelCheckpoint",
    "ProgressBar",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "loss_families",
    "needs_the_nn_extra",
]
