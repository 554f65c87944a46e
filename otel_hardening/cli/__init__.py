"""otel-hardening command."""


def main() -> int:
    return 0
