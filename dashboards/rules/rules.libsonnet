// Every recording rule group of the mixin.
{
  new(c):: {
    groups: [
      (import 'slo.libsonnet').new(c),
    ],
  },
}
