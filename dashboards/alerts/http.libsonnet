// HardeningCircuitOpen / HardeningRetryStorm / HardeningPoolSaturated: what hardening does to an
// upstream's calls, and a client pool too small for them.
local alerting = import '../lib/alerting.libsonnet';
local liveness = import '../rules/liveness.libsonnet';

{
  new(c)::
    local a = alerting.new(c);
    local up = std.join(', ', [c.serviceLabel] + c.upstreamLabels);
    local rate(metric) = 'sum by (%s) (rate(%s{%s}[%s]))' % [up, metric, c.hardeningSelector, c.retryStormWindow];
    // One process's calls to one upstream: the pool alerts' labels.
    local pool = std.join(', ', [c.serviceLabel, c.instanceLabel] + c.upstreamLabels);
    local timeouts = 'hardening_http_client_calls_total{%s}' % liveness.sel(c, 'hardening_outcome="pool_timeout"');
    local upstream = '{{ $labels.server_address }}:{{ $labels.server_port }}';
    local process = '{{ $labels.%s }} {{ $labels.%s }}' % [c.serviceLabel, c.instanceLabel];
    local poolWhere = 'process {{ $labels.%s }} of {{ $labels.%s }} to %s' % [c.instanceLabel, c.serviceLabel, upstream];
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
        a.alert(
          'HardeningPoolSaturated',
          // The share of samples with requests waiting, as a quantile: at least `share` of them are > 0.
          liveness.whilePresent(
            c,
            'max by (%s) (quantile_over_time(%g, hardening_http_client_pool_waiting{%s}[%s])) > 0'
            % [pool, 1 - c.poolWaitingShare, c.hardeningSelector, c.poolWaitingWindow],
            pool,
            'hardening_http_client_pool_waiting',
          ),
          'warning',
          'Connection pool for %s saturated in %s.' % [upstream, process],
          'Calls from %s waited for a free connection of the client pool in at least %g%% of the samples over %s (median {{ $value | printf "%%.1f" }} waiting): every connection the pool allows (max_connections) is busy, requests queue inside the client before reaching the upstream, and past the pool timeout they fail with PoolTimeout.'
          % [poolWhere, c.poolWaitingShare * 100, c.poolWaitingWindow],
          a.dashboard('http'),
          c.poolWaitingFor,
          c.poolWaitingKeepFiringFor,
          labels={ reason: 'waiting' },
        ),
        a.alert(
          'HardeningPoolSaturated',
          liveness.whilePresent(
            c,
            '(sum by (%(by)s) (increase(%(t)s[%(w)s])) > 0) or (sum by (%(by)s) (%(t)s) > 0 unless on (%(by)s) sum by (%(by)s) (%(t)s offset %(w)s))'
            % { by: pool, t: timeouts, w: c.poolTimeoutWindow },
            pool,
            'hardening_http_client_calls_total',
          ),
          'warning',
          'PoolTimeout on calls to %s in %s.' % [upstream, process],
          'About {{ $value | printf "%%.0f" }} logical calls from %s ended in PoolTimeout in the last %s (outcome pool_timeout): no connection of the client pool became free within the pool timeout, so they failed without reaching the upstream.'
          % [poolWhere, c.poolTimeoutWindow],
          a.dashboard('http'),
          c.poolTimeoutFor,
          labels={ reason: 'pool_timeout' },
        ),
      ],
    },
}
