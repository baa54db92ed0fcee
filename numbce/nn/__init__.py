"""A small neural-network library in NumPy whose loss and loss gradient come from the
numbce kernels: layers with hand-derived backward passes, networks with Keras-style
training, and a scikit-learn classifier. Optimizers live in :mod:`numbce.optim`.

Needs the ``nn`` extra (scikit-learn, matplotlib, tqdm).
"""

from numbce.nn.layers import Flatten, Layer, Linear, ReLU, Sigmoid, Tanh
from numbce.nn.model import MLP, History, Sequential
from numbce.nn.sklearn import MLPBinaryClassifier

__all__ = [
    "MLP",
    "Flatten",
    "History",
    "Layer",
    "Linear",
    "MLPBinaryClassifier",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
]
