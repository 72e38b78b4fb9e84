"""Masking secrets: in parameter dumps, and in log output as a last line of defence.

Code should never log a secret in the first place (secret parameters are ``Secret`` objects that
print as stars, exceptions name parameters, not values). :class:`ScrubbingFilter` is defence in
depth for the mistakes that slip through: while a call runs, its secret values are registered in
a :class:`SecretRegistry`, and every log record reaching a handler is scrubbed of them, message,
arguments and traceback text included.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_REGISTRY",
    "MIN_SECRET_LENGTH",
    "ScrubbingFilter",
    "SecretRegistry",
    "SecretToken",
    "install",
    "mask_params",
    "mask_value",
]

# Shorter values are not registered: scrubbing every "1" or "12" would mangle every log line
# (times, counts, ids) and hide nothing worth hiding.
MIN_SECRET_LENGTH = 4


def mask_value(value: str) -> str:
    """A mask of the same length as ``value`` (``"918273"`` → ``"******"``)."""
    return "*" * len(value)


def mask_params(params: Mapping[str, object], secret_names: Iterable[str]) -> dict[str, object]:
    """A copy of ``params`` where the values named in ``secret_names`` are masked (as text of
    the same length as their ``str()``); other values are kept as they are, and a secret that is
    ``None`` (not given) stays ``None``."""
    secret = frozenset(secret_names)
    return {
        name: mask_value(str(value)) if name in secret and value is not None else value
        for name, value in params.items()
    }


@dataclass(frozen=True, slots=True)
class SecretToken:
    """One registration of a secret in a :class:`SecretRegistry`; give it back to
    :meth:`SecretRegistry.remove` when the secret is no longer live. Holds no value."""

    serial: int  # 0: a value too short to register; removing it does nothing


class SecretRegistry:
    """The secret strings live in this process (e.g. the codes of the calls running now).

    Registrations are counted: two calls sharing a value each add it, and the value stays
    scrubbed until both have removed it. Thread-safe: calls run on worker threads and log from
    anywhere.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._serial = 0
        self._by_token: dict[int, str] = {}
        self._counts: dict[str, int] = {}
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> SecretToken:
        """Register ``value`` and return the token that removes this registration. Values
        shorter than :data:`MIN_SECRET_LENGTH` are ignored (the token is inert)."""
        if not isinstance(value, str):
            raise TypeError("a secret must be a str")
        if len(value) < MIN_SECRET_LENGTH:
            return SecretToken(0)
        with self._lock:
            self._serial += 1
            self._by_token[self._serial] = value
            self._counts[value] = self._counts.get(value, 0) + 1
            self._pattern = None
            return SecretToken(self._serial)

    def remove(self, entry: SecretToken | str) -> None:
        """Forget a registration: a token removes the one it was given for (removing it twice
        is harmless); a string removes every registration of that value."""
        with self._lock:
            if isinstance(entry, SecretToken):
                value = self._by_token.pop(entry.serial, None)
                if value is None:
                    return
                self._counts[value] -= 1
                if self._counts[value] == 0:
                    del self._counts[value]
            else:
                if self._counts.pop(entry, None) is None:
                    return
                for serial in [s for s, v in self._by_token.items() if v == entry]:
                    del self._by_token[serial]
            self._pattern = None

    def __len__(self) -> int:
        """How many distinct values are registered."""
        with self._lock:
            return len(self._counts)

    def __contains__(self, value: object) -> bool:
        with self._lock:
            return value in self._counts

    def scrub(self, text: str) -> str:
        """``text`` with every registered value replaced by its mask. Longer values are tried
        first, so a secret containing another one is masked whole."""
        pattern = self._compiled()
        if pattern is None:
            return text
        return pattern.sub(lambda match: mask_value(match.group()), text)

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._counts:
                # An alternation tries its branches in order: longest first gives the longest
                # match at each position.
                values = sorted(self._counts, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in values))
            return self._pattern

    def __repr__(self) -> str:  # never the values
        return f"<SecretRegistry: {len(self)} values>"


DEFAULT_REGISTRY = SecretRegistry()  # the process-wide registry


class ScrubbingFilter(logging.Filter):
    """A handler filter that removes registered secrets from each record before it is
    formatted: the message (arguments merged in), the traceback text and the stack text.
    Records are changed only when they held a secret, and are never dropped."""

    def __init__(self, registry: SecretRegistry | None = None) -> None:
        super().__init__()
        self.registry = DEFAULT_REGISTRY if registry is None else registry

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` in place; always keep it."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not make logging raise
            # The handler would print msg and args in its own error report: merge them here so
            # that report is scrubbed too.
            message = f"{record.msg} (arguments: {record.args!r})"
            record.msg, record.args = self.registry.scrub(message), None
        else:
            scrubbed = self.registry.scrub(message)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        # Formatters render the traceback after filters run, so render it here (as the default
        # Formatter would) to have text to scrub; a record without a secret is left as it was.
        traceback_text = record.exc_text
        if not traceback_text and record.exc_info:
            traceback_text = _TRACEBACK_FORMATTER.formatException(record.exc_info)
        if traceback_text:
            scrubbed = self.registry.scrub(traceback_text)
            if scrubbed != traceback_text:
                record.exc_text = scrubbed
                # A formatter rendering exc_info itself would bring the secret back;
                # Formatter.format prints exc_text on its own without it.
                record.exc_info = None
        if record.stack_info:
            record.stack_info = self.registry.scrub(record.stack_info)
        return True


_TRACEBACK_FORMATTER = logging.Formatter()


def install(logger: logging.Logger | None = None,
            registry: SecretRegistry | None = None) -> ScrubbingFilter:
    """Add one :class:`ScrubbingFilter` to every handler of ``logger`` (default: the root
    logger) and return it. Handler filters, not a logger filter: a logger's filters do not see
    records propagated from its children. Handlers added later need ``addFilter`` themselves."""
    target = logging.getLogger() if logger is None else logger
    scrubber = ScrubbingFilter(registry)
    for handler in target.handlers:
        if not any(isinstance(f, ScrubbingFilter) and f.registry is scrubber.registry
                   for f in handler.filters):
            handler.addFilter(scrubber)
    return scrubber
