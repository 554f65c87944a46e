// Every alert group of the mixin.
{
  new(c):: {
    groups: [
      (import 'health.libsonnet').new(c),
      (import 'http.libsonnet').new(c),
      (import 'bypass.libsonnet').new(c),
      (import 'resources.libsonnet').new(c),
      (import 'pipeline.libsonnet').new(c),
      (import 'slo.libsonnet').new(c),
      (import 'outbox.libsonnet').new(c),
      (import 'watchdog.libsonnet').new(c),
    ],
  },
}
