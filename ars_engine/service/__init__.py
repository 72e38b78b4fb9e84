"""The service: destination policy, dispatcher, limits, retries, webhooks outbox, evidence."""
