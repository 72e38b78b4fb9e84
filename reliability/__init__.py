"""The fault-injection suite (``make reliability``): real engines, PostgreSQL, softphones and a
webhook receiver on loopback, with faults injected; see docs/reliability.md."""
