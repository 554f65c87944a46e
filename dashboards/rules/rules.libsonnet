// Every recording rule group of the mixin.
{
  new(c):: {
    groups: (import 'slo.libsonnet').groups(c) + [
      (import 'liveness.libsonnet').new(c),
    ],
  },
}
