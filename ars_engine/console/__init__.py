"""The operator console at ``/console``: server-rendered pages (Jinja2) for live calls, history,
a call's page, scenarios (graph, validation, simulator), usage and alerts."""
