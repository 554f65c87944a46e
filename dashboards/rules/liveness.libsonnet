// Liveness of processes and services, from the series every process with otel-hardening exports
// (c.livenessMetric). A process's series end appMetricExpiration after its last export (the
// collector's prometheus exporter serves them until then), so presence means "reported lately".
{
  // c.hardeningSelector joined with more matchers, the empty selector left out.
  sel(c, extra=''):: std.join(', ', [m for m in [c.hardeningSelector, extra] if m != '']),

  processes:: 'hardening_service:processes_reporting:count',
  lastReport:: 'hardening_service:last_report_timestamp_seconds',

  local by(c) = '%s, %s' % [c.serviceLabel, c.instanceLabel],
  local series(c) = '%s{%s}' % [c.livenessMetric, $.sel(c)],

  // (service, instance) of every process reporting now.
  alive(c):: 'group by (%s) (%s)' % [by(c), series(c)],
  // `expr and on (by) metric`: a range-vector window (max_over_time) over `metric` ends when the
  // series it reads end, i.e. with the process (without depending on the health gauge).
  whilePresent(c, expr, by, metric):: '(%s) and on (%s) group by (%s) (%s{%s})' % [expr, by, by, metric, $.sel(c)],
  // While a collector exporter cannot be scraped every process looks gone: hold back.
  unlessScrapeDown(c, expr):: '(%s) unless on () group(up{%s} == 0)' % [expr, c.appScrapeSelector],

  // Processes that reported within processGoneWindow and no longer do.
  gone(c)::
    'group by (%(by)s) (present_over_time(%(s)s[%(w)s])) unless on (%(by)s) %(s)s'
    % { by: by(c), s: series(c), w: c.processGoneWindow },
  // Services running fewer processes now than before: than the least they ran in the window before
  // the last processGoneWindow (so a deploy's brief surge of extra processes does not count), or,
  // for a service younger than that, than the most they ran within the window.
  shrunk(c)::
    '%(p)s < (min_over_time(%(p)s[%(w)s] offset %(w)s) or on (%(s)s) max_over_time(%(p)s[%(w)s]))'
    % { p: $.processes, w: c.processGoneWindow, s: c.serviceLabel },

  new(c):: {
    name: 'otel-hardening-liveness',
    rules: [
      {
        record: $.processes,
        expr: 'count by (%s) (%s)' % [c.serviceLabel, $.alive(c)],
      },
      {
        // The newest sample time of any process of the service; once none reports, the previous
        // value is carried on (the rule reads its own last sample) for serviceGoneMemory, so a
        // dead service stays known after its series have ended.
        record: $.lastReport,
        expr: 'max by (%(s)s) (timestamp(%(series)s)) or on (%(s)s) (%(last)s > time() - %(memory)d)'
              % { s: c.serviceLabel, series: series(c), last: $.lastReport, memory: (import '../lib/alerting.libsonnet').seconds(c.serviceGoneMemory) },
      },
    ],
  },
}
