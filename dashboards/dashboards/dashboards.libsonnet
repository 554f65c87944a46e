// Every dashboard of the mixin, by file name.
{
  new(c):: {
    'hardening-health.json': (import 'service-health.libsonnet').new(c),
    'hardening-http.json': (import 'http-resilience.libsonnet').new(c),
    'hardening-resources.json': (import 'resources.libsonnet').new(c),
    'hardening-pipeline.json': (import 'telemetry-pipeline.libsonnet').new(c),
  },
}
