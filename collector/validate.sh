#!/usr/bin/env bash
# Validate every shipped collector config, layered the way it is run, with the built collector:
#
#   collector/validate.sh "$(collector/build.sh)"
#
# gateway.yaml and the local-*.yaml files are overlays (never run alone), and agent.yaml needs its
# gateway list, so plain `otelcol validate --config <file>` per file is not the right check.
# tests/e2e/test_collector_configs.py runs the same combinations.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${1:-${OTELCOL_BIN:-}}"
[[ -x "$bin" ]] || { echo "usage: $0 <otelcol binary> (or set OTELCOL_BIN)" >&2; exit 2; }

status=0
check() {  # check <label> <env assignments...> -- <config files...>
  local label="$1"; shift
  local env=()
  while [[ "$1" != "--" ]]; do env+=("$1"); shift; done
  shift
  local args=()
  for f in "$@"; do args+=(--config "$here/$f"); done
  if out="$(env "${env[@]}" "$bin" validate "${args[@]}" 2>&1)"; then
    echo "otelcol validate: ok    $label"
  else
    echo "otelcol validate: FAIL  $label"; echo "$out" | tail -5; status=1
  fi
}
check "single (compose)" -- otelcol-config.yaml
files=(OTELCOL_TRACES_FILE=/dev/null OTELCOL_LOGS_FILE=/dev/null)
check "single (local stack)" "${files[@]}" -- otelcol-config.yaml local-overlay.yaml
check "single (local, no Jaeger, no VictoriaLogs)" "${files[@]}" -- otelcol-config.yaml local-overlay.yaml local-no-traces.yaml local-no-logs.yaml
check "gateway" -- otelcol-config.yaml gateway.yaml
check "gateway (local)" "${files[@]}" -- otelcol-config.yaml gateway.yaml local-overlay.yaml
check "agent" "OTELCOL_GATEWAYS=[127.0.0.1:4317, 127.0.0.1:5317]" -- agent.yaml
exit "$status"
