"""A name -> loss-class registry, so run parameters can pick a loss by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

LossClass = TypeVar("LossClass", bound=type[nn.Module])

LOSSES: dict[str, type[nn.Module]] = {}


def register_loss(name: str) -> Callable[[LossClass], LossClass]:
    """Class decorator: make an ``nn.Module`` loss available to :func:`create_loss` as ``name``."""

    def decorator(cls: LossClass) -> LossClass:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"register_loss({name!r}) expects an nn.Module subclass, got {cls!r}")
        known = LOSSES.get(name)
        # Re-registering the same class (a module reload) is harmless; a different one is a clash.
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"loss name {name!r} is already registered to {known.__qualname__}")
        LOSSES[name] = cls
        return cls

    return decorator


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name`` with ``kwargs``; unknown names or kwargs raise."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}") from None
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(kwargs) - set(params))
    if unknown and not takes_any:
        accepted = ", ".join(n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL)
        raise TypeError(f"unknown argument(s) for loss {name!r}: {', '.join(unknown)}; accepted: {accepted}")
    return cls(**kwargs)
