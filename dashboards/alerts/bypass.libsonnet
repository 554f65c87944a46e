// HardeningBypassed: the layer let a client or a request through unhardened (hardening.bypassed).
local alerting = import '../lib/alerting.libsonnet';

{
  new(c)::
    local a = alerting.new(c);
    local by = '%s, reason' % c.serviceLabel;
    // the selector joined with more matchers (an empty selector left out)
    local sel(extra='') = std.join(', ', [m for m in [c.hardeningSelector, extra] if m != '']);
    {
      name: 'otel-hardening-self',
      rules: [
        a.alert(
          'HardeningBypassed',
          // Any bypass in the window; a missing hook also while its process reports (it was counted
          // at start-up, possibly before the first scrape, where increase() cannot see it).
          '(sum by (%s) (increase(hardening_bypassed_total{%s}[%s])) > 0) or (max by (%s) (hardening_bypassed_total{%s}) > 0)'
          % [by, sel(), c.bypassWindow, by, sel('reason="hook_missing"')],
          'warning',
          'otel-hardening of {{ $labels.%s }} was bypassed ({{ $labels.reason }}).' % c.serviceLabel,
          'Service {{ $labels.%s }} let clients or requests through without circuit breakers or retries (reason {{ $labels.reason }}, {{ $value | printf "%%.0f" }} in the last %s or, for hook_missing, since its start): hardening is not protecting it.' % [c.serviceLabel, c.bypassWindow],
          a.dashboard('http'),
          c.bypassFor,
        ),
      ],
    },
}
