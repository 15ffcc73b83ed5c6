"""PatchMatch on uint8 arrays, in this process or in a second one, so two views can fill at the same time.

pypatchmatch's native ``PM_inpaint`` releases the GIL (ctypes) and keeps its random state per thread, but the seed
it starts from is one process-global value read when a call begins (``PM_set_random_seed``): two threads with
different seeds could each start from the other's. A second *process* has its own copy of that value, so
:class:`PatchMatchWorker` runs one of two concurrent fills there and the results are exactly what the same calls
give one after the other (tested). Measured on the shared 2 cores, one 47 %-hole 512×384 view: 1.85 s alone, two
at once 2.44 s (CPU 4.4 s: the two cores also share caches), i.e. a pair of views in 0.66× the time of the pair in
sequence.

The worker is a plain ``python -m models.patchmatch_worker`` child reading pickled requests on stdin and writing
pickled results on stdout: unlike ``multiprocessing``'s spawn, it does not re-import the parent's ``__main__``
(the app, with Gradio and torch) and starts in ~0.3 s. It imports numpy, OpenCV and pypatchmatch only.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
from typing import BinaryIO

import numpy as np

logger = logging.getLogger(__name__)

SEED_MODULUS = 2**32  # pypatchmatch keeps its seed as a C unsigned int

# pypatchmatch's seed is process-global state in the native library: seeding and inpainting must not interleave
# between threads of one process, or two concurrent requests would each get the other's random stream.
_PATCHMATCH_LOCK = threading.Lock()


def load_patchmatch():
    """The ``patch_match`` module if its native library loads, else None."""
    try:
        from patchmatch import patch_match
    except ImportError:
        return None
    return patch_match if patch_match.patchmatch_available else None


def inpaint_uint8(
    pixels: np.ndarray,  # [H, W, 3] uint8
    hole: np.ndarray,  # [H, W] uint8, non-zero = fill
    seed: int,
    patch_size: int,
    solve_max_side: int | None,
) -> np.ndarray:  # [H, W, 3] uint8
    """PatchMatch at most at ``solve_max_side`` (the hole upsampled back bilinearly), seeded, in this process.

    Raises:
        RuntimeError: pypatchmatch's native library does not load here.
    """
    import cv2

    patch_match = load_patchmatch()
    if patch_match is None:
        raise RuntimeError("pypatchmatch's native library is unavailable")
    height, width = hole.shape
    scale = 1.0 if solve_max_side is None else min(1.0, solve_max_side / max(height, width))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))  # (w, h) for OpenCV
    if scale < 1.0:
        small = cv2.resize(pixels, small_size, interpolation=cv2.INTER_AREA)  # [h, w, 3]
        # A reduced pixel is a hole if any full-resolution pixel under it is: no hole colour leaks in.
        small_hole = (cv2.resize(hole, small_size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8) * 255
        if small_hole.all():
            scale = 1.0
    if scale >= 1.0:
        small, small_hole = pixels, hole
    with _PATCHMATCH_LOCK:
        patch_match.set_random_seed(int(seed) % SEED_MODULUS)
        filled = patch_match.inpaint(small, small_hole, patch_size=patch_size)
    if scale >= 1.0:
        return filled
    return cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)  # [H, W, 3]


class PatchMatchWorker:
    """A second process that runs :func:`inpaint_uint8`, started on first use; not thread-safe (its owner holds a
    lock around ``send`` + ``receive``).

    ``send`` hands it one request and returns at once; ``receive`` waits for that request's result. Any failure of
    the process (it died, was killed, could not start) raises :class:`WorkerError` and closes it; the next ``send``
    starts a new one. The child exits by itself when this side's pipe closes (at exit, or when the worker is
    garbage-collected), so no process outlives its parent.
    """

    def __init__(self):
        self._process: subprocess.Popen | None = None

    def send(self, pixels: np.ndarray, hole: np.ndarray, seed: int, patch_size: int, solve_max_side: int | None):
        try:
            if self._process is None or self._process.poll() is not None:
                self._process = self._start()
            pickle.dump((pixels, hole, int(seed), int(patch_size), solve_max_side), self._process.stdin, protocol=5)
            self._process.stdin.flush()
        except (OSError, pickle.PickleError) as error:
            self.close()
            raise WorkerError(f"could not send to the PatchMatch worker: {error}") from error

    def receive(self) -> np.ndarray:  # [H, W, 3] uint8
        try:
            status, payload = pickle.load(self._process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError) as error:
            self.close()
            raise WorkerError(f"the PatchMatch worker stopped: {error!r}") from error
        if status != "ok":
            raise WorkerError(f"the PatchMatch worker failed: {payload}")
        return payload

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

    @staticmethod
    def _start() -> subprocess.Popen:
        # the child finds this package the way the parent did (an installed copy or a checkout on sys.path)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        return subprocess.Popen(
            [sys.executable, "-m", "models.patchmatch_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )


class WorkerError(RuntimeError):
    """The PatchMatch worker process could not run a request."""


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer pickled ``(pixels, hole, seed, patch_size, solve_max_side)`` requests until ``requests`` ends."""
    while True:
        try:
            pixels, hole, seed, patch_size, solve_max_side = pickle.load(requests)
        except EOFError:
            return
        try:
            reply = ("ok", inpaint_uint8(pixels, hole, seed, patch_size, solve_max_side))
        except Exception as error:  # noqa: BLE001 - any failure goes back to the parent, which raises it
            reply = ("error", f"{type(error).__name__}: {error}")
        pickle.dump(reply, replies, protocol=5)
        replies.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
