"""A preallocated ring of rendered samples between the renderer and the real-time clock.

The clock (a sound-device callback or the software clock) only copies out of it; the renderer
thread keeps it topped up ahead of the clock. Audio-side events (a frame becoming audible) ride
along with their sample position, so they are announced when they are heard, not when rendered.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import numpy as np


class SampleRing:
    """Single-writer, single-reader ring of float32 samples (channels, capacity)."""

    def __init__(self, channels: int, capacity: int) -> None:
        self._buffer = np.zeros((channels, capacity), dtype=np.float32)
        self._capacity = capacity
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._written = 0  # total samples ever written
        self._read = 0  # total samples ever read
        self._events: collections.deque[tuple[int, Any]] = collections.deque()

    @property
    def capacity(self) -> int:
        return self._capacity

    def wait_for_room(self, samples: int, timeout: float) -> bool:
        """Block the renderer until ``samples`` fit, or the timeout passes."""
        with self._room:
            return self._room.wait_for(
                lambda: self._capacity - (self._written - self._read) >= samples, timeout
            )

    def wait_for_samples(self, samples: int, timeout: float) -> bool:
        """Block a software clock until ``samples`` are ready, or the timeout passes. (A device
        clock cannot wait: it reads what there is.)"""
        with self._room:
            return self._room.wait_for(lambda: self._written - self._read >= samples, timeout)

    def write(self, samples: np.ndarray, events: list[tuple[int, Any]] = ()) -> None:
        """Append samples (channels, n); ``events`` are (stream position, payload) pairs."""
        n = samples.shape[1]
        with self._lock:
            if self._written - self._read + n > self._capacity:
                raise OverflowError("ring is full: wait_for_room() first")
            start = self._written % self._capacity
            first = min(n, self._capacity - start)
            self._buffer[:, start : start + first] = samples[:, :first]
            self._buffer[:, : n - first] = samples[:, first:]
            self._written += n
            self._events.extend(events)
            self._room.notify_all()

    def read_into(self, out: np.ndarray) -> tuple[int, list[Any]]:
        """Copy the next ``out.shape[1]`` samples into ``out`` (channels, n).

        Returns how many samples were missing (zero-filled at the end: an underrun) and the
        payloads of events whose position has now been reached. Never blocks for long: this runs
        on the real-time clock.
        """
        n = out.shape[1]
        with self._lock:
            have = min(n, self._written - self._read)
            start = self._read % self._capacity
            first = min(have, self._capacity - start)
            out[:, :first] = self._buffer[:, start : start + first]
            out[:, first:have] = self._buffer[:, : have - first]
            out[:, have:] = 0.0
            self._read += have
            due = []
            while self._events and self._events[0][0] < self._read:
                due.append(self._events.popleft()[1])
            self._room.notify_all()
        return n - have, due
