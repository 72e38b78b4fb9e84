"""The HTTP API (aiohttp): ``create_app`` in :mod:`ars_engine.api.app`."""
