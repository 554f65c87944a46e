# The demo (`otel-hardening demo`): embedded flaky upstreams and hardened httpx clients walking the
# fault phases again and again, exporting OTLP to the collector. Used by docker-compose.yml.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml setup.py README.md ./
COPY otel_hardening ./otel_hardening
RUN pip install ".[otlp]"

USER 10001
EXPOSE 8080
# One walk through the phases takes DEMO_DURATION seconds (default 600, so dashboards and alerts
# see each phase for minutes); /healthz, /readyz and /livez are served on 8080.
CMD ["sh", "-c", "exec otel-hardening demo --plain --loop --duration \"${DEMO_DURATION:-600}\" --health-endpoint 0.0.0.0:8080"]
