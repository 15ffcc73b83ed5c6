"""Reading the weight files this project trains and ships (``models/weights/*.safetensors``).

Each file carries a ``format`` tag and its network config in the safetensors metadata, so a file of the wrong kind
is refused with a message instead of failing deep inside ``load_state_dict``.
"""

from __future__ import annotations

from pathlib import Path


class WeightsError(ValueError):
    """A shipped-weights file is missing, unreadable or not of the expected kind."""


def read_weights_metadata(
    path: str | Path,
    expected_format: str,
    what: str,
    retrain: str,
    error: type[WeightsError] = WeightsError,
) -> dict[str, str]:
    """The safetensors metadata of a project weights file, checked for its ``format`` tag.

    Args:
        path: the ``.safetensors`` file.
        expected_format: the ``format`` value the file must carry (e.g. ``"worldstitch-light-completer/1"``).
        what: what the weights are, for messages (``"light completer weights"``).
        retrain: the command that makes the file again, for the "not found" message.
        error: the exception class to raise (a :class:`WeightsError` subclass of the caller's module).

    Returns:
        The metadata (string to string).

    Raises:
        WeightsError: (of class ``error``) the file is missing, not safetensors, or of another format.
    """
    from safetensors import SafetensorError, safe_open  # noqa: PLC0415 - keep module import light

    path = Path(path).expanduser()
    if not path.is_file():
        raise error(
            f"{what} {str(path)!r} not found: the project ships them in models/weights/; retrain with {retrain}"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise error(f"{what} {path.name!r} are not a readable safetensors file: {err}") from None
    if metadata.get("format") != expected_format:
        raise error(
            f"{path.name!r} is a safetensors file but not {what} (metadata format {metadata.get('format')!r}, "
            f"expected {expected_format!r})"
        )
    return metadata


def save_weights(net, path: str | Path, weights_format: str, extra: dict[str, str] | None = None) -> Path:
    """Write a network (a module with a dataclass ``config``) to safetensors atomically, its config in the metadata.

    Args:
        net: ``torch.nn.Module`` with a ``config`` dataclass attribute (JSON-serialisable fields).
        path: the ``.safetensors`` file to write.
        weights_format: the ``format`` tag readers check.
        extra: more metadata (training command, seed, metrics), stored as strings.

    Returns:
        ``path``.
    """
    import json  # noqa: PLC0415
    from dataclasses import asdict  # noqa: PLC0415

    from safetensors.torch import save_file  # noqa: PLC0415

    from core.files import atomic_path  # noqa: PLC0415

    metadata = {"format": weights_format, "config": json.dumps(asdict(net.config))}
    metadata.update({str(k): str(v) for k, v in (extra or {}).items()})
    tensors = {name: value.detach().float().cpu().contiguous() for name, value in net.state_dict().items()}
    path = Path(path)
    with atomic_path(path, suffix=".safetensors") as temp:
        save_file(tensors, str(temp), metadata=metadata)
    return path


def load_weights(
    path: str | Path,
    metadata: dict[str, str],
    build,
    config_type,
    error: type[WeightsError] = WeightsError,
    config_defaults: dict | None = None,
):
    """Build a network from a weights file whose metadata was read (and checked) by :func:`read_weights_metadata`.

    Args:
        path: the ``.safetensors`` file.
        metadata: its metadata (holds the JSON network config).
        build: ``config -> nn.Module``.
        config_type: the config dataclass (JSON lists become tuples).
        error: the exception class to raise.
        config_defaults: values for config fields that files written before the field existed lack.

    Returns:
        The network on the CPU, in eval mode.

    Raises:
        WeightsError: (of class ``error``) a bad config, weights that do not fit it, or non-finite values.
    """
    import json  # noqa: PLC0415

    import torch  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415

    name = Path(path).name
    try:
        raw = {**(config_defaults or {}), **json.loads(metadata["config"])}
        config = config_type(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    except (KeyError, TypeError, ValueError) as err:
        raise error(f"{name!r}: bad network config in the metadata: {err}") from None
    net = build(config)
    try:
        net.load_state_dict(load_file(str(Path(path).expanduser()), device="cpu"))
    except (RuntimeError, KeyError, OSError, ValueError) as err:
        raise error(f"{name!r}: weights do not fit the stored network config: {err}") from None
    for key, value in net.state_dict().items():
        if not bool(torch.isfinite(value).all()):
            raise error(f"{name!r}: weights contain non-finite (NaN or infinite) values ({key})")
    return net.eval()
