// HTTP resilience: what hardening did to each upstream's calls (outcomes, retries, circuits, budget,
// latency), where their time went (network quality, pool, slow requests: http-pool.libsonnet) and the
// traces of the requests it retried or gave up on.
local common = import '../lib/common.libsonnet';
local g = import '../lib/grafana.libsonnet';
local slo = import '../rules/slo.libsonnet';
local httpPool = import 'http-pool.libsonnet';

{
  new(c)::
    local s = common.new(c);
    local pool = httpPool.new(c);
    local calls(extra='') = 'hardening_http_client_calls_total{%s%s}[$__rate_interval]' % [s.upstream, extra];
    local success = std.join('|', c.successOutcomes);
    local amplificationRed = 1 + c.retryBudgetRatio;
    local circuitMappings = g.valueMappings([[0, 'closed', 'green'], [1, 'half_open', 'orange'], [2, 'open', 'red']]);
    local latency(q) =
      g.prom(
        'histogram_quantile(%s, sum by (le, server_address) (rate(traces_span_metrics_duration_seconds_bucket{%s, span_kind="SPAN_KIND_CLIENT"}[$__rate_interval])))' % [q, s.upstream],
        'p%d {{server_address}}' % std.round(q * 100),
        exemplar=true
      );
    // Outcome colours, the same on every panel: greens fine, orange rejected, red failed.
    local outcomeColors = [
      g.colorOverride('/ success$/', 'green'),
      g.colorOverride('/ success_after_retry$/', 'light-green'),
      g.colorOverride('/ failure$/', 'red'),
      g.colorOverride('/ failure_after_retry$/', 'dark-red'),
      g.colorOverride('/ rejected_circuit_open$/', 'orange'),
      g.colorOverride('/ rejected_retry_budget$/', 'yellow'),
      g.colorOverride('/ pool_timeout$/', 'purple'),
    ];
    local traceLinks = s.traceLinks('traceID');

    s.dashboard('http', 'otel-hardening / HTTP resilience', 'What otel-hardening did to the calls of each upstream: outcomes, retry amplification, retries and give-ups, circuit breakers, retry budget, per-attempt latency with exemplars, network quality, the client connection pools, slow requests with their phases, and traces of retried and failed requests.', [
      [
        g.timeseries(
          'Logical calls by outcome',
          'Logical calls (one per request the app made, however many attempts) per second by upstream and outcome. success/success_after_retry are fine; failure_after_retry = retries did not help; rejected_circuit_open = the circuit refused without I/O; rejected_retry_budget = a retry was wanted but the budget was spent; pool_timeout = no connection of the client pool became free in time (see the Pool panels). Growing non-success bands: check the upstream, then the circuit and retry panels below.',
          [g.prom('sum by (server_address, hardening_outcome) (rate(%s))' % calls(), '{{server_address}} {{hardening_outcome}}')],
          'reqps',
          w=8,
          stack=true,
          overrides=outcomeColors
        ),
        g.timeseries(
          'Success ratio (logical calls)',
          'Share of logical calls ending in %s per upstream: what the app experiences after retries. Below the SLO target (%g, red line) the error budget burns and the HardeningUpstreamErrorBudgetBurn alerts may fire: see which outcomes grow in the panel on the left.' % [std.join(' or ', c.successOutcomes), c.sloTarget],
          // An upstream without a single success has no success series: 0, not a gap, is its ratio.
          [g.prom('(sum by (server_address) (rate(%s)) or 0 * sum by (server_address) (rate(%s))) / sum by (server_address) (rate(%s))' % [calls(', hardening_outcome=~"%s"' % success), calls(), calls()], '{{server_address}}')],
          'percentunit',
          w=8,
          steps=[[null, 'red'], [c.sloTarget, 'green']],
          max=1
        ),
        g.timeseries(
          'Error budget burn rate (SLO)',
          'How fast each upstream spends its error budget (SLO %g success): 1 = the budget lasts exactly the 30-day window; the burn-rate alerts fire when both windows of a pair are above its factor (%s). From the recording rules of the burn-rate alerts, per service (all instances).' % [
            c.sloTarget,
            std.join(', ', ['%s/%s > %gx' % [b.long, b.short, b.factor] for b in c.burnRateAlerts]),
          ],
          [
            g.prom('%s{job=~"$job", server_address=~"$upstream"} / (1 - %g)' % [slo.errorRatio(w), c.sloTarget], '%s {{server_address}}' % w)
            for w in std.set([b.short for b in c.burnRateAlerts][0:1] + [b.long for b in c.burnRateAlerts][0:2])
          ],
          'none',
          w=8,
          steps=[[null, 'green'], [1, 'orange'], [c.burnRateAlerts[1].factor, 'red']],
          min=0
        ),
      ],
      [
        g.stat(
          'Error budget left (%s)' % c.sloBudgetWindow,
          'Share of the %s error budget (SLO %g success) each upstream has left: 100%% untouched, 0 spent, below 0 overspent (the SLO is missed over the window). It drops with every failed logical call and refills as old failures leave the window. From %s (%s increases summed over the window), per service (all instances).' % [c.sloBudgetWindow, c.sloTarget, slo.budgetRemaining(c), c.sloBudgetStep],
          [g.prom('%s{job=~"$job", server_address=~"$upstream"}' % slo.budgetRemaining(c), '{{job}} {{server_address}}:{{server_port}}', instant=true)],
          'percentunit',
          w=24,
          h=4,
          steps=[[null, 'red'], [0, 'orange'], [0.25, 'green']],
        ),
      ],
      [
        g.timeseries(
          'Retry amplification (attempts ÷ calls)',
          'Attempts sent per logical call, per upstream: 1.0 = no retries. Above %g (1 + retry budget ratio, red) retries add more load than the budget intends and HardeningRetryStorm fires: an upstream that is down gets hit harder exactly when it is weakest. Check Retries by reason and lower max attempts or the budget ratio. Below 1: the open circuit rejects calls without sending anything.' % amplificationRed,
          [g.prom('sum by (server_address) (rate(hardening_http_client_attempts_total{%s}[$__rate_interval])) / sum by (server_address) (rate(%s))' % [s.upstream, calls()], '{{server_address}}')],
          'none',
          w=8,
          steps=[[null, 'green'], [1 + c.retryBudgetRatio / 2, 'orange'], [amplificationRed, 'red']],
          // Not 1: calls the open circuit rejects send no attempt, and a clipped axis would hide them.
          min=0
        ),
        g.timeseries(
          'Retries by reason',
          'Retries scheduled per second by upstream and reason (status code such as 503, or exception class such as ConnectError). 429/503 with Retry-After = the upstream asks to slow down; ConnectError/ReadTimeout = network or an overloaded upstream.',
          [g.prom('sum by (server_address, error_type) (rate(hardening_http_client_retries_total{%s}[$__rate_interval]))' % s.upstream, '{{server_address}} {{error_type}}')],
          'ops',
          w=8,
          stack=true
        ),
        g.timeseries(
          'Give-ups (calls that failed)',
          'Logical calls that did not succeed, by outcome: failure (no retry allowed: method, body or policy), failure_after_retry (attempts or deadline exhausted), rejected_circuit_open, rejected_retry_budget, pool_timeout (the client pool had no free connection in time). The exact reason a retry was refused (max_attempts, deadline, retry_after_too_long, circuit_open, retry_budget) is on the hardening.retry.denied span event: see the traces table below.',
          [g.prom('sum by (server_address, hardening_outcome) (rate(%s))' % calls(', hardening_outcome!~"%s"' % success), '{{server_address}} {{hardening_outcome}}')],
          'reqps',
          w=8,
          stack=true,
          overrides=outcomeColors
        ),
      ],
      [
        g.stateTimeline(
          'Circuit state',
          'Circuit breaker state per upstream and process: green closed, orange half_open (trial requests), red open (calls rejected without I/O). Open bands that repeat = the upstream is still down after each reset timeout. Check the upstream itself; the app gets rejected_circuit_open errors meanwhile.',
          // For `_other` the state gauge counts circuits: the worst state present wins.
          [g.prom('clamp_max(2 * clamp_max(max by (job, instance, hardening_circuit_name) (hardening_circuit_state{%s, hardening_circuit_state="open"}), 1) + clamp_max(max by (job, instance, hardening_circuit_name) (hardening_circuit_state{%s, hardening_circuit_state="half_open"}), 1), 2)' % [s.circuit, s.circuit], '{{hardening_circuit_name}} {{instance}}')],
          'none',
          circuitMappings,
          w=16,
          h=8
        ),
        g.stat(
          'Time spent open (dashboard range)',
          'Share of the dashboard time range each circuit was open (average over its processes). More than a few percent: the upstream is unreliable for this service; consider a fallback, or mark it non-critical (OTEL_PYTHON_HARDENING_HEALTH_NONCRITICAL) if the service can live without it.',
          [g.prom('avg by (hardening_circuit_name) (avg_over_time(clamp_max(hardening_circuit_state{%s, hardening_circuit_state="open"}, 1)[$__range:]))' % s.circuit, '{{hardening_circuit_name}}', instant=true)],
          'percentunit',
          w=8,
          h=8,
          steps=[[null, 'green'], [0.01, 'orange'], [0.1, 'red']]
        ),
      ],
      [
        g.timeseries(
          'Circuit transitions',
          'Circuit state changes per minute by upstream and state entered. Frequent open -> half_open -> open cycles: the upstream fails every trial; half_open -> closed: it recovered.',
          [g.prom('sum by (hardening_circuit_name, hardening_circuit_state) (rate(hardening_circuit_transitions_total{%s}[$__rate_interval])) * 60' % s.circuit, '{{hardening_circuit_name}} -> {{hardening_circuit_state}}')],
          'opm',
          w=8
        ),
        g.timeseries(
          'Rejections',
          'Calls rejected without a network attempt per second: rejected_circuit_open (circuit open) and rejected_retry_budget (a retry was wanted but the budget was spent; the last failure was returned). Rejections protect the upstream; the app must handle them (fallback, cached value, error page).',
          [g.prom('sum by (server_address, hardening_outcome) (rate(%s))' % calls(', hardening_outcome=~"rejected_.+"'), '{{server_address}} {{hardening_outcome}}')],
          'reqps',
          w=8,
          stack=true,
          overrides=outcomeColors
        ),
        g.timeseries(
          'Retry budget available',
          'Retries each upstream budget would allow now (token bucket: ratio of the request rate plus a floor per second). Near 0 (red) the next retries are refused (rejected_retry_budget): retries are already adding the most load the budget allows.',
          [g.prom('min by (hardening_circuit_name) (hardening_retry_budget_available{%s})' % s.circuit, '{{hardening_circuit_name}}')],
          'short',
          w=8,
          steps=[[null, 'red'], [1, 'orange'], [5, 'green']],
          min=0
        ),
      ],
      [
        g.timeseries(
          'Per-attempt latency p50 / p95 / p99 (span metrics, with exemplars)',
          'Latency of each HTTP attempt (CLIENT spans, from the collector spanmetrics connector, before sampling) per upstream. The dots are exemplars: click one to open that attempt trace in Jaeger. A rising p99 with a flat p50 = a few slow attempts (timeouts); check Retries by reason for ReadTimeout. Attempt spans name the upstream (server.address) only with OTEL_SEMCONV_STABILITY_OPT_IN=http (or http/dup) in the app: without it this panel stays empty.',
          [latency(0.5), latency(0.95), latency(0.99)],
          's',
          w=12,
          h=9
        ),
        g.timeseries(
          'Retry delay p95 and attempts per acted-on call',
          'p95 of the wait before each retry (backoff with full jitter, or the Retry-After the upstream asked for) and the mean number of attempts of calls hardening acted on. Long waits with Retry-After: the upstream asked for them; long waits without: lower the backoff cap.',
          [
            g.prom('histogram_quantile(0.95, sum by (le, server_address) (rate(hardening_http_client_retry_delay_seconds_bucket{%s}[$__rate_interval])))' % s.upstream, 'delay p95 {{server_address}}'),
            g.prom('sum by (server_address) (rate(hardening_http_client_retried_attempts_sum{%s}[$__rate_interval])) / sum by (server_address) (rate(hardening_http_client_retried_attempts_count{%s}[$__rate_interval]))' % [s.upstream, s.upstream], 'attempts {{server_address}}'),
          ],
          's',
          w=12,
          h=9,
          // Attempts are a count, not seconds: their own unit on a right-hand axis.
          overrides=[g.refOverride('B', [
            { id: 'unit', value: 'short' },
            { id: 'custom.axisPlacement', value: 'right' },
            { id: 'custom.axisLabel', value: 'attempts' },
          ])]
        ),
      ],
      pool.quality,
      pool.pool,
      pool.slow,
      [
        g.table(
          'Recent retried requests (Jaeger)',
          'Traces of logical requests hardening sent more than once (Jaeger tag hardening.retried=true on the hardening.request span) of the Trace service; click a trace ID to open it, or its log records. In the trace, the hardening.request span shows the attempts, each hardening.retry event its reason and delay; every resent CLIENT span has http.request.resend_count. Tail sampling keeps every such trace. Jaeger matches tags exactly: the Upstream selection does not apply here.',
          [g.jaegerSearch('${trace_service}', 'hardening.retried=true', c.traceLimit)],
          'none',
          dsType=g.types.jaeger,
          w=12,
          h=9,
          overrides=traceLinks
        ),
        g.table(
          'Requests that failed after retries (Jaeger)',
          'Traces of logical requests whose retries did not help (Jaeger tag hardening.outcome=failure_after_retry) of the Trace service; click a trace ID to open it, or its log records. The hardening.retry.denied event says why hardening stopped (max_attempts, deadline, retry_after_too_long, circuit_open, retry_budget). Jaeger matches tags exactly: the Upstream selection does not apply here.',
          [g.jaegerSearch('${trace_service}', 'hardening.outcome=failure_after_retry', c.traceLimit)],
          'none',
          dsType=g.types.jaeger,
          w=12,
          h=9,
          overrides=traceLinks
        ),
      ],
      [
        g.timeseries(
          'Hardening bypassed',
          'Clients or requests otel-hardening let through unhardened since the process started (hardening.bypassed), per process and reason; should stay at zero (a count, not a rate: a hook missing is counted once at start-up, before any scrape could see it rise). hook_missing: a private name of httpx/httpcore/pybreaker is missing in the installed version, clients are left unhardened (see the otel_hardening log); internal_error: the layer failed and the request went on unhardened; storage_error: Redis circuit state unreachable, local state used. Alert HardeningBypassed.',
          [g.prom('sum by (instance, reason) (hardening_bypassed_total{%s})' % s.app, '{{instance}} {{reason}}')],
          'short',
          w=24,
          h=6,
          steps=[[null, 'green'], [1, 'red']],
        ),
      ],
      // The outbox (docs/outbox.md): writes deferred while an upstream was down, replayed when it is back.
      // max by outbox: processes sharing a Redis store report the same figures.
      [
        g.timeseries(
          'Outbox: writes waiting and dead letters',
          'Writes deferred to the outbox (the caller got RequestDeferred) waiting for their upstream, and dead letters: writes it gave up replaying (too many failed replays, too old, or rejected with a 4xx), kept until someone retries or purges them (otel-hardening outbox list --dead). Waiting writes grow while a circuit is open and drain once it closes; dead letters fire HardeningOutboxDeadLetters.',
          [
            g.prom('max by (hardening_outbox_name) (hardening_outbox_depth{%s})' % s.app, 'waiting {{hardening_outbox_name}}'),
            g.prom('max by (hardening_outbox_name) (hardening_outbox_dead_letters{%s})' % s.app, 'dead letters {{hardening_outbox_name}}'),
          ],
          'short',
          w=8,
          min=0,
          overrides=[g.colorOverride('/^dead letters/', 'red')]
        ),
        g.timeseries(
          'Outbox: oldest waiting write',
          'How long ago the oldest waiting write was deferred. Past 15 minutes (HardeningOutboxBacklogOld) the upstream has not recovered, or nothing replays (every process started with Outbox(replay=False), the store unreachable from the replayer, or the head entry keeps failing: order is kept per upstream, so everything behind it waits).',
          [g.prom('max by (hardening_outbox_name) (hardening_outbox_oldest_age_seconds{%s})' % s.app, '{{hardening_outbox_name}}')],
          's',
          w=8,
          steps=[[null, 'green'], [300, 'orange'], [900, 'red']],
          min=0
        ),
        g.timeseries(
          'Outbox: deferred, replayed, dead-lettered',
          'Per second: writes deferred, replays by outcome (delivered; failed: retried later with backoff; circuit_open: refused by the open circuit without I/O, not counted as a failed replay), writes moved to the dead letters, and deferrals refused (full store, store down: the caller got OutboxRefused).',
          [
            g.prom('sum by (hardening_outbox_name) (rate(hardening_outbox_deferred_total{%s}[$__rate_interval]))' % s.app, 'deferred {{hardening_outbox_name}}'),
            g.prom('sum by (hardening_outbox_outcome) (rate(hardening_outbox_replayed_total{%s}[$__rate_interval]))' % s.app, 'replayed {{hardening_outbox_outcome}}'),
            g.prom('sum by (hardening_outbox_reason) (rate(hardening_outbox_dead_lettered_total{%s}[$__rate_interval]))' % s.app, 'dead-lettered {{hardening_outbox_reason}}'),
            g.prom('sum by (hardening_outbox_reason) (rate(hardening_outbox_refused_total{%s}[$__rate_interval]))' % s.app, 'refused {{hardening_outbox_reason}}'),
          ],
          'reqps',
          w=8,
          overrides=[g.colorOverride('/^replayed delivered$/', 'green'), g.colorOverride('/^dead-lettered/', 'red'), g.colorOverride('/^refused/', 'dark-red')]
        ),
      ],
    ], variables=s.variables + [s.traceServiceVariable]),
}
