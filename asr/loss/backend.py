"""Backend switch: the same k2-named calls run our PyTorch code or the compiled kernels of fast_rnnt or k2."""

from __future__ import annotations

import functools
import importlib
import inspect
from types import ModuleType
from typing import Callable, TypeVar

BACKENDS = ("torch", "fast_rnnt", "k2")
_INSTALL_HINT = {
    "fast_rnnt": "build it with scripts/build_fast_rnnt.sh, as docs/fast_rnnt.md describes (PyPI has only its sdist)",
    "k2": "install a k2 wheel matching your torch from https://k2-fsa.github.io/k2/installation/",
}
_state = {"name": "torch", "module": None}

F = TypeVar("F", bound=Callable)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as e:  # also catches a broken build (undefined symbols)
        raise RuntimeError(
            f"loss backend {name!r} is not installed or fails to import ({e}); {_INSTALL_HINT[name]}"
        ) from e


def set_backend(name: str) -> None:
    """Selects the implementation behind asr.loss's functions: "torch" (ours, default), "fast_rnnt" or "k2"."""
    if name not in BACKENDS:
        raise ValueError(f"loss backend must be one of {BACKENDS}, got {name!r}")
    module = None if name == "torch" else _import(name)
    _state["name"], _state["module"] = name, module


def get_backend() -> str:
    """Name of the selected backend."""
    return _state["name"]


def dispatch(torch_fn: F) -> F:
    """Wraps one of our functions so that it calls the function of the same name in the selected backend."""
    signature = inspect.signature(torch_fn)

    @functools.wraps(torch_fn)
    def wrapper(*args, **kwargs):
        module = _state["module"]
        if module is None:
            return torch_fn(*args, **kwargs)
        # keywords only: the backends do not all order the optional arguments alike
        bound = signature.bind(*args, **kwargs)
        return getattr(module, torch_fn.__name__)(**bound.arguments)

    return wrapper  # type: ignore[return-value]
