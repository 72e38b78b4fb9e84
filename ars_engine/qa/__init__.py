"""QA tools: the softphone the engine calls in tests and demos."""
