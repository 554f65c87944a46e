// Resources & leaks: memory, fds, threads, tasks, GC, and the leak detector's verdicts and hunts.
local common = import '../lib/common.libsonnet';
local g = import '../lib/grafana.libsonnet';

{
  new(c)::
    local s = common.new(c);
    local byProc(metric, extra='') = 'max by (job, instance%s) (%s{%s})' % [extra, metric, s.app];
    local leakMappings = g.valueMappings([[0, 'ok', 'green'], [1, 'leak suspected', 'red']]);

    s.dashboard('resources', 'otel-hardening / Resources & leaks', 'Process resources of services using otel-hardening (memory, file descriptors, threads, asyncio tasks, GC) and the leak detector: suspected leaks and the tracemalloc hunt that names the leaking line.', [
      [
        g.stateTimeline(
          'Leak suspected',
          'Leak detector verdict per process and resource (memory, fds, threads, tasks): red while the resource grows steadily over the leak window (not a cache filling once). On red memory, a tracemalloc hunt runs and its report appears in Leak-hunt reports below; for fds/threads/tasks see their panels and what the app opens per request.',
          [g.prom(byProc('hardening_resource_leak_suspected', ', hardening_resource'), '{{instance}} {{hardening_resource}}')],
          'none',
          leakMappings,
          w=24,
          h=6
        ),
      ],
      [
        g.timeseries(
          'Memory: RSS, USS and limit',
          'Resident set size (RSS), unique set size (USS: what exiting would free) and the cgroup memory limit per process. RSS approaching the limit: the OOM killer is near (health degraded at 85 %, critical at 95 %). RSS rising with USS flat = shared pages (libraries), not a leak.',
          [
            g.prom(byProc('process_memory_usage_bytes'), 'RSS {{instance}}'),
            g.prom(byProc('hardening_process_memory_uss_bytes'), 'USS {{instance}}'),
            g.prom(byProc('hardening_process_memory_limit_bytes'), 'limit {{instance}}'),
          ],
          'bytes',
          w=12
        ),
        g.timeseries(
          'Memory growth rate (Theil-Sen slope of RSS)',
          'Robust slope of RSS over the leak window, per process (0 during warm-up). A sustained positive slope that does not return to 0 is what the memory leak verdict is made of; a short positive bump is a cache or a burst.',
          [g.prom(byProc('hardening_memory_growth_rate_bytes_per_second'), '{{instance}}')],
          'Bps',
          w=12
        ),
      ],
      [
        g.timeseries(
          'File descriptors used (of the soft limit)',
          'Open fds / soft RLIMIT_NOFILE per process: at 100 %% the next open() or accept() fails with EMFILE. Orange at %g (HardeningFdExhaustion warning, health degraded), red at %g (critical). Rising steadily: sockets or files not closed (see fds and sockets on the right).' % [c.fdWarningRatio, c.fdCriticalRatio],
          [g.prom(byProc('hardening_process_file_descriptor_usage_ratio'), '{{instance}}')],
          'percentunit',
          w=12,
          steps=[[null, 'green'], [c.fdWarningRatio, 'orange'], [c.fdCriticalRatio, 'red']],
          min=0,
          max=1
        ),
        g.timeseries(
          'Open fds, sockets and hardened clients',
          'Open file descriptors, sockets among them, and hardened httpx clients alive per process. Sockets growing with clients: clients created per request and never closed (use one long-lived client). Fds growing without sockets: files.',
          [
            // otel-hardening skips its own count while the system-metrics instrumentation emits one.
            g.prom('%s or %s' % [byProc('process_unix_file_descriptor_count'), byProc('process_open_file_descriptor_count')], 'fds {{instance}}'),
            g.prom(byProc('hardening_process_socket_count'), 'sockets {{instance}}'),
            g.prom(byProc('hardening_httpx_client_open'), 'httpx clients {{instance}}'),
          ],
          'short',
          w=12
        ),
      ],
      [
        g.timeseries(
          'Threads',
          'OS threads per process and their growth rate per second. Threads that only grow: a thread (or executor) started per task and never joined.',
          [
            g.prom(byProc('process_thread_count'), 'threads {{instance}}'),
            g.prom(byProc('hardening_thread_growth_rate_per_second'), 'growth/s {{instance}}'),
          ],
          'short',
          w=8
        ),
        g.timeseries(
          'asyncio tasks',
          'Unfinished asyncio tasks per running event loop (thread) and their growth rate. Tasks that only grow: fire-and-forget tasks that never finish (a stream read forever, a missing timeout).',
          [
            g.prom('max by (job, instance, thread_name) (hardening_asyncio_task_count{%s})' % s.app, 'tasks {{instance}} {{thread_name}}'),
            g.prom(byProc('hardening_asyncio_task_growth_rate_per_second'), 'growth/s {{instance}}'),
          ],
          'short',
          w=8
        ),
        g.timeseries(
          'CPU',
          'CPU used per process by mode (user, system), in cores. A leak often shows as rising GC and CPU before memory runs out.',
          [g.prom('sum by (job, instance, cpu_mode) (rate(process_cpu_time_seconds_total{%s}[$__rate_interval]))' % s.app, '{{instance}} {{cpu_mode}}')],
          'short',
          w=8
        ),
      ],
      [
        g.timeseries(
          'GC collections and uncollectable objects',
          'CPython garbage collections per second by generation, and uncollectable objects found per second. Generation-2 collections rising with memory = many long-lived objects (a growing cache or leak); any uncollectable object = reference cycles with __del__ that never free.',
          [
            g.prom('sum by (job, instance, cpython_gc_generation) (rate(cpython_gc_collections_total{%s}[$__rate_interval]))' % s.app, 'collections gen {{cpython_gc_generation}} {{instance}}'),
            g.prom('sum by (job, instance) (rate(cpython_gc_uncollectable_objects_total{%s}[$__rate_interval]))' % s.app, 'uncollectable {{instance}}'),
          ],
          'ops',
          w=12
        ),
        g.timeseries(
          'GC collected objects',
          'Objects freed by the garbage collector per second by generation: the churn of cyclic garbage. High churn costs CPU pauses but is not a leak by itself.',
          [g.prom('sum by (job, instance, cpython_gc_generation) (rate(cpython_gc_collected_objects_total{%s}[$__rate_interval]))' % s.app, 'gen {{cpython_gc_generation}} {{instance}}')],
          'ops',
          w=12
        ),
      ],
      [
        g.logs(
          'Leak-hunt reports (top allocation sites)',
          'Log records hardening.leak.report (VictoriaLogs, LogsQL hardening.leak.hunt.trigger:*), newest first: each lists the growing allocation sites of a tracemalloc hunt, biggest first (file:line, bytes and blocks still alive), with tracebacks. The first site is the line to fix. Fields code.file.path / code.line.number name the top site; a hunt run by hunt() inside a request has its trace_id (opens the trace in Jaeger).',
          [g.logsql(s.logs('hardening.leak.hunt.trigger:*'), c.logLimit)],
          w=24,
          h=12
        ),
      ],
    ]),
}
