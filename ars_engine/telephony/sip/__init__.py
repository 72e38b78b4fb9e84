"""Embedded SIP user agent: sans-I/O message, SDP, digest, transaction and dialog cores."""
