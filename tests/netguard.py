"""Fixtures that prove a test touches no network and finds no real model cache.

Import the fixtures into a test module (``from tests.netguard import no_network, tiny_models  # noqa: F401``).

* ``no_network`` — HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set, HF_HOME pointed at an empty temp dir, and any
  ``socket.connect`` to a non-loopback address raises ``NetworkBlocked``.
* ``tiny_models`` — the tiny random models of :mod:`models.tiny`, written once per session; name -> folder.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest


class NetworkBlocked(RuntimeError):
    """A test tried to open a connection off this machine."""


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: would need DNS, which is itself network
        return False


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Offline Hugging Face environment with an empty cache, and a socket guard."""
    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded_connect(self, address):
        if not _is_local(address):
            raise NetworkBlocked(f"test tried to connect to {address!r}")
        return real_connect(self, address)

    def guarded_connect_ex(self, address):
        if not _is_local(address):
            raise NetworkBlocked(f"test tried to connect to {address!r}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    yield home


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Every tiny model written once: {"outpainter", "depth-metric", "depth-relative", "depth-zoe", "completer"}."""
    from models.tiny import save_all

    return save_all(tmp_path_factory.mktemp("tiny-models"))
