"""The exception hierarchy. One base, ``ArsError``; subclasses say what the caller can do.

Secrets never go into an exception message: messages name parameters and steps, not values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .telephony.agi.events import AgiReply


class ArsError(Exception):
    """Base of every error raised by ars-engine."""


class ConfigError(ArsError):
    """Bad configuration (file or environment)."""


class ScenarioError(ArsError):
    """One problem in a scenario file, located at file:line:column.

    ``code`` is a stable identifier (``unknown-step-kind``, ``unreachable-step``…) that tests and
    tools can match on; ``message`` says what is wrong and what was expected.
    """

    def __init__(self, path: str, line: int, column: int, code: str, message: str) -> None:
        self.path = path
        self.line = line  # 1-based
        self.column = column  # 1-based
        self.code = code
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message} [{self.code}]"


class ScenarioInvalid(ArsError):
    """A scenario failed validation; ``errors`` holds every problem found, in file order."""

    def __init__(self, errors: Iterable[ScenarioError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.path, e.line, e.column, e.code))
        super().__init__("\n".join(str(e) for e in self.errors))


class ParameterError(ArsError):
    """A call's parameters do not match the scenario's declaration (names the parameter)."""


class MediaError(ArsError):
    """A prompt could not be rendered or loaded."""


class TtsError(MediaError):
    """A TTS engine failed (the caller may fall back to another engine)."""


class ChannelError(ArsError):
    """The telephony channel failed (network, backend)."""


class CalleeHangup(ChannelError):
    """The person hung up; raised by any channel operation once the call is gone."""


class ScenarioLimitExceeded(ArsError):
    """A call hit the step or wall-time bound of its scenario."""


class ProtocolError(ArsError):
    """Bytes from a peer (SIP, SDP, RTP, AMI, AGI) that break the protocol.

    ``protocol`` names it ("sip", "sdp", "rtp"…), ``offset`` is the byte offset in the input where
    the problem was seen (-1 when unknown). Sans-I/O parsers raise only this for bad input.
    """

    def __init__(self, protocol: str, offset: int, message: str) -> None:
        self.protocol = protocol
        self.offset = offset
        self.message = message
        where = f" at byte {offset}" if offset >= 0 else ""
        super().__init__(f"{protocol}{where}: {message}")


class LocalProtocolError(ArsError):
    """We asked a sans-I/O protocol core for something its state forbids (a bug on our side,
    not the peer's): e.g. sending an AGI command while the previous one awaits its reply."""

    def __init__(self, protocol: str, message: str) -> None:
        self.protocol = protocol
        self.message = message
        super().__init__(f"{protocol}: {message}")


class AgiError(ChannelError):
    """An AGI command was answered with a failure. ``reply`` is the parsed reply (``reply.raw``
    holds Asterisk's exact bytes, ``reply.command`` the command). The message names the command,
    never its arguments or the keys in the reply."""

    def __init__(self, reply: AgiReply, message: str) -> None:
        self.reply = reply
        self.message = message
        super().__init__(message)


class AgiInvalidCommand(AgiError):
    """``510 Invalid or unknown command``."""


class AgiUsageError(AgiError):
    """``520``: Asterisk rejected the command's arguments; :attr:`usage` is its usage text."""

    @property
    def usage(self) -> str:
        """The raw usage text Asterisk sent ("" when it had none)."""
        return self.reply.usage or ""


class AgiCommandFailed(AgiError):
    """``200 result=-1`` (or another negative result, ``-2`` for EXEC of an unknown application).

    ``may_be_hangup``: the reply alone cannot tell a hangup from e.g. a missing file; Asterisk
    pushes ``HANGUP`` before answering the next command if the channel died.
    """

    def __init__(self, reply: AgiReply, message: str, *, may_be_hangup: bool = False) -> None:
        super().__init__(reply, message)
        self.may_be_hangup = may_be_hangup


class AgiHangup(AgiError, CalleeHangup):
    """The channel hung up under an AGI command (``(hangup)``, or ``-1`` after Asterisk pushed
    ``HANGUP``). A CalleeHangup, so the scenario ends as the callee hanging up."""


class AgiDeadChannel(AgiHangup):
    """``511 Command Not Permitted on a dead channel``: the call is already gone."""


class FieldError(ArsError):
    """A request, a command-line option or a stored rule has a bad value. ``field`` names it the
    way the caller wrote it (a JSON pointer-ish path such as ``retry.max_attempts``), ``code`` is
    stable for programs (``invalid_number``, ``premium_not_allowed``…), ``message`` is for people
    and never holds a secret value."""

    def __init__(self, field: str, code: str, message: str) -> None:
        self.field = field
        self.code = code
        self.message = message
        super().__init__(f"{field}: {message} [{code}]")


class DestinationError(FieldError):
    """A destination number that is malformed or that the tenant's policy refuses."""


class StoreError(ArsError):
    """The database could not be reached or refused an operation (names the operation)."""


class EvidenceError(ArsError):
    """An evidence bundle could not be written or read (names the file)."""


class NotFound(ArsError):
    """No such resource for this tenant (another tenant's resources are not found either)."""


class Conflict(FieldError):
    """The request is valid but the resource's state forbids it (cancel a finished call)."""


class RateLimited(FieldError):
    """A limit refuses the request for now; ``retry_after`` seconds until it may pass."""

    def __init__(self, field: str, code: str, message: str, retry_after: int) -> None:
        super().__init__(field, code, message)
        self.retry_after = retry_after
