"""The registry of loss families: one module per family, one line here.

Adding a loss is a module declaring a :class:`~numbce.losses._family.Family` and a line in
:data:`FAMILIES`; the public functions, loss classes, backends, oracle, accuracy tables,
tests and benchmarks are generated from it.
"""

from numbce.losses import bce, bce_logits, focal
from numbce.losses._family import Family, Option, Primitives

FAMILIES: dict[str, Family] = {
    family.name: family for family in (bce.FAMILY, bce_logits.FAMILY, focal.FAMILY)
}

__all__ = ["FAMILIES", "Family", "Option", "Primitives"]
