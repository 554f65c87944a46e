// HardeningCircuitOpen / HardeningRetryStorm: what hardening does to an upstream's calls.
local alerting = import '../lib/alerting.libsonnet';
local liveness = import '../rules/liveness.libsonnet';

{
  new(c)::
    local a = alerting.new(c);
    local up = std.join(', ', [c.serviceLabel] + c.upstreamLabels);
    local rate(metric) = 'sum by (%s) (rate(%s{%s}[%s]))' % [up, metric, c.hardeningSelector, c.retryStormWindow];
    {
      name: 'otel-hardening-http',
      rules: [
        a.alert(
          'HardeningCircuitOpen',
          // Worst state over the window: open -> half_open -> open cycles do not resolve it.
          // `>= 1`: for `_other` (the aggregated upstreams) the gauge counts the open circuits.
          // ... while the circuit's series still exist: the window must not outlive a dead process.
          liveness.whilePresent(
            c,
            'max by (%s, %s, hardening_circuit_name) (max_over_time(hardening_circuit_state{%s}[%s])) >= 1'
            % [c.serviceLabel, c.instanceLabel, liveness.sel(c, 'hardening_circuit_state="open"'), c.circuitOpenWindow],
            '%s, %s, hardening_circuit_name' % [c.serviceLabel, c.instanceLabel],
            'hardening_circuit_state',
          ),
          'warning',
          'Circuit {{ $labels.hardening_circuit_name }} of {{ $labels.%s }} is open.' % c.serviceLabel,
          'The circuit breaker for upstream {{ $labels.hardening_circuit_name }} in process {{ $labels.%s }} of {{ $labels.%s }} has been open in the last %s: calls to it are rejected without I/O (outcome rejected_circuit_open).' % [c.instanceLabel, c.serviceLabel, c.circuitOpenWindow],
          a.dashboard('http'),
          c.circuitOpenFor,
          c.circuitOpenKeepFiringFor,
        ),
        a.alert(
          'HardeningRetryStorm',
          '(%s / %s > %g) and %s > %g' % [
            rate('hardening_http_client_attempts_total'),
            rate('hardening_http_client_calls_total'),
            1 + c.retryBudgetRatio,
            rate('hardening_http_client_calls_total'),
            c.retryStormMinCallRate,
          ],
          'warning',
          'Retries amplify the load on {{ $labels.server_address }}:{{ $labels.server_port }} by {{ $value | printf "%.2f" }}x.',
          'Service {{ $labels.%s }} sends {{ $value | printf "%%.2f" }} attempts per logical call to {{ $labels.server_address }}:{{ $labels.server_port }} over %s, above 1 + the retry budget ratio (%g): retries add more load than the budget intends, while the upstream is failing.' % [c.serviceLabel, c.retryStormWindow, 1 + c.retryBudgetRatio],
          a.dashboard('http'),
          c.retryStormFor,
        ),
      ],
    },
}
