"""Preallocated rings on both sides of the real-time clock.

``SampleRing``: renderer -> clock. The renderer thread keeps it topped up ahead of the clock;
the clock (a sound-device callback or the software clock) only copies out of it.

``PlayedTap``: clock -> publisher. The clock copies what it just played into it and returns;
the publisher thread reads it in fixed blocks and does everything else (events, encoding,
sinks), so the clock's work per block is two copies, whatever the number of listeners. The
clock never waits for it: a publisher that falls more than the tap's capacity behind skips
ahead (its sinks see a jump in sample position, never a stalled sound card).
"""

from __future__ import annotations

import dataclasses
import threading

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

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def buffered(self) -> int:
        """Samples written and not yet read: how long the next one written waits to be heard.
        Read without the lock, so that it never holds up the clock (a device callback waiting
        on a descheduled renderer was measured as underruns on a busy machine); the two counts
        may be a block apart, which is the estimate's resolution anyway."""
        return self._written - self._read

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

    def write(self, samples: np.ndarray) -> None:
        """Append samples (channels, n)."""
        n = samples.shape[1]
        with self._lock:
            if self._written - self._read + n > self._capacity:
                raise OverflowError("ring is full: wait_for_room() first")
            _copy_in(self._buffer, self._written, samples)
            self._written += n
            self._room.notify_all()

    def read_into(self, out: np.ndarray) -> int:
        """Copy the next ``out.shape[1]`` samples into ``out`` (channels, n; any strides, so a
        device's interleaved buffer can be passed transposed). Returns how many samples were
        missing (zero-filled at the end: an underrun). Never blocks for long."""
        n = out.shape[1]
        with self._lock:
            have = min(n, self._written - self._read)
            _copy_out(self._buffer, self._read, out[:, :have])
            out[:, have:] = 0.0
            self._read += have
            self._room.notify_all()
        return n - have


@dataclasses.dataclass(frozen=True)
class PlayedBlock:
    """``samples`` (channels, n) as heard from stream position ``sample_position``."""

    sample_position: int
    samples: np.ndarray


class PlayedTap:
    """What the clock played, for the publisher thread; the writer never blocks."""

    def __init__(self, channels: int, capacity: int) -> None:
        self._buffer = np.zeros((channels, capacity), dtype=np.float32)
        self._capacity = capacity
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._written = 0
        self._read = 0
        self._missing = 0

    @property
    def missing_samples(self) -> int:
        """Samples the clock found missing in the ring, in all (heard as silence)."""
        return self._missing

    def write(self, samples: np.ndarray, missing_samples: int) -> None:
        """The clock played ``samples`` (channels, n), of which ``missing_samples`` were an
        underrun's silence (n at most the capacity). Copies and signals; the oldest samples are
        overwritten if the reader lags by more than the capacity."""
        with self._lock:
            _copy_in(self._buffer, self._written, samples)
            self._written += samples.shape[1]
            self._missing += missing_samples
            self._ready.notify()

    def read(self, block_samples: int, timeout: float) -> PlayedBlock | None:
        """The next block of ``block_samples``, waiting up to ``timeout`` for it; None if it
        did not come. After a lag beyond the capacity, reading resumes at the oldest whole
        block still held."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._written - self._read >= block_samples, timeout):
                return None
            oldest = self._written - self._capacity
            if self._read < oldest:
                self._read = -(-oldest // block_samples) * block_samples
            samples = np.empty((self._buffer.shape[0], block_samples), dtype=np.float32)
            _copy_out(self._buffer, self._read, samples)
            block = PlayedBlock(self._read, samples)
            self._read += block_samples
        return block


def _copy_in(buffer: np.ndarray, position: int, samples: np.ndarray) -> None:
    """Write ``samples`` into the circular ``buffer`` at absolute ``position``."""
    capacity, n = buffer.shape[1], samples.shape[1]
    start = position % capacity
    first = min(n, capacity - start)
    buffer[:, start : start + first] = samples[:, :first]
    buffer[:, : n - first] = samples[:, first:]


def _copy_out(buffer: np.ndarray, position: int, out: np.ndarray) -> None:
    """Fill ``out`` from the circular ``buffer`` at absolute ``position``."""
    capacity, n = buffer.shape[1], out.shape[1]
    start = position % capacity
    first = min(n, capacity - start)
    out[:, :first] = buffer[:, start : start + first]
    out[:, first:] = buffer[:, : n - first]


class InputRing:
    """Live input, for captures: the device callback copies each block in and notes when it
    arrived; a capture reads a span of absolute sample indices back.

    Mono float32 (the chosen input channel), preallocated. The writer never blocks and never
    waits for a reader: the oldest samples are overwritten. Positions and times are read
    together under a lock held for one copy.
    """

    def __init__(self, capacity: int) -> None:
        self._buffer = np.zeros((1, capacity), dtype=np.float32)
        self._capacity = capacity
        self._lock = threading.Lock()
        self._written = 0  # total samples ever written
        self._arrived_at = 0.0  # monotonic time the last block arrived

    @property
    def capacity(self) -> int:
        return self._capacity

    def write(self, samples: np.ndarray, arrived_at: float) -> None:
        """Append ``samples`` (1, n), which arrived at monotonic time ``arrived_at``; n at most
        the capacity."""
        with self._lock:
            _copy_in(self._buffer, self._written, samples)
            self._written += samples.shape[1]
            self._arrived_at = arrived_at

    def position(self) -> tuple[int, float, int]:
        """(samples written in all, when the last of them arrived, samples still held)."""
        with self._lock:
            return self._written, self._arrived_at, min(self._written, self._capacity)

    def read(self, first: int, last: int) -> np.ndarray | None:
        """A copy of absolute samples ``[first, last)``; None unless the ring holds them all."""
        out = np.empty((1, max(0, last - first)), dtype=np.float32)
        with self._lock:
            if first < max(0, self._written - self._capacity) or last > self._written or last < first:
                return None
            _copy_out(self._buffer, first, out)
        return out[0]
