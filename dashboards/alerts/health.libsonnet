// HardeningServiceCritical / HardeningServiceDegraded: the app's own health status.
local alerting = import '../lib/alerting.libsonnet';
local liveness = import '../rules/liveness.libsonnet';

{
  new(c)::
    local a = alerting.new(c);
    local by = '%s, %s' % [c.serviceLabel, c.instanceLabel];
    local status(state) =
      'max by (%s) (hardening_health_status{%s}) == 1' % [by, liveness.sel(c, 'hardening_health_state="%s"' % state)];
    // The components in that state, listed from the component gauge at notification time.
    local components(state) =
      '{{ range query (printf "hardening_health_component_status{%(s)s=%%q, %(i)s=%%q, hardening_health_state=\\"%(state)s\\"} == 1" $labels.%(s)s $labels.%(i)s) }}{{ .Labels.hardening_health_component }} {{ end }}'
      % { s: c.serviceLabel, i: c.instanceLabel, state: state };
    {
      name: 'otel-hardening-health',
      rules: [
        a.alert(
          'HardeningServiceCritical',
          status('critical'),
          'critical',
          'Service {{ $labels.%s }} is critical.' % c.serviceLabel,
          'Process {{ $labels.%s }} of {{ $labels.%s }} reports health status critical. Critical components: %s' % [c.instanceLabel, c.serviceLabel, components('critical')],
          a.dashboard('health'),
          c.criticalFor,
          c.criticalKeepFiringFor,
        ),
        a.alert(
          'HardeningServiceDegraded',
          status('degraded'),
          'warning',
          'Service {{ $labels.%s }} is degraded.' % c.serviceLabel,
          'Process {{ $labels.%s }} of {{ $labels.%s }} reports health status degraded. Degraded components: %s' % [c.instanceLabel, c.serviceLabel, components('degraded')],
          a.dashboard('health'),
          c.degradedFor,
          c.degradedKeepFiringFor,
        ),
      ],
    },
}
