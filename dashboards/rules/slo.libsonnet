// Recording rules for the burn-rate alerts: per service and upstream, the share of logical calls
// that did not succeed, and the number of calls, over every window the alerts use; and the error
// budget left over sloBudgetWindow.
local alerting = import '../lib/alerting.libsonnet';
local liveness = import 'liveness.libsonnet';

{
  windows(c):: std.set(std.flattenArrays([[b.long, b.short] for b in c.burnRateAlerts]), alerting.seconds),
  longWindows(c):: std.set([b.long for b in c.burnRateAlerts], alerting.seconds),
  // The shortest window's error ratio is the SLI that HardeningUpstreamSLIAbsent watches.
  sli(c):: $.errorRatio($.windows(c)[0]),
  errorRatio(w):: 'hardening_upstream:call_errors:ratio_rate%s' % w,
  calls(w):: 'hardening_upstream:calls:increase%s' % w,
  budgetRemaining(c):: 'hardening_upstream:error_budget_remaining:ratio%s' % c.sloBudgetWindow,

  groups(c)::
    local by = std.join(', ', [c.serviceLabel] + c.upstreamLabels);
    local sel(extra) = liveness.sel(c, extra);
    local failed = 'hardening_outcome!~"%s"' % std.join('|', c.successOutcomes);
    local over(fn, extra, w) = 'sum by (%s) (%s(hardening_http_client_calls_total{%s}[%s]))' % [by, fn, sel(extra), w];
    // No failed series yet means 0 failed, not "no data".
    local zeroOr(fn, w) = '(%s or %s * 0)' % [over(fn, failed, w), over(fn, '', w)];
    local slow(w) = alerting.seconds(w) >= alerting.seconds(c.sloSlowWindowFrom);
    local rules(ws) = [
      { record: $.errorRatio(w), expr: '%s / %s' % [zeroOr('rate', w), over('rate', '', w)] }
      for w in ws
    ] + [
      { record: $.calls(w), expr: over('increase', '', w) }
      for w in $.longWindows(c)
      if std.member(ws, w)
    ];
    local step = c.sloBudgetStep;
    local budgetCalls = $.calls(step);
    local budgetErrors = 'hardening_upstream:call_errors:increase%s' % step;
    local total(r) = 'sum_over_time(%s[%s])' % [r, c.sloBudgetWindow];
    [
      {
        name: 'otel-hardening-slo',
        rules: rules([w for w in $.windows(c) if !slow(w)]),
      },
      {
        name: 'otel-hardening-slo-slow',
        interval: c.sloSlowInterval,
        rules: rules([w for w in $.windows(c) if slow(w)]),
      },
      {
        // Each evaluation records the increase since the previous one (window = interval), so the
        // sum over sloBudgetWindow counts every call about once.
        name: 'otel-hardening-slo-budget',
        interval: step,
        rules: [
          { record: budgetCalls, expr: over('increase', '', step) },
          { record: budgetErrors, expr: zeroOr('increase', step) },
          {
            record: $.budgetRemaining(c),
            expr: '1 - (%s / %s) / (1 - %g) and %s > 0' % [total(budgetErrors), total(budgetCalls), c.sloTarget, total(budgetCalls)],
          },
        ],
      },
    ],
}
