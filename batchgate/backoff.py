"""Exponential backoff, the one way batchgate waits before trying again."""

from __future__ import annotations


class Backoff:
    """Delays that start at `first` seconds and double up to `most`; `reset` after a success."""

    def __init__(self, first: float = 0.1, most: float = 5.0) -> None:
        self.first = first
        self.most = most
        self._next = first

    def next(self) -> float:
        """The delay to wait now; the one after it is twice as long (up to `most`)."""
        delay = self._next
        self._next = min(2 * delay, self.most)
        return delay

    def peek(self) -> float:
        """The delay `next` would give, without moving on."""
        return self._next

    def reset(self) -> None:
        self._next = self.first
