// HardeningMemoryLeakSuspected / HardeningResourceLeakSuspected / HardeningFdExhaustion.
local alerting = import '../lib/alerting.libsonnet';
local liveness = import '../rules/liveness.libsonnet';

{
  new(c)::
    local a = alerting.new(c);
    local by = '%s, %s' % [c.serviceLabel, c.instanceLabel];
    local usage = 'max by (%s) (hardening_process_file_descriptor_usage_ratio{%s})' % [by, c.hardeningSelector];
    local fdDescription =
      'Process {{ $labels.%s }} of {{ $labels.%s }} uses {{ $value | humanizePercentage }} of its file descriptor limit' % [c.instanceLabel, c.serviceLabel];
    {
      name: 'otel-hardening-resources',
      rules: [
        a.alert(
          'HardeningMemoryLeakSuspected',
          'max by (%s) (hardening_resource_leak_suspected{%s}) == 1' % [by, liveness.sel(c, 'hardening_resource="memory"')],
          'warning',
          'Memory leak suspected in {{ $labels.%s }} {{ $labels.%s }}.' % [c.serviceLabel, c.instanceLabel],
          'The leak detector of process {{ $labels.%s }} of {{ $labels.%s }} sees RSS growing steadily over its leak window. A tracemalloc hunt runs and logs the growing allocation sites (hardening.leak.report in VictoriaLogs).' % [c.instanceLabel, c.serviceLabel],
          a.dashboard('resources'),
          c.leakFor,
          c.leakKeepFiringFor,
        ),
        a.alert(
          'HardeningResourceLeakSuspected',
          'max by (%s, hardening_resource) (hardening_resource_leak_suspected{%s}) == 1' % [by, liveness.sel(c, 'hardening_resource!="memory"')],
          'warning',
          '{{ $labels.hardening_resource }} leak suspected in {{ $labels.%s }} {{ $labels.%s }}.' % [c.serviceLabel, c.instanceLabel],
          'The leak detector of process {{ $labels.%s }} of {{ $labels.%s }} sees {{ $labels.hardening_resource }} (fds, threads or asyncio tasks) growing steadily over its leak window.' % [c.instanceLabel, c.serviceLabel],
          a.dashboard('resources'),
          c.leakFor,
          c.leakKeepFiringFor,
        ),
        a.alert(
          'HardeningFdExhaustion',
          '%s > %g or (%s > %g and max by (%s) (predict_linear(hardening_process_file_descriptor_usage_ratio{%s}[%s], %s)) >= 1)'
          % [usage, c.fdWarningRatio, usage, c.fdPredictMinRatio, by, c.hardeningSelector, c.fdPredictWindow, alerting.seconds(c.fdPredictHorizon)],
          'warning',
          'File descriptors of {{ $labels.%s }} {{ $labels.%s }} running out.' % [c.serviceLabel, c.instanceLabel],
          fdDescription + ' (warning above %g, or at the trend of the last %s it reaches 100%% within %s).' % [c.fdWarningRatio, c.fdPredictWindow, c.fdPredictHorizon],
          a.dashboard('resources'),
          c.fdWarningFor,
        ),
        a.alert(
          'HardeningFdExhaustion',
          '%s > %g' % [usage, c.fdCriticalRatio],
          'critical',
          'File descriptors of {{ $labels.%s }} {{ $labels.%s }} nearly exhausted.' % [c.serviceLabel, c.instanceLabel],
          fdDescription + ' (critical above %g): the next open() or accept() may fail with EMFILE.' % c.fdCriticalRatio,
          a.dashboard('resources'),
          c.fdCriticalFor,
          c.criticalKeepFiringFor,
        ),
      ],
    },
}
