"""RTP and RFC 4733 telephone-events: sans-I/O packets and sessions."""
