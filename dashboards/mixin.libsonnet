// The otel-hardening monitoring mixin: dashboards, alerts and recording rules from one config.
(import 'config.libsonnet') + {
  prometheusAlerts+:: (import 'alerts/alerts.libsonnet').new($._config),
  prometheusRules+:: (import 'rules/rules.libsonnet').new($._config),
  grafanaDashboards+:: (import 'dashboards/dashboards.libsonnet').new($._config),
}
