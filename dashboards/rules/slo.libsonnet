// Recording rules for the burn-rate alerts: per service and upstream, the share of logical calls
// that did not succeed, and the number of calls, over every window the alerts use.
{
  windows(c):: std.set(std.flattenArrays([[b.long, b.short] for b in c.burnRateAlerts])),
  longWindows(c):: std.set([b.long for b in c.burnRateAlerts]),
  errorRatio(w):: 'hardening_upstream:call_errors:ratio_rate%s' % w,
  calls(w):: 'hardening_upstream:calls:increase%s' % w,

  new(c)::
    local by = std.join(', ', [c.serviceLabel] + c.upstreamLabels);
    local rate(extra, w) = 'sum by (%s) (rate(hardening_http_client_calls_total{%s%s}[%s]))' % [by, c.hardeningSelector, extra, w];
    local failed = ', hardening_outcome!~"%s"' % std.join('|', c.successOutcomes);
    {
      name: 'otel-hardening-slo',
      rules: [
        {
          record: $.errorRatio(w),
          // No failed series yet means 0 failed, not "no data".
          expr: '(%s or %s * 0) / %s' % [rate(failed, w), rate('', w), rate('', w)],
        }
        for w in $.windows(c)
      ] + [
        {
          record: $.calls(w),
          expr: 'sum by (%s) (increase(hardening_http_client_calls_total{%s}[%s]))' % [by, c.hardeningSelector, w],
        }
        for w in $.longWindows(c)
      ],
    },
}
