"""Our SDP side of the peer's re-INVITEs in an answered call (RFC 3264 §8), sans-I/O.

* An offer is answered with the offerer's first codec we support, its telephone-event type and
  the mirrored direction (a hold: ``sendonly`` → we answer ``recvonly`` and stop sending); the
  stream moves to the address and port it names. Nothing acceptable: None (the SIP layer
  answers 488 and the session goes on as it was, RFC 3261 §14.2).
* An offerless re-INVITE gets our current description as the offer; the ACK carries the answer.
* Our origin line keeps its session id; its version goes up by one only when what we describe
  changed (§8: a session refresh re-INVITE gets the same description back, version unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .sdp import (
    MediaRejected,
    NegotiatedMedia,
    SessionDescription,
    answer_offer,
    make_offer,
    negotiate_answer,
)

__all__ = ["SessionUpdater"]


class SessionUpdater:
    """Answers re-offers for one call. ``apply`` moves the media (MediaSession.retarget)."""

    def __init__(self, offer: SessionDescription, negotiated: NegotiatedMedia,
                 apply: Callable[[NegotiatedMedia], None]) -> None:
        assert offer.origin is not None, "our own offer has an origin line"
        self.host = offer.origin.address
        self.port = offer.media[0].port
        self.session_id = int(offer.origin.session_id)
        self.version = int(offer.origin.session_version)
        self.codecs = tuple(m.encoding.upper() for m in offer.media[0].rtpmaps().values()
                            if m.encoding.lower() != "telephone-event")
        self.negotiated = negotiated
        self.apply = apply
        self._last_sent = offer
        self._our_offer: SessionDescription | None = None

    def __call__(self, sdp: bytes, acked: bool) -> bytes | None:
        """The SDP for our 200 to a re-INVITE carrying ``sdp`` (b"": none), or None to refuse;
        with ``acked`` the ACK's answer to our offer (returns None)."""
        if acked:
            if self._our_offer is not None:
                self._use(negotiate_answer(self._our_offer, SessionDescription.parse(sdp)))
            return None
        prefer = (self.negotiated.codec, *[c for c in self.codecs if c != self.negotiated.codec])
        if not sdp.strip():
            offer = make_offer(self.host, self.port, self.session_id, self.version,
                               codecs=prefer)
            self._our_offer = offer = self._versioned(offer)
            return bytes(offer)
        answer, result = answer_offer(SessionDescription.parse(sdp), self.host, self.port,
                                      prefer, session_id=self.session_id, version=self.version)
        if isinstance(result, MediaRejected):
            return None
        answer = self._versioned(answer)
        self._use(result)
        return bytes(answer)

    def _use(self, negotiated: NegotiatedMedia) -> None:
        self.negotiated = negotiated
        self.apply(negotiated)

    def _versioned(self, description: SessionDescription) -> SessionDescription:
        """``description`` with the version we must give it: the last one if nothing but the
        origin differs from what we sent last, else one more."""
        last = self._last_sent
        same = replace(description, origin=last.origin, times=last.times) == last
        if not same:
            self.version += 1
        o = description.origin
        assert o is not None
        description = replace(description, origin=replace(o, session_version=str(self.version)))
        self._last_sent = description
        return description
