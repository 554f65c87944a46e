// Telemetry pipeline: is the telemetry itself arriving? Collector accepted/refused/dropped per
// signal, exporter queues, memory_limiter, and the apps' own export failures.
local common = import '../lib/common.libsonnet';
local g = import '../lib/grafana.libsonnet';

{
  new(c)::
    local s = common.new(c);
    local sel = 'job=~"$job", instance=~"$instance", %s' % c.collectorSelector;
    local perSignal(metric, by, legend) = [
      g.prom('sum by (%s) (rate(%s{%s}[$__rate_interval]))' % [by, metric % signal, sel], '%s %s' % [signal, legend])
      for signal in c.telemetrySignals
    ];
    local exportMappings = g.valueMappings([[0, 'ok', 'green'], [1, 'export failures', 'red']]);
    local variables = s.datasourceVariables + [
      g.labelVariable('job', 'Job', 'The collector scrape job (its own telemetry, otelcol_*).', 'up{%s}' % c.collectorSelector, 'job'),
      g.labelVariable('instance', 'Instance', 'One collector process.', 'up{job=~"$job", %s}' % c.collectorSelector, 'instance'),
      g.labelVariable('service', 'Service', 'Services whose own export health is shown (OTel service.name = Prometheus job of app metrics).', 'hardening_health_status{%s}' % c.hardeningSelector, 'job'),
    ];

    s.dashboard('pipeline', 'otel-hardening / Telemetry pipeline', 'Whether telemetry arrives: what the OpenTelemetry Collector accepted, refused and failed to export per signal, its exporter queues and memory, and the export failures the apps themselves saw.', [
      [
        g.timeseries(
          'Accepted by receivers',
          'Spans, metric points and log records per second the collector receivers accepted, per signal and receiver. A drop to 0 for a signal: the apps stopped sending it (check their OTEL_EXPORTER_OTLP_ENDPOINT and the App export failures panel).',
          perSignal('otelcol_receiver_accepted_%s_total', 'receiver', '{{receiver}}'),
          'short',
          w=12
        ),
        g.timeseries(
          'Refused by receivers (memory_limiter)',
          'Items per second receivers refused because the pipeline refused them, mostly the memory_limiter: the collector is above its memory limit and pushes back; SDKs retry, then drop. Raise the limit (OTELCOL_MEMORY_LIMIT_MIB) or scale out (collector/README.md). Any sustained value fires HardeningTelemetryDropping.',
          perSignal('otelcol_receiver_refused_%s_total', 'receiver', '{{receiver}}'),
          'short',
          w=12,
          steps=[[null, 'green'], [1, 'red']]
        ),
      ],
      [
        g.timeseries(
          'Sent by exporters',
          'Items per second each exporter delivered (prometheus = metrics to Prometheus, otlp/jaeger = traces to Jaeger, otlphttp/victorialogs = logs to VictoriaLogs), per signal.',
          perSignal('otelcol_exporter_sent_%s_total', 'exporter', '{{exporter}}'),
          'short',
          w=12
        ),
        g.timeseries(
          'Dropped by exporters (send or enqueue failed)',
          'Items per second each exporter of each collector failed to send after its retries, or could not queue because the queue was full: this telemetry is lost. Check the backend of that exporter (Jaeger, VictoriaLogs, Prometheus; on an agent, loadbalancing = the gateways) and the queue panel. Fires HardeningTelemetryDropping, per exporter, above %g %% of its items.' % (c.telemetryDropRatio * 100),
          perSignal('otelcol_exporter_send_failed_%s_total', 'instance, exporter', 'send failed {{exporter}} {{instance}}')
          + [
            // The enqueue-failed counter appears at the first failure: 0 until then.
            g.prom('sum by (instance, exporter) (rate(otelcol_exporter_enqueue_failed_%(s)s_total{%(sel)s}[$__rate_interval])) or sum by (instance, exporter) (rate(otelcol_exporter_sent_%(s)s_total{%(sel)s}[$__rate_interval])) * 0' % { s: signal, sel: sel }, '%s enqueue failed {{exporter}} {{instance}}' % signal)
            for signal in c.telemetrySignals
          ],
          'short',
          w=12,
          steps=[[null, 'green'], [1, 'red']]
        ),
      ],
      [
        g.timeseries(
          'Exporter queue fill (size / capacity)',
          'Batches waiting in each exporter sending queue as a share of its capacity. Near 100 % the next items are dropped (enqueue failed): the backend is slower than the input or down.',
          [g.prom('max by (exporter) (otelcol_exporter_queue_size{%s}) / max by (exporter) (otelcol_exporter_queue_capacity{%s})' % [sel, sel], '{{exporter}}')],
          'percentunit',
          w=8,
          steps=[[null, 'green'], [0.5, 'orange'], [0.9, 'red']],
          min=0,
          max=1
        ),
        g.timeseries(
          'Collector memory (RSS) and heap',
          'Resident memory and Go heap of each collector process. When the heap nears the memory_limiter limit (default 400 MiB), receivers start refusing data.',
          [
            g.prom('max by (instance) (otelcol_process_memory_rss{%s})' % sel, 'RSS {{instance}}'),
            g.prom('max by (instance) (otelcol_process_runtime_heap_alloc_bytes{%s})' % sel, 'heap {{instance}}'),
          ],
          'bytes',
          w=8
        ),
        g.stateTimeline(
          'App export failures (health telemetry:export)',
          'Per app process: red while the OTel SDK in the app reported export failures or dropped telemetry in the health window (the health component telemetry:export). Red here but nothing refused above: the app cannot reach the collector (network, endpoint, TLS).',
          [g.prom('max by (job, instance) (hardening_health_component_status{job=~"$service", hardening_health_component="telemetry:export", hardening_health_state="degraded"%s})' % (if c.hardeningSelector == '' then '' else ', ' + c.hardeningSelector), '{{job}} {{instance}}')],
          'none',
          exportMappings,
          w=8,
          h=8
        ),
      ],
      [
        g.timeseries(
          'Tail sampling: undecided traces in memory',
          'Traces each collector (each gateway when scaled out) buffers while it waits decision_wait to decide them. Its ceiling is num_traces (OTELCOL_TAIL_NUM_TRACES, default 50000): at the ceiling the oldest traces are evicted undecided (next panel). Size num_traces above new traces per second x decision_wait, with headroom, or add gateways.',
          [g.prom('max by (instance) (otelcol_processor_tail_sampling_sampling_traces_on_memory{%s})' % sel, '{{instance}}')],
          'short',
          w=12,
          min=0
        ),
        g.timeseries(
          'Tail sampling: traces evicted before their decision (overflow)',
          'Traces per second evicted from the tail-sampling buffer before their decision because num_traces was full, against new traces per second. An evicted trace is lost whole, errors included. Fires HardeningTelemetryDropping stage=tail_sampling above %g %% of new traces.' % (c.telemetryDropRatio * 100),
          [
            g.prom('sum by (instance) (rate(otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total{%s}[$__rate_interval]))' % sel, 'evicted {{instance}}'),
            g.prom('sum by (instance) (rate(otelcol_processor_tail_sampling_new_trace_id_received_total{%s}[$__rate_interval]))' % sel, 'new traces {{instance}}'),
          ],
          'short',
          w=12,
          min=0
        ),
      ],
    ], variables=variables),
}
