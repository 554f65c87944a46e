"""The hardened HTTP layer: per-upstream circuit breakers, retries with backoff and budgets."""
