// HardeningTelemetryDropping / HardeningTargetDown: the telemetry itself.
local alerting = import '../lib/alerting.libsonnet';

{
  new(c)::
    local a = alerting.new(c);
    local w = c.telemetryWindow;
    local sel = c.collectorSelector;
    local sum(metric) = 'sum by (job, instance) (rate(%s{%s}[%s]))' % [metric, sel, w];
    // A counter the collector has not created yet (no failure so far, or no success so far: a
    // backend down since the start) counts as 0 as long as one of its siblings exists.
    local zeroOr(metric, siblings) = '(%s or (%s) * 0)' % [sum(metric), std.join(' or ', [sum(m) for m in siblings])];
    local exporterCounters(signal) = ['otelcol_exporter_%s_%s_total' % [kind, signal] for kind in ['sent', 'send_failed', 'enqueue_failed']];
    local counter(metric, all) = zeroOr(metric, [m for m in all if m != metric]);
    local dropped(signal) =
      local all = exporterCounters(signal);
      '%s + %s' % [counter(all[1], all), counter(all[2], all)];
    local exported(signal) =
      local all = exporterCounters(signal);
      '%s + %s' % [counter(all[0], all), dropped(signal)];
    local receiverCounters(signal) = ['otelcol_receiver_%s_%s_total' % [kind, signal] for kind in ['accepted', 'refused']];
    local refused(signal) = counter(receiverCounters(signal)[1], receiverCounters(signal));
    local received(signal) = '%s + %s' % [counter(receiverCounters(signal)[0], receiverCounters(signal)), refused(signal)];
    local collectorDrop(signal, where, num, den) = a.alert(
      'HardeningTelemetryDropping',
      '(%s) / (%s) > %g' % [num, den, c.telemetryDropRatio],
      'warning',
      'Collector {{ $labels.instance }} loses %s (%s).' % [signal, where],
      'The collector {{ $labels.instance }} (job {{ $labels.job }}) %s {{ $value | humanizePercentage }} of %s over %s (threshold %g): this telemetry is lost.' % [
        if where == 'exporter' then 'failed to send or enqueue' else 'refused at its receivers (memory_limiter)',
        signal,
        w,
        c.telemetryDropRatio,
      ],
      a.dashboard('pipeline'),
      c.telemetryFor,
      labels={ signal: signal, stage: where },
    );
    {
      name: 'otel-hardening-telemetry',
      rules: [
        collectorDrop(signal, 'exporter', dropped(signal), exported(signal))
        for signal in c.telemetrySignals
      ] + [
        collectorDrop(signal, 'receiver', refused(signal), received(signal))
        for signal in c.telemetrySignals
      ] + [
        a.alert(
          'HardeningTelemetryDropping',
          'max by (%s, %s) (hardening_health_component_status{%s, hardening_health_component="telemetry:export", hardening_health_state="degraded"}) == 1'
          % [c.serviceLabel, c.instanceLabel, c.hardeningSelector],
          'warning',
          'Service {{ $labels.%s }} cannot export all its telemetry.' % c.serviceLabel,
          'The OTel SDK in process {{ $labels.%s }} of {{ $labels.%s }} reported export failures or dropped telemetry (health component telemetry:export) for %s: the collector is unreachable, slow or refusing.' % [c.instanceLabel, c.serviceLabel, c.telemetryFor],
          a.dashboard('pipeline', 'service'),
          c.telemetryFor,
          labels={ stage: 'app' },
        ),
        a.alert(
          'HardeningTargetDown',
          'up{%s} == 0' % c.scrapeTargetSelector,
          'critical',
          'Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}.',
          'Scrape target {{ $labels.instance }} of job {{ $labels.job }} is down: without it, every otel-hardening alert and dashboard is blind.',
          a.dashboard('pipeline'),
          c.targetDownFor,
          labels={ stage: 'scrape' },
        ),
        a.alert(
          'HardeningTargetDown',
          'absent(hardening_health_status{%s})' % c.hardeningSelector,
          'critical',
          'No service reports otel-hardening metrics.',
          'Prometheus has no hardening_health_status series at all: no app with otel-hardening exports metrics, or the collector does not reach Prometheus.',
          a.dashboard('health', null),
          c.targetDownFor,
          labels={ stage: 'absent' },
          service='otel-hardening',
        ),
        a.alert(
          'HardeningTargetDown',
          // The collector keeps a dead app's last values for metric_expiration (10m): a CPU counter
          // that stopped moving in every process of a service means the service stopped reporting.
          'sum by (%s) (changes(process_cpu_time_seconds_total{%s}[%s])) == 0' % [c.serviceLabel, c.hardeningSelector, c.staleWindow],
          'critical',
          'Service {{ $labels.%s }} stopped reporting metrics.' % c.serviceLabel,
          'No process of {{ $labels.%s }} updated its metrics in the last %s (process_cpu_time_seconds_total did not move): the service is down or cannot export.' % [c.serviceLabel, c.staleWindow],
          a.dashboard('health'),
          c.targetDownFor,
          labels={ stage: 'app' },
        ),
      ],
    },
}
