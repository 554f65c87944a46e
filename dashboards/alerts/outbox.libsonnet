// HardeningOutboxBacklogOld / HardeningOutboxDeadLetters: writes deferred to the outbox (docs/outbox.md).
// Thresholds: c.outboxBacklogAge (default 15m), c.outboxBacklogFor (5m), c.outboxDeadLettersFor (1m).
// By service and outbox, not by process: processes sharing a Redis store all report the same backlog.
local alerting = import '../lib/alerting.libsonnet';

{
  new(c)::
    local a = alerting.new(c);
    local backlogAge = std.get(c, 'outboxBacklogAge', '15m');
    local sel = std.join(', ', [m for m in [c.hardeningSelector] if m != '']);
    local by = '%s, hardening_outbox_name' % c.serviceLabel;
    {
      name: 'otel-hardening-outbox',
      rules: [
        a.alert(
          'HardeningOutboxBacklogOld',
          'max by (%s) (hardening_outbox_oldest_age_seconds{%s}) > %d' % [by, sel, alerting.seconds(backlogAge)],
          'warning',
          'Outbox {{ $labels.hardening_outbox_name }} of {{ $labels.%s }} holds a write deferred {{ $value | humanizeDuration }} ago.' % c.serviceLabel,
          'The oldest write waiting in outbox {{ $labels.hardening_outbox_name }} of service {{ $labels.%s }} was deferred {{ $value | humanizeDuration }} ago (threshold %s): its upstream has not taken it back since, or no process is replaying.' % [c.serviceLabel, backlogAge],
          a.dashboard('http'),
          std.get(c, 'outboxBacklogFor', '5m'),
        ),
        a.alert(
          'HardeningOutboxDeadLetters',
          'max by (%s) (hardening_outbox_dead_letters{%s}) > 0' % [by, sel],
          'warning',
          'Outbox {{ $labels.hardening_outbox_name }} of {{ $labels.%s }} has {{ $value }} dead letters.' % c.serviceLabel,
          'Outbox {{ $labels.hardening_outbox_name }} of service {{ $labels.%s }} holds {{ $value }} writes it gave up replaying (too many failed replays, too old, or rejected by the upstream): they will not be sent unless someone retries them.' % c.serviceLabel,
          a.dashboard('http'),
          std.get(c, 'outboxDeadLettersFor', '1m'),
        ),
      ],
    },
}
