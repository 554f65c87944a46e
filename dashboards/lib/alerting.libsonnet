// Alert rule builder: every alert gets labels severity + service and annotations summary,
// description (with the value), dashboard_url and runbook_url (an anchor in docs/runbooks.md).
{
  // Seconds in a Prometheus duration such as '90s', '5m', '1h', '3d' (one unit).
  seconds(d)::
    local unit = d[std.length(d) - 1];
    local n = std.parseInt(d[0:std.length(d) - 1]);
    n * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[unit],

  new(c)::
    // GitHub-style heading anchor of the alert's section in docs/runbooks.md.
    local runbook(name) = '%s#%s' % [c.runbookUrl, std.asciiLower(name)];
    {
      runbook(name):: runbook(name),
      // The dashboard, filtered on the alert's service when jobVar names the variable to set.
      dashboard(key, jobVar='job')::
        '%s/d/%s' % [c.grafanaUrl, c.dashboardUids[key]]
        + (if jobVar == null then '' else '?var-%s={{ $labels.%s }}' % [jobVar, c.serviceLabel]),

      alert(name, expr, severity, summary, description, dashboard, forDuration, keepFiringFor=null, labels={}, service=null):: {
        alert: name,
        expr: expr,
        'for': forDuration,
        [if keepFiringFor != null then 'keep_firing_for']: keepFiringFor,
        labels: {
          severity: severity,
          service: if service != null then service else '{{ $labels.%s }}' % c.serviceLabel,
        } + labels,
        annotations: {
          summary: summary,
          description: description,
          dashboard_url: dashboard,
          runbook_url: runbook(name),
        },
      },
    },
}
