// Service health: is the service healthy now, since when, which component is not, what fired.
local common = import '../lib/common.libsonnet';
local g = import '../lib/grafana.libsonnet';

{
  new(c)::
    local s = common.new(c);
    // 0 healthy, 1 degraded, 2 critical per process (exactly one state series is 1 at a time).
    local statusExpr(by, sel) =
      '2 * max by (%(by)s) (hardening_health_status{%(sel)s, hardening_health_state="critical"}) + max by (%(by)s) (hardening_health_status{%(sel)s, hardening_health_state="degraded"})' % { by: by, sel: sel };
    local componentExpr =
      '2 * max by (job, instance, hardening_health_component) (hardening_health_component_status{%(sel)s, hardening_health_state="critical"}) + max by (job, instance, hardening_health_component) (hardening_health_component_status{%(sel)s, hardening_health_state="degraded"})' % { sel: s.app };
    local statusMappings = g.valueMappings([[0, 'healthy', 'green'], [1, 'degraded', 'orange'], [2, 'critical', 'red']]);
    local statusSteps = [[null, 'green'], [1, 'orange'], [2, 'red']];

    s.dashboard('health', 'otel-hardening / Service health', 'Health status of services using otel-hardening: now, over time, by component, with firing alerts and the latest leak-hunt report.', [
      [
        g.stat(
          'Status now (worst of selection)',
          'Worst health status of the selected processes. Green healthy, orange degraded, red critical. If not green: read the Components table for the component and its state, then open the dashboard for that component (HTTP resilience for <upstream>:circuit/errors/retries, Resources & leaks for fds/memory/leak, Telemetry pipeline for telemetry:export).',
          [g.prom('max(%s)' % statusExpr('job, instance', s.app), 'status', instant=true)],
          'none',
          w=6,
          h=6,
          steps=statusSteps,
          mappings=statusMappings
        ),
        g.stat(
          'Status per process',
          'Health status of each selected process (job / instance). A single red process among green ones points at that host or pod (fds, memory), all red at a shared dependency (an upstream circuit).',
          [g.prom(statusExpr('job, instance', s.app), '{{job}} {{instance}}', instant=true)],
          'none',
          w=12,
          h=6,
          steps=statusSteps,
          mappings=statusMappings
        ),
        g.stat(
          'Ready (can serve)',
          'Readiness of each process (/readyz): not ready only when its own resources (fds, memory) are critical, its resource sampler died, or a required dependency (OTEL_PYTHON_HARDENING_HEALTH_REQUIRED) is critical. An optional upstream down makes the status critical but leaves the process ready. Not ready: take it out of the load balancer, fix fds/memory, or restart it.',
          [g.prom('min by (job, instance) (hardening_health_ready{%s})' % s.app, '{{job}} {{instance}}', instant=true)],
          'none',
          w=6,
          h=6,
          steps=[[null, 'red'], [1, 'green']],
          mappings=g.valueMappings([[0, 'not ready', 'red'], [1, 'ready', 'green']])
        ),
      ],
      [
        g.stateTimeline(
          'Status timeline',
          'Health status of each process over time. Worse states apply at once; better states only after they held for OTEL_PYTHON_HARDENING_HEALTH_RECOVERY_HOLD (30 s). Correlate the start of a red band with the Health changes log below for the reasons.',
          [g.prom(statusExpr('job, instance', s.app), '{{job}} {{instance}}')],
          'none',
          statusMappings,
          w=24,
          h=6
        ),
      ],
      [
        g.table(
          'Components (state now)',
          'Every health component (component:measurement) of the selected processes with its state now, worst first. <upstream>:circuit = circuit breaker, :errors = failed calls ratio, :retries = retry ratio, fds/memory:utilization, leak:*, telemetry:export. The reasons are in the Health changes log and on /healthz with details.',
          [g.prom(componentExpr, '', instant=true, format='table')],
          'none',
          w=12,
          h=10,
          transformations=[
            { id: 'organize', options: { excludeByName: { Time: true }, renameByName: { hardening_health_component: 'component', Value: 'state' } } },
            { id: 'sortBy', options: { sort: [{ field: 'state', desc: true }] } },
          ],
          overrides=[g.fieldOverride('state', [
            { id: 'mappings', value: statusMappings },
            { id: 'custom.cellOptions', value: { type: 'color-background' } },
            { id: 'thresholds', value: g.thresholds(statusSteps) },
            { id: 'color', value: { mode: 'thresholds' } },
          ])],
        ),
        g.table(
          'Firing alerts',
          'Alerts firing now for the selected services (Prometheus ALERTS series), and those that say monitoring itself is blind whatever the service (HardeningTargetDown for a scrape target or no app at all, HardeningTelemetryDropping in a collector): alertname, severity and labels. Each alert links a runbook (docs/runbooks.md) in its runbook_url annotation; critical alerts page, warnings are tickets. The always-firing HardeningWatchdog is left out.',
          [g.prom('ALERTS{job=~"$job", alertstate="firing", alertname!="HardeningWatchdog"} or ALERTS{alertstate="firing", alertname=~"HardeningTargetDown|HardeningTelemetryDropping", stage=~"scrape|absent|exporter|receiver"}', '', instant=true, format='table')],
          'none',
          w=12,
          h=10,
          transformations=[{ id: 'organize', options: { excludeByName: { Time: true, Value: true, __name__: true, alertstate: true } } }],
        ),
      ],
      [
        g.logs(
          'Health changes (with reasons)',
          'Log record hardening.health.change (VictoriaLogs, LogsQL hardening.health.state:*): every change of the process status with the reasons of every non-healthy component, newest first. Start here to learn why the status changed; then follow the component to its dashboard. A record with a trace_id opens its trace in Jaeger.',
          [g.logsql(s.logs('hardening.health.state:*'), c.logLimit)],
          w=12,
          h=10
        ),
        g.logs(
          'Latest leak-hunt report',
          'Log record hardening.leak.report (VictoriaLogs, LogsQL hardening.leak.hunt.trigger:*): the tracemalloc hunt run when a memory leak is suspected (or by hunt()). The body lists the growing allocation sites, biggest first, each with its traceback: the first site is where to look in the code.',
          [g.logsql(s.logs('hardening.leak.hunt.trigger:*'), c.huntLogLimit)],
          w=12,
          h=10
        ),
      ],
    ]),
}
