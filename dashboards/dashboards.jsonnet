// Dashboard JSON files: jsonnet -m build/dashboards dashboards.jsonnet
(import 'mixin.libsonnet').grafanaDashboards
