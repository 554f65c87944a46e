// HardeningUpstreamErrorBudgetBurn: multi-window, multi-burn-rate alerts (SRE workbook, ch. 5) on
// each upstream's logical-call success, from the recording rules in rules/slo.libsonnet.
local alerting = import '../lib/alerting.libsonnet';
local liveness = import '../rules/liveness.libsonnet';
local slo = import '../rules/slo.libsonnet';

{
  new(c)::
    local a = alerting.new(c);
    local budget = '(1 - %g)' % c.sloTarget;
    {
      name: 'otel-hardening-slo-burn',
      rules: [
        a.alert(
          'HardeningUpstreamErrorBudgetBurn',
          '%(long)s > %(f)g * %(b)s and %(short)s > %(f)g * %(b)s and %(calls)s >= %(min)g' % {
            long: slo.errorRatio(b.long),
            short: slo.errorRatio(b.short),
            calls: slo.calls(b.long),
            f: b.factor,
            b: budget,
            min: c.sloMinCalls,
          },
          b.severity,
          '{{ $labels.%s }} burns its error budget for {{ $labels.server_address }}:{{ $labels.server_port }} %gx too fast.' % [c.serviceLabel, b.factor],
          'Over the last %(long)s (and %(short)s), {{ $value | humanizePercentage }} of the logical calls of {{ $labels.%(s)s }} to {{ $labels.server_address }}:{{ $labels.server_port }} failed after hardening (SLO %(slo)g success). This pair of windows fires at %(f)gx the sustainable rate, which spends a 30-day error budget in %(days)g days.' % {
            long: b.long,
            short: b.short,
            s: c.serviceLabel,
            slo: c.sloTarget,
            f: b.factor,
            days: std.round(300 / b.factor) / 10,
          },
          a.dashboard('http'),
          b['for'],
          labels={ long_window: b.long, short_window: b.short },
        )
        for b in c.burnRateAlerts
      ] + [
        a.alert(
          'HardeningUpstreamSLIAbsent',
          local up = std.join(', ', [c.serviceLabel] + c.upstreamLabels);
          '(group by (%(up)s) (present_over_time(%(sli)s[%(w)s])) unless on (%(up)s) %(sli)s) and on (%(s)s) %(processes)s' % {
            up: up,
            sli: slo.sli(c),
            w: c.sliAbsentWindow,
            s: c.serviceLabel,
            processes: liveness.processes,
          },
          'warning',
          'The SLI of {{ $labels.%s }} for {{ $labels.server_address }}:{{ $labels.server_port }} is gone.' % c.serviceLabel,
          'Service {{ $labels.%(s)s }} still reports, but its logical calls to {{ $labels.server_address }}:{{ $labels.server_port }} (%(sli)s, from hardening_http_client_calls_total) existed in the last %(w)s and no longer do: its burn-rate alerts are blind. The service stopped calling it, its processes restarted and have not called it yet, or its hardened clients are no longer instrumented.' % {
            s: c.serviceLabel,
            sli: slo.sli(c),
            w: c.sliAbsentWindow,
          },
          a.dashboard('http'),
          c.sliAbsentFor,
        ),
      ],
    },
}
