"""Shared loading helpers: where a model reference points, whether its weights are on this machine, devices, errors.

A *model reference* is what a user types: a local folder (``./my-inpainter``) or a Hugging Face Hub id
(``sd2-community/stable-diffusion-2-inpainting``). :func:`resolve_model` turns it into something
``from_pretrained`` can load, and refuses — with one clear :class:`ModelUnavailableError` — when the weights are
neither on disk nor allowed to download. The Hub cache location is read from the environment at call time
(``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), so tests can point it at a temp dir.

Nothing here touches the network: cache look-ups use ``huggingface_hub.try_to_load_from_cache`` only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


class ModelUnavailableError(OSError):
    """A model the user asked for cannot be loaded (not on disk, not in the cache, or downloading is off).

    An ``OSError`` so callers that already report file problems (the CLI) report this one the same way.
    """


@dataclass(frozen=True)
class ModelSource:
    """Where one model comes from."""

    reference: str
    """What the user asked for (folder or Hub id)."""

    location: str
    """What to hand to ``from_pretrained``: a local folder, or the Hub id when it will be downloaded."""

    local: bool
    """True when ``location`` is a folder on this machine (given directly or found in the Hub cache)."""


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache folder, read from the environment now (not at import time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def offline_mode() -> bool:
    """True when the environment forbids downloads (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def looks_like_hub_id(reference: str) -> bool:
    """``org/name`` with Hub-legal characters (a local path that exists always wins over this)."""
    return bool(_HUB_ID.match(reference))


def cached_snapshot(repo_id: str, marker_file: str) -> Path | None:
    """The cached snapshot folder of ``repo_id`` if ``marker_file`` and at least one weight file are in it."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, marker_file, cache_dir=str(hub_cache_dir()))
    except (ValueError, OSError):  # malformed id, unreadable cache
        return None
    if not isinstance(found, str):
        return None
    snapshot = Path(found).parent
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in snapshot.rglob("*") if p.is_file()):
        return None
    return snapshot


def is_cached(repo_id: str, marker_file: str) -> bool:
    return cached_snapshot(repo_id, marker_file) is not None


def unavailable_message(what: str, reference: str, offline_alternative: str) -> str:
    """The one message every missing model gets: which model, how to get it, how to run without it."""
    if looks_like_hub_id(reference):
        how = f"download it with `hf download {reference}`, or pass a local folder that holds it"
    else:
        how = "pass an existing local folder in diffusers/transformers layout, or a Hugging Face Hub id"
    return (
        f"{what} {reference!r} is not available on this machine: {how}. "
        f"To run without downloaded models use `--profile offline` (uses {offline_alternative})."
    )


def resolve_model(
    reference: str, *, what: str, marker_file: str, offline_alternative: str, allow_download: bool = True
) -> ModelSource:
    """Turn a folder or Hub id into something ``from_pretrained`` can load, or raise ModelUnavailableError.

    Args:
        reference: local folder or Hub id.
        what: human name for messages ("outpainter", "depth model", "depth completer").
        marker_file: file every such model has ("model_index.json" for diffusers, "config.json" for transformers).
        offline_alternative: what ``--profile offline`` would use instead (for the message).
        allow_download: when False (or HF_HUB_OFFLINE is set) a Hub id must already be in the local cache.
    """
    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / marker_file).is_file():
            raise ModelUnavailableError(
                f"{what} folder {str(path)!r} has no {marker_file}: it is not a saved "
                f"{'diffusers pipeline' if marker_file == 'model_index.json' else 'transformers model'}"
            )
        return ModelSource(reference, str(path), True)
    if not looks_like_hub_id(reference):
        raise ModelUnavailableError(unavailable_message(what, reference, offline_alternative))
    snapshot = cached_snapshot(reference, marker_file)
    if snapshot is not None:
        return ModelSource(reference, str(snapshot), True)
    if not allow_download or offline_mode():
        raise ModelUnavailableError(unavailable_message(what, reference, offline_alternative))
    return ModelSource(reference, reference, False)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``dtype`` if given (name or dtype), else float16 on CUDA and float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        names = {
            "float16": torch.float16,
            "fp16": torch.float16,
            "bfloat16": torch.bfloat16,
            "float32": torch.float32,
            "fp32": torch.float32,
        }
        if dtype not in names:
            raise ValueError(f"dtype must be one of {sorted(names)}, got {dtype!r}")
        return names[dtype]
    return torch.float16 if device.type == "cuda" else torch.float32


def load_failed(what: str, source: ModelSource, err: Exception, offline_alternative: str) -> ModelUnavailableError:
    """Wrap a ``from_pretrained`` failure in the project's one error type, keeping the cause."""
    if not source.local:
        return ModelUnavailableError(
            unavailable_message(what, source.reference, offline_alternative) + f" (download failed: {err})"
        )
    return ModelUnavailableError(f"{what} {source.reference!r} could not be loaded from {source.location}: {err}")
