"""The store: calls, transitions, tenants, API keys, idempotency and the webhook outbox
(SQLAlchemy 2 async; SQLite by default, PostgreSQL for production and several nodes)."""
