// Rows of the HTTP resilience dashboard on where a call's time goes besides the upstream's answer:
// the network quality class per upstream, the client connection pool (is it the bottleneck?), and
// the slow requests with their phases (log records in VictoriaLogs).
local common = import '../lib/common.libsonnet';
local g = import '../lib/grafana.libsonnet';

{
  new(c)::
    local s = common.new(c);
    // A pool gauge per upstream (and `by`), summed over the selected processes.
    local pool(metric, extra='', by='server_address') = 'sum by (%s) (%s{%s%s})' % [by, metric, s.upstream, extra];
    local timeoutRate = 'sum by (server_address) (rate(hardening_http_client_calls_total{%s, hardening_outcome="pool_timeout"}[$__rate_interval]))' % s.upstream;
    // The quality classes, best first: each gets its index as the timeline's value (worst wins).
    local qualities = [['excellent', 'green'], ['good', 'light-green'], ['fair', 'yellow'], ['poor', 'orange'], ['offline', 'red']];
    local quality = std.join(' or ', [
      // `> 0` keeps the current class; clamp_max: for `_other` the gauge counts the upstreams in a class.
      'clamp_max(hardening_http_client_network_quality{%s, hardening_network_quality="%s"} > 0, 1) * %d' % [s.upstream, qualities[i][0], i]
      for i in std.range(0, std.length(qualities) - 1)
    ]);
    local waitingFor = 'HardeningPoolSaturated fires when requests wait in at least %g%% of the reads over %s (for %s), or on any PoolTimeout' % [c.poolWaitingShare * 100, c.poolWaitingWindow, c.poolWaitingFor];
    // Slow-request log records: their fields as table columns (VictoriaLogs returns every field as a
    // string: the durations are converted to numbers for the unit).
    local slowFields = ['_time', '_msg', 'job', 'server.address', 'hardening.duration', 'hardening.phase.queue', 'hardening.phase.connect', 'hardening.phase.headers', 'hardening.phase.backoff', 'trace_id'];
    local seconds = ['hardening.duration', 'hardening.phase.queue', 'hardening.phase.connect', 'hardening.phase.headers', 'hardening.phase.backoff'];
    local columns = {
      Line: 'Request',
      job: 'Job',
      'server.address': 'Upstream',
      'hardening.duration': 'Duration',
      'hardening.phase.queue': 'Queue',
      'hardening.phase.connect': 'Connect',
      'hardening.phase.headers': 'Headers',
      'hardening.phase.backoff': 'Backoff',
      trace_id: 'Trace ID',
    };
    local order = ['Time', 'job', 'server.address', 'Line', 'hardening.duration', 'hardening.phase.queue', 'hardening.phase.connect', 'hardening.phase.headers', 'hardening.phase.backoff', 'trace_id'];
    {
      quality: [
        g.stateTimeline(
          'Network quality per upstream',
          'The class each process gives the link to each upstream, from its recent attempts (p95 latency and failure ratio, the worse of the two; offline = circuit open, or every recent attempt failed to connect): excellent, good, fair, poor, offline. It turns worse at once and better only after holding, so a band is a real change. poor / offline: check the upstream (Per-attempt latency, Retries by reason, Circuit state); fair with a flat error rate: a slow link or a busy pool (Pool rows below). It feeds the health details only, not the status.',
          [g.prom('max by (instance, server_address, server_port) (%s)' % quality, '{{server_address}}:{{server_port}} {{instance}}')],
          'none',
          g.valueMappings([[i, qualities[i][0], qualities[i][1]] for i in std.range(0, std.length(qualities) - 1)]),
          w=24,
          h=6
        ),
      ],
      pool: [
        g.timeseries(
          'Pool: open connections vs max_connections',
          'Connections per upstream in the connection pools of the hardened clients, active (carrying a request) and idle (kept alive for the next one), against the max_connections limit of those pools (dashed red), summed over the selected processes: pick one Instance to compare one process with its own limit. max_connections is per client, shared by every upstream that client calls. Active at the limit with requests waiting (next panel) = the pool is the bottleneck: raise httpx.Limits(max_connections=...) if the upstream can take more, or make fewer concurrent calls.',
          [
            g.prom(pool('http_client_open_connections', by='server_address, http_connection_state'), '{{server_address}} {{http_connection_state}}'),
            g.prom(pool('hardening_http_client_pool_limit', ', hardening_pool_limit="max_connections"'), '{{server_address}} max_connections'),
          ],
          'short',
          w=6,
          min=0,
          overrides=[g.refOverride('B', [
            { id: 'color', value: { mode: 'fixed', fixedColor: 'red' } },
            { id: 'custom.lineStyle', value: { fill: 'dash', dash: [10, 10] } },
            { id: 'custom.fillOpacity', value: 0 },
          ])]
        ),
        g.timeseries(
          'Pool: requests waiting for a connection',
          'Requests queued inside the clients per upstream, waiting for a pool connection to become free, as read at each metric export (summed over the selected processes). Any sustained value means every connection the pool allows is busy: calls spend that wait before reaching the upstream, and past the pool timeout they fail with PoolTimeout. %s.' % waitingFor,
          [g.prom(pool('hardening_http_client_pool_waiting'), '{{server_address}}')],
          'short',
          w=6,
          steps=[[null, 'green'], [1, 'orange']],
          min=0
        ),
        g.timeseries(
          'Pool: time in queue p95',
          'p95 of the time requests waited for a pool connection before being sent, per upstream. Near zero is normal; growing toward the pool timeout (httpx default 5 s) the next requests fail with PoolTimeout. The wait adds to the latency the app sees but not to the upstream latency: compare with Per-attempt latency.',
          [g.prom('histogram_quantile(0.95, sum by (le, server_address) (rate(http_client_request_time_in_queue_seconds_bucket{%s}[$__rate_interval])))' % s.upstream, 'p95 {{server_address}}')],
          's',
          w=6
        ),
        g.timeseries(
          'Pool: calls failed with PoolTimeout',
          'Logical calls per second that ended in httpx.PoolTimeout (outcome pool_timeout): no pool connection became free within the pool timeout, so the call failed without reaching the upstream (not retried, not counted against the circuit). Should stay at zero; see HardeningPoolSaturated in the runbooks: raise max_connections, shorten the upstream latency or the timeouts that hold connections, or make fewer concurrent calls.',
          [g.prom(timeoutRate, '{{server_address}}')],
          'reqps',
          w=6,
          min=0,
          overrides=[g.colorOverride('/.*/', 'red')]
        ),
      ],
      slow: [
        g.timeseries(
          'Slow requests per second',
          'Logical calls per upstream slower than the slow-request threshold (OTEL_PYTHON_HARDENING_SLOW_REQUEST, retries and backoff included), per second: every one is counted, whether its log record was written or rate limited away. The table on the right shows the latest with where their time went.',
          [g.prom('sum by (server_address) (rate(hardening_http_client_slow_requests_total{%s}[$__rate_interval]))' % s.upstream, '{{server_address}}')],
          'reqps',
          w=8,
          h=9,
          min=0
        ),
        g.table(
          'Latest slow requests (VictoriaLogs)',
          'The newest hardening.slow_request log records (LogsQL hardening.slow_request.threshold:*, at most a few per minute per upstream) with the phases of each call, in seconds summed over its attempts: Queue = waiting for a pool connection (see the Pool rows), Connect = TCP and TLS, Headers = from sending the request to the response headers (the upstream itself), Backoff = waiting between retries. An empty phase was not observable. Click a trace ID to open the trace in Jaeger, or its other log records. Records name the real host: the _other upstream matches none.',
          [g.logsql(
            s.logs('hardening.slow_request.threshold:*')
            + ' | filter server.address:~`^(${upstream:regex})$` | fields %s' % std.join(', ', slowFields),
            c.logLimit
          )],
          's',
          dsType=g.types.victorialogs,
          w=16,
          h=9,
          transformations=[
            { id: 'extractFields', options: { source: 'labels', format: 'json', replace: false, keepTime: false } },
            { id: 'convertFieldType', options: { fields: {}, conversions: [{ targetField: f, destinationType: 'number' } for f in seconds] } },
            {
              id: 'organize',
              options: {
                excludeByName: { id: true, labels: true },
                indexByName: { [order[i]]: i for i in std.range(0, std.length(order) - 1) },
                renameByName: columns,
              },
            },
          ],
          overrides=s.traceLinks('Trace ID')
        ) + { options+: { sortBy: [{ displayName: 'Time', desc: true }] } },
      ],
    },
}
