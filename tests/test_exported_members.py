import otel_hardening


def test_all_is_sorted_and_complete() -> None:
    public = {name for name in dir(otel_hardening) if not name.startswith("_")}
    public -= {"annotations", "Any", "metrics", "trace", "config", "http", "instrumentor", "health", "resources"}
    assert otel_hardening.__all__ == sorted(otel_hardening.__all__)
    assert set(otel_hardening.__all__) - {"__version__"} == public
