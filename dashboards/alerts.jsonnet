// Prometheus alert rules: jsonnet -S alerts.jsonnet > build/rules/alerts.yaml
std.manifestYamlDoc((import 'mixin.libsonnet').prometheusAlerts, indent_array_in_object=true, quote_keys=false)
