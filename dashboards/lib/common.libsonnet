// What every otel-hardening dashboard shares: variables, selectors and links, built from _config.
local g = import 'grafana.libsonnet';

{
  new(c):: {
    // Matchers joined with c.hardeningSelector (empty by default).
    sel(matchers):: std.join(', ', matchers + (if c.hardeningSelector == '' then [] else [c.hardeningSelector])),
    // App metrics of the selected services and processes (job/instance matchers first: the
    // dashboard linter wants `job=~"$job"` and `instance=~"$instance"` in every selector).
    app: self.sel(['job=~"$job"', 'instance=~"$instance"']),
    // ... and of the selected upstreams (HTTP metrics label an upstream by host and port).
    upstream: self.app + ', server_address=~"$upstream"',
    // Circuit metrics name the upstream scheme://host:port, or `_other` (the upstreams beyond the
    // first MAX_UPSTREAM_SERIES, aggregated; server_address is `_other` for them too).
    circuit: self.app + ', hardening_circuit_name=~"[a-z]+://($upstream):[0-9]+|($upstream)"',

    datasourceVariables: [
      g.datasourceVariable('prometheus', 'Prometheus data source', c.datasources.prometheus),
      g.datasourceVariable(g.types.jaeger, 'Jaeger data source', c.datasources.jaeger),
      g.datasourceVariable(g.types.victorialogs, 'VictoriaLogs data source', c.datasources.victorialogs),
    ],
    // LogsQL: the log records matching `filter` of the selected services. An app's Prometheus job is
    // service.namespace/service.name (service.name alone without a namespace): each record gets that
    // `job` field, so $job selects the same services here as on the metric panels. Backticks: a
    // LogsQL raw string, where the regex escapes of ${job:regex} stay as they are.
    logs(filter)::
      '%s | format "<service.name>" as job | format if (service.namespace:*) "<service.namespace>/<service.name>" as job | filter job:~`^(${job:regex})$`' % filter,
    // Jaeger searches one service by its OTel service.name: this variable offers the selected jobs'
    // service.name part (a job ns/name is searched as name), the first by default.
    traceServiceVariable: g.singleLabelVariable(
      'trace_service',
      'Trace service',
      'The service whose traces the Jaeger tables search: Jaeger searches one service by its OTel service.name (for a job ns/name, name).',
      'hardening_http_client_calls_total{%s}' % self.sel(['job=~"$job"', 'instance=~"$instance"']),
      'job',
      '/^(?:.*\\/)?([^/]+)$/'
    ),
    jobVariable: g.labelVariable(
      'job',
      'Job',
      'The service: OTel service.name, which is the Prometheus job label.',
      'hardening_health_status{%s}' % self.sel([]),
      'job'
    ),
    instanceVariable: g.labelVariable(
      'instance',
      'Instance',
      'One process of the service: OTel service.instance.id (Prometheus instance label).',
      'hardening_health_status{%s}' % self.sel(['job=~"$job"']),
      'instance'
    ),
    upstreamVariable: g.labelVariable(
      'upstream',
      'Upstream',
      'Upstream host (server.address) the service calls through hardened httpx clients.',
      'hardening_http_client_calls_total{%s}' % self.sel(['job=~"$job"', 'instance=~"$instance"']),
      'server_address'
    ),
    variables: self.datasourceVariables + [self.jobVariable, self.instanceVariable, self.upstreamVariable],

    // Overrides that make each trace ID in the field `field` open its trace in Jaeger, or its log
    // records in VictoriaLogs (the OTLP trace id is the trace_id field there).
    traceLinks(field):: [g.fieldOverride(field, [{
      id: 'links',
      value: [
        {
          title: 'Open trace in Jaeger',
          url: '',
          internal: { datasourceUid: c.datasources.jaeger, datasourceName: 'Jaeger', query: { query: '${__value.raw}' } },
        },
        {
          title: 'Log records of this trace (VictoriaLogs)',
          url: '',
          internal: {
            datasourceUid: c.datasources.victorialogs,
            datasourceName: 'VictoriaLogs',
            query: { expr: 'trace_id:="${__value.raw}"', queryType: 'instant', maxLines: c.logLimit },
          },
        },
      ],
    }])],

    dashboardUrl(key):: '%s/d/%s' % [c.grafanaUrl, c.dashboardUids[key]],

    dashboard(key, title, description, rows, variables=self.variables)::
      g.dashboard(c.dashboardUids[key], title, description, c.dashboardTags, variables, rows, c.dashboardRefresh, c.dashboardPeriod),
  },
}
