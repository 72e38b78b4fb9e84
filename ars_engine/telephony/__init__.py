"""Telephony: the Channel seam, outcome mapping and the backends."""
