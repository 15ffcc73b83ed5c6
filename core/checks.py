"""Input checks at public boundaries: one helper that names the argument and shows what it actually got.

Shapes are written the way the code's comments write them (``"H W 3"``, ``"N"``): a letter is a size bound on first
use and must match on later uses (within one call, or across calls sharing ``sizes``); a number must match exactly.
Never use ``assert`` for user data: these raise ``ValueError`` with the actual shape and dtype in the message.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Kind = Literal["any", "float", "bool", "int"]


def describe(value: object) -> str:
    """``[2, 3] torch.float32`` for a tensor, the type name for anything else (for error messages)."""
    if isinstance(value, Tensor):
        return f"{list(value.shape)} {value.dtype}"
    return type(value).__name__


def check_tensor(
    value: object,
    shape: str,
    name: str,
    kind: Kind = "any",
    sizes: dict[str, int] | None = None,
) -> dict[str, int]:
    """Raise ``ValueError`` unless ``value`` is a tensor of the given shape pattern and kind.

    Args:
        value: what the caller passed.
        shape: space-separated dimensions, letters for named sizes, digits for fixed ones, e.g. ``"H W 3"``.
        name: the argument's name, used in the message.
        kind: ``"float"`` (floating point), ``"bool"``, ``"int"`` (integer, not bool) or ``"any"``.
        sizes: named sizes bound by earlier checks; updated in place with the ones bound here.

    Returns:
        The named sizes (the same dict as ``sizes`` when given).

    Raises:
        ValueError: naming the argument, the expected pattern (with bound sizes filled in) and what was given.

    Example:
        >>> sizes = check_tensor(torch.zeros(4, 5, 3), "H W 3", "image", "float")
        >>> sizes
        {'H': 4, 'W': 5}
        >>> check_tensor(torch.zeros(4, 6, dtype=torch.bool), "H W", "mask", "bool", sizes)
        Traceback (most recent call last):
        ...
        ValueError: mask must be a bool tensor [H=4, W=5], got [4, 6] torch.bool
    """
    sizes = {} if sizes is None else sizes
    dims = shape.split()
    expected = ", ".join(f"{d}={sizes[d]}" if d in sizes else d for d in dims)
    what = {"any": "a tensor", "float": "a float tensor", "bool": "a bool tensor", "int": "an integer tensor"}[kind]

    def fail() -> ValueError:
        return ValueError(f"{name} must be {what} [{expected}], got {describe(value)}")

    if not isinstance(value, Tensor) or value.ndim != len(dims):
        raise fail()
    kind_ok = {
        "any": True,
        "float": value.is_floating_point(),
        "bool": value.dtype == torch.bool,
        "int": not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool,
    }[kind]
    if not kind_ok:
        raise fail()
    bound = dict(sizes)
    for dim, size in zip(dims, value.shape):
        if dim.isdigit():
            if size != int(dim):
                raise fail()
        elif bound.setdefault(dim, size) != size:
            raise fail()
    sizes.update(bound)
    return sizes


def check_choice(value: object, name: str, allowed: tuple[str, ...]) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``; returns it.

    Example:
        >>> check_choice("disk", "shape", ("square", "disk"))
        'disk'
    """
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    return value


def check_completion_inputs(
    image: object,  # [H, W, 3] float
    known_depth: object,  # [H, W] float
    known_mask: object,  # [H, W] bool
) -> tuple[int, int]:
    """The arguments every ``DepthCompleter.complete`` takes, checked together; returns ``(height, width)``.

    Example:
        >>> check_completion_inputs(torch.zeros(2, 3, 3), torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))
        (2, 3)
    """
    sizes = check_tensor(image, "H W 3", "image", "float")
    check_tensor(known_depth, "H W", "known_depth", "float", sizes)
    check_tensor(known_mask, "H W", "known_mask", "bool", sizes)
    return sizes["H"], sizes["W"]
