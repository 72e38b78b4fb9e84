"""Asterisk Manager Interface: the sans-I/O protocol core (messages, connection, typed events)."""

from __future__ import annotations

from .events import (
    DialEnd,
    Hangup,
    Newchannel,
    OriginateResponse,
    TypedEvent,
    VarSet,
    typed,
)
from .messages import (
    Action,
    Banner,
    ConnectionClosed,
    Event,
    EventListResult,
    Fields,
    Received,
    Response,
)
from .protocol import (
    AmiConnection,
    challenge_action,
    login_action,
    logoff_action,
    md5_key,
    md5_login_action,
    ping_action,
)

__all__ = ["Action", "AmiConnection", "Banner", "ConnectionClosed", "DialEnd", "Event",
           "EventListResult", "Fields", "Hangup", "Newchannel", "OriginateResponse", "Received",
           "Response", "TypedEvent", "VarSet", "challenge_action", "login_action", "logoff_action",
           "md5_key", "md5_login_action", "ping_action", "typed"]
