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
