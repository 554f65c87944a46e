// HardeningTelemetryDropping / HardeningTargetDown: the telemetry itself, and whether processes and
// services still report (rules/liveness.libsonnet).
local alerting = import '../lib/alerting.libsonnet';
local liveness = import '../rules/liveness.libsonnet';

{
  new(c)::
    local a = alerting.new(c);
    local w = c.telemetryWindow;
    local sel = c.collectorSelector;
    // Exporters are judged one by one: summed together, a failing exporter is diluted by the
    // healthy ones and the alert could not name it.
    local byWhere = { exporter: 'job, instance, exporter', receiver: 'job, instance' };
    local sum(metric, by) = 'sum by (%s) (rate(%s{%s}[%s]))' % [by, metric, sel, w];
    // A counter the collector has not created yet (no failure so far, or no success so far: a
    // backend down since the start) counts as 0 as long as one of its siblings exists.
    local zeroOr(metric, siblings, by) = '(%s or (%s) * 0)' % [sum(metric, by), std.join(' or ', [sum(m, by) for m in siblings])];
    local exporterCounters(signal) = ['otelcol_exporter_%s_%s_total' % [kind, signal] for kind in ['sent', 'send_failed', 'enqueue_failed']];
    local counter(metric, all, by) = zeroOr(metric, [m for m in all if m != metric], by);
    local dropped(signal) =
      local all = exporterCounters(signal);
      '%s + %s' % [counter(all[1], all, byWhere.exporter), counter(all[2], all, byWhere.exporter)];
    local exported(signal) =
      local all = exporterCounters(signal);
      '%s + %s' % [counter(all[0], all, byWhere.exporter), dropped(signal)];
    local receiverCounters(signal) = ['otelcol_receiver_%s_%s_total' % [kind, signal] for kind in ['accepted', 'refused']];
    local refused(signal) = counter(receiverCounters(signal)[1], receiverCounters(signal), byWhere.receiver);
    local received(signal) = '%s + %s' % [counter(receiverCounters(signal)[0], receiverCounters(signal), byWhere.receiver), refused(signal)];
    // Tail sampling holds at most num_traces undecided traces; past that it evicts the oldest before
    // their decision, errors included: they are neither kept nor counted as sampled.
    local tailSampling(kind) = 'sum by (job, instance) (rate(otelcol_processor_tail_sampling_%s_total{%s}[%s]))' % [kind, sel, w];
    local collectorDrop(signal, where, num, den) = a.alert(
      'HardeningTelemetryDropping',
      '(%s) / (%s) > %g' % [num, den, c.telemetryDropRatio],
      'warning',
      'Collector {{ $labels.instance }} loses %s (%s).' % [signal, if where == 'exporter' then 'exporter {{ $labels.exporter }}' else where],
      'The collector {{ $labels.instance }} (job {{ $labels.job }}) %s {{ $value | humanizePercentage }} of %s over %s (threshold %g): this telemetry is lost.' % [
        {
          exporter: 'failed to send or enqueue with exporter {{ $labels.exporter }}',
          receiver: 'refused at its receivers (memory_limiter)',
          tail_sampling: 'evicted from tail sampling before their decision (num_traces full)',
        }[where],
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
          // Exporters without a queue (prometheus: pulled) have no queue_size series and never match.
          '(max by (%s) (otelcol_exporter_queue_size{%s}) > 0) unless on (%s) ((%s) > 0)' % [
            byWhere.exporter,
            sel,
            byWhere.exporter,
            std.join(' or ', ['sum by (%s) (rate(otelcol_exporter_sent_%s_total{%s}[%s]))' % [byWhere.exporter, s, sel, c.telemetryStallWindow] for s in c.telemetrySignals]),
          ],
          'warning',
          'Collector {{ $labels.instance }} exporter {{ $labels.exporter }} sends nothing.',
          'The collector {{ $labels.instance }} (job {{ $labels.job }}) holds {{ $value }} queued items for exporter {{ $labels.exporter }} and sent nothing over %s: its backend is down or refuses. Nothing is lost yet: the queue is dropped when the exporter retries give up or the queue fills.' % c.telemetryStallWindow,
          a.dashboard('pipeline'),
          c.telemetryStallFor,
          labels={ stage: 'stalled' },
        ),
      ] + [
        collectorDrop('traces', 'tail_sampling', tailSampling('sampling_trace_dropped_too_early'), tailSampling('new_trace_id_received')),
      ] + [
        a.alert(
          'HardeningTelemetryDropping',
          'max by (%s, %s) (hardening_health_component_status{%s}) == 1'
          % [c.serviceLabel, c.instanceLabel, liveness.sel(c, 'hardening_health_component="telemetry:export", hardening_health_state="degraded"')],
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
          // The pipeline dashboard's job variable lists the collectors' own jobs, not this one.
          a.dashboard('pipeline', null),
          c.targetDownFor,
          labels={ stage: 'scrape' },
        ),
        a.alert(
          'HardeningTargetDown',
          'absent(%s{%s})' % [c.livenessMetric, c.hardeningSelector],
          'critical',
          'No service reports otel-hardening metrics.',
          'Prometheus has no %s series at all: no app with otel-hardening exports metrics, or the collector does not reach Prometheus.' % c.livenessMetric,
          a.dashboard('health', null),
          c.targetDownFor,
          labels={ stage: 'absent' },
          service='otel-hardening',
        ),
        a.alert(
          'HardeningTargetDown',
          // Seconds since the service's last report, while none of its processes reports (the
          // last-report series outlives the service's own series: rules/liveness.libsonnet).
          liveness.unlessScrapeDown(c, 'time() - %s unless on (%s) %s' % [liveness.lastReport, c.serviceLabel, liveness.processes]),
          'critical',
          'Service {{ $labels.%s }} stopped reporting metrics.' % c.serviceLabel,
          'No process of {{ $labels.%s }} has reported %s for {{ $value | humanizeDuration }}: the service is down or cannot export (its last values expire from the collector %s after its last export).' % [c.serviceLabel, c.livenessMetric, c.appMetricExpiration],
          a.dashboard('health'),
          c.targetDownFor,
          labels={ stage: 'service' },
        ),
        a.alert(
          'HardeningTargetDown',
          // Gone processes of a service that now runs fewer processes than before: a deploy or a
          // restart replaces them (each process has a fresh service.instance.id) and does not fire.
          liveness.unlessScrapeDown(c, '%s and on (%s) (%s)' % [liveness.gone(c), c.serviceLabel, liveness.shrunk(c)]),
          'warning',
          'A process of {{ $labels.%s }} stopped reporting metrics.' % c.serviceLabel,
          'Process {{ $labels.%s }} of {{ $labels.%s }} stopped reporting %s (its series ended within the last %s) and the service now runs fewer processes than before: it crashed, hangs before exporting, or was scaled away.' % [c.instanceLabel, c.serviceLabel, c.livenessMetric, c.processGoneWindow],
          a.dashboard('health'),
          c.processGoneFor,
          labels={ stage: 'process' },
        ),
      ],
    },
}
