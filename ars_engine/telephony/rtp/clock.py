"""A periodic kernel timer for the RTP pacer: Linux ``timerfd`` through ctypes.

The event loop's own timers wait in ``epoll_wait``, whose timeout is whole milliseconds (rounded
up), so a packet scheduled with ``asyncio.sleep`` leaves 0-1 ms late and inter-arrival times
spread by ±1 ms. A timerfd armed on absolute ``CLOCK_MONOTONIC`` deadlines (the clock of
``loop.time()``) becomes readable at the deadline itself, to the kernel's timer slack (50 µs), and
one periodic timer serves every stream. Python 3.13 has ``os.timerfd_create``; on 3.11 we call
libc. Where it is missing (not Linux), :func:`periodic_timer` returns None and the pacer sleeps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys

__all__ = ["PeriodicTimer", "periodic_timer"]

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


def _timespec(seconds: float) -> _Timespec:
    whole = int(seconds)
    return _Timespec(whole, round((seconds - whole) * 1e9))


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (ctypes.c_int, ctypes.c_int,
                                         ctypes.POINTER(_Itimerspec), ctypes.c_void_p)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class PeriodicTimer:
    """A timerfd that fires at ``first`` and every ``interval`` seconds after it (absolute
    ``time.monotonic()`` times). Wait for its :meth:`fileno` to be readable, then :meth:`read`
    the number of periods elapsed since the last read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def read(self) -> int:
        """Periods elapsed since the last read (0 if none: a spurious wake-up)."""
        try:
            data = os.read(self.fd, 8)
        except BlockingIOError:
            return 0
        return int(struct.unpack("=Q", data)[0])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def periodic_timer(first: float, interval: float) -> PeriodicTimer | None:
    """A kernel timer firing at ``first`` (``time.monotonic()`` seconds) and every ``interval``
    after; None where timerfd is not available (the caller falls back to sleeping)."""
    if _LIBC is None:
        return None
    fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
    if fd < 0:
        return None
    spec = _Itimerspec(_timespec(interval), _timespec(max(first, 1e-9)))
    if _LIBC.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
        os.close(fd)
        return None
    return PeriodicTimer(fd)
