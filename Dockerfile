# The demo app (demo/app.py): hardened httpx traffic against an in-process flaky upstream that walks
# through fault phases, exporting OTLP to the collector. Used by docker-compose.yml.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY otel_hardening ./otel_hardening
RUN pip install . \
        "opentelemetry-exporter-otlp-proto-grpc==1.45.2" \
        "opentelemetry-exporter-otlp-proto-http==1.45.2"
COPY demo ./demo

USER 10001
EXPOSE 8080
CMD ["python", "-m", "demo.app", "--host", "0.0.0.0", "--port", "8080", "--upstream-cycle"]
