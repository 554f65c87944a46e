// HardeningWatchdog: always firing, so that its notifications prove the whole alerting path
// (Prometheus evaluates rules, reaches Alertmanager, Alertmanager reaches a receiver) works.
// alertmanager/alertmanager.yml routes it to its own receiver: a dead-man's switch that alerts when
// the notifications STOP.
local alerting = import '../lib/alerting.libsonnet';

{
  new(c)::
    local a = alerting.new(c);
    {
      name: 'otel-hardening-watchdog',
      rules: [
        a.alert(
          'HardeningWatchdog',
          'vector(1)',
          c.watchdogSeverity,
          'The otel-hardening alerting pipeline works (always firing).',
          'This alert always fires. Its notifications reach the dead-man switch receiver every few minutes; when they stop, Prometheus, its rules, Alertmanager or the route to the receiver is broken, and every other otel-hardening alert is silent too.',
          a.dashboard('health', null),
          '0s',
          service='otel-hardening',
        ),
      ],
    },
}
