"""A demo service for the otel-hardening stack: a hardened httpx client against a flaky upstream."""
