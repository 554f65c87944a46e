// The one place to tune the otel-hardening mixin: every selector, label, threshold, `for` duration,
// window, SLO target and datasource uid used by the dashboards, alerts and recording rules.
// Override in your own jsonnet:  (import 'mixin.libsonnet') + { _config+:: { sloTarget: 0.999 } }
//
// Time to alert. The critical path is app health gauge -> metric export -> collector's prometheus
// exporter -> scrape -> rule evaluation -> `for` -> Alertmanager group_wait -> receiver. With the
// local stack's settings (OTEL_METRIC_EXPORT_INTERVAL=5000 ms, scrape 5 s, evaluation 5 s) a
// critical fault reaches the receiver in at most ~55 s (5 health + 5 export + 5 scrape + 5 eval
// + 20 `for` + 5 eval alignment + 10 group_wait) and resolves within ~100 s of recovery
// (30 s health recovery hold + 5 + 5 + 5 + 5 + 15 keep_firing_for + 30 group_interval). The SDK's
// default 60 s metric export interval alone adds up to 55 s to both and breaks the 60 s goal.
{
  _config+:: {
    // ---- Selectors and labels ------------------------------------------------------------------
    // App metrics (hardening_*, process_*, cpython_*) reach Prometheus through the collector's
    // prometheus exporter with honor_labels, so `job` is the OTel service.name and `instance` the
    // service.instance.id. Every app-metric alert, recording rule and dashboard query adds this.
    // Empty by default: the metric names are otel-hardening's own, and with honor_labels no scrape
    // label tells its series apart (the former 'job!=""' matched every series). Set it to narrow
    // everything to some services or one environment, e.g. 'job=~"shop|cart"'.
    hardeningSelector: '',
    // The scrape jobs of the collectors' prometheus exporters (app metrics): while one is down,
    // every process looks gone, so the liveness alerts hold back and HardeningTargetDown
    // stage="scrape" names the cause.
    appScrapeSelector: 'job="otel-collector"',
    // The label that names a service (alert label `service`, Alertmanager grouping, the Job variable).
    serviceLabel: 'job',
    // The label that names one process of a service (per-process alerts, the Instance variable).
    instanceLabel: 'instance',
    // Labels naming an upstream on the HTTP metrics (calls, attempts, retries): burn-rate and
    // retry-storm alerts aggregate by these.
    upstreamLabels: ['server_address', 'server_port'],
    // The collector's own metrics (otelcol_*): HardeningTelemetryDropping, telemetry-pipeline dashboard.
    collectorSelector: 'job="otel-collector-self"',
    // Scrape jobs whose `up` must be 1: HardeningTargetDown.
    scrapeTargetSelector: 'job=~"otel-collector|otel-collector-self"',

    // ---- HardeningServiceCritical / HardeningServiceDegraded ----------------------------------
    // The app's own health status (hardening_health_status) already applies hysteresis (worse at
    // once, better after OTEL_PYTHON_HARDENING_HEALTH_RECOVERY_HOLD=30 s), so `for` only has to
    // absorb a single odd scrape (one 5 s scrape is seen by one 5 s evaluation, never two), and
    // keep_firing_for a single odd evaluation. Anything longer is delay on an already debounced
    // signal: the time-to-alert goal (p95 <= 30 s, docs/stack.md#time-to-alert) leaves no room for it.
    criticalFor: '5s',
    criticalKeepFiringFor: '5s',
    degradedFor: '30s',
    degradedKeepFiringFor: '1m',

    // ---- HardeningCircuitOpen -------------------------------------------------------------------
    // A circuit cycles open -> half_open -> open while the upstream stays down: the alert looks at
    // the worst state over this window so the cycle does not resolve and re-fire it.
    circuitOpenWindow: '1m',
    circuitOpenFor: '30s',
    circuitOpenKeepFiringFor: '1m',

    // ---- HardeningRetryStorm ---------------------------------------------------------------------
    // Attempts / logical calls above 1 + the retry budget ratio (OTEL_PYTHON_HARDENING_RETRY_BUDGET_RATIO,
    // default 0.2) means retries add more load than the budget was meant to allow (e.g. the
    // budget's min-per-second floor dominates, or the budget is off). Also the amplification
    // panel's red threshold.
    retryBudgetRatio: 0.2,
    // Below this many logical calls per second per upstream the ratio is noise (1 retried call of 2).
    retryStormMinCallRate: 0.5,
    retryStormWindow: '2m',
    retryStormFor: '1m',

    // ---- HardeningPoolSaturated -------------------------------------------------------------------
    // reason="waiting": calls to an upstream waited for a free connection of a hardened client's pool
    // (hardening_http_client_pool_waiting, read at each metric export) in at least poolWaitingShare
    // of the samples over poolWaitingWindow. A busy pool's queue comes and goes between reads, so
    // "sustained" is a share of the samples: not every one (a single empty read would reset it) and
    // not any one (a burst the pool absorbed within seconds is a blip). `for` asks for it to hold;
    // keep_firing_for rides over a dip in the traffic (at most 1m: see Liveness).
    poolWaitingWindow: '2m',
    poolWaitingShare: 0.5,
    poolWaitingFor: '1m',
    poolWaitingKeepFiringFor: '1m',
    // reason="pool_timeout": any logical call ended in httpx.PoolTimeout (outcome pool_timeout) within
    // the window: it failed without reaching the upstream. Each one is a failed call, so no `for`;
    // the window holds the alert that long after the last one. A pool_timeout series born within
    // the window (a process's first PoolTimeouts create it, which increase() cannot see) counts too.
    poolTimeoutWindow: '5m',
    poolTimeoutFor: '0s',

    // ---- HardeningBypassed -----------------------------------------------------------------------
    // Any increase of hardening_bypassed_total within the window fires it (one bypassed request is
    // news: the service ran without its breakers); a missing hook fires while the process reports.
    bypassWindow: '10m',
    bypassFor: '0s',

    // ---- HardeningMemoryLeakSuspected / HardeningResourceLeakSuspected --------------------------
    // The detector (hardening_resource_leak_suspected) already needs two consecutive verdicts.
    // keep_firing_for also runs after a process dies: at most 1m keeps its alerts within 2 minutes
    // of its end (see Liveness).
    leakFor: '1m',
    leakKeepFiringFor: '1m',

    // ---- HardeningFdExhaustion ---------------------------------------------------------------------
    // Open fds / soft RLIMIT_NOFILE (hardening_process_file_descriptor_usage_ratio); the same
    // thresholds as the health status's fds:utilization component, and the fd panel's thresholds.
    fdWarningRatio: 0.8,
    fdCriticalRatio: 0.95,
    // Warning too when the ratio, extrapolated over fdPredictWindow, reaches 1 within fdPredictHorizon
    // (only once at least fdPredictMinRatio is used, so a fresh process is not judged on its start).
    fdPredictWindow: '30m',
    fdPredictHorizon: '1h',
    fdPredictMinRatio: 0.5,
    fdWarningFor: '2m',
    fdCriticalFor: '20s',

    // ---- HardeningTelemetryDropping --------------------------------------------------------------
    // Share of telemetry a collector exporter failed to send or enqueue, or a receiver refused
    // (memory_limiter), per signal, over telemetryWindow.
    telemetryDropRatio: 0.01,
    telemetryWindow: '5m',
    telemetryFor: '2m',
    // Signals and their otelcol metric suffixes (receiver accepted/refused, exporter sent/failed).
    telemetrySignals: ['spans', 'metric_points', 'log_records'],
    // stage="stalled": an exporter with items queued that sent nothing over telemetryStallWindow.
    // The early signal of a backend that is down: the exporter counts an item as failed only when
    // its retries give up (retry_on_failure, 5 min), so the ratio above comes ~7 min after the fault;
    // this one ~2-3 min. `for` lets a backend restart (tens of seconds) pass without a ticket.
    telemetryStallWindow: '1m',
    telemetryStallFor: '1m',

    // ---- HardeningTargetDown -----------------------------------------------------------------------
    // A scrape target down (stage="scrape"), no app reporting at all ("absent"), a service none of
    // whose processes reports ("service"), one process of a service gone and not replaced
    // ("process").
    targetDownFor: '1m',

    // ---- Liveness (HardeningTargetDown stage="process" / "service"; every per-process alert) -----
    // A process is alive while its livenessMetric series exist: every process with otel-hardening
    // installed exports hardening_health_status, whatever resource tracking is set to. The
    // collector's prometheus exporter serves a dead process's last values until metric_expiration
    // (collector/otelcol-config.yaml) after its last export; then the series end (stale). So
    // appMetricExpiration bounds both how soon a dead process is seen and how late its alerts
    // resolve: with 45 s, a killed process's alerts resolve within 2 minutes and its own
    // "stopped reporting" fires within ~75 s. It must stay above 2x the apps'
    // OTEL_METRIC_EXPORT_INTERVAL (5 s here), or live processes flap. Per-process alerts keep
    // keep_firing_for <= 1m and gate range-vector windows on liveness for the same reason.
    appMetricExpiration: '45s',
    livenessMetric: 'hardening_health_status',
    // stage="process": a process that reported within this window and no longer does, in a service
    // that has not started as many new processes in the window (a deploy or a restart replaces
    // processes, each with a fresh service.instance.id: no alert). Resolves when the process
    // leaves the window, or when a replacement starts.
    processGoneWindow: '10m',
    processGoneFor: '15s',
    // stage="service": how long a service that stopped reporting is remembered (and keeps firing);
    // after that it is forgotten, as decommissioned.
    serviceGoneMemory: '7d',

    // ---- Burn-rate alerts on each upstream's logical-call success (SRE workbook, chapter 5) -----
    // Success = hardening_outcome success | success_after_retry; every other outcome (failure,
    // failure_after_retry, rejected_circuit_open, rejected_retry_budget) spends the error budget.
    sloTarget: 0.99,
    successOutcomes: ['success', 'success_after_retry'],
    // Each pair fires when both windows burn faster than `factor` x the budget rate.
    burnRateAlerts: [
      { severity: 'critical', long: '1h', short: '5m', factor: 14.4, 'for': '2m' },  // 2% of a 30-day budget in 1h: page
      { severity: 'critical', long: '6h', short: '30m', factor: 6, 'for': '15m' },  // 5% in 6h: page
      { severity: 'warning', long: '1d', short: '2h', factor: 3, 'for': '1h' },  // 10% in 1d: ticket
      { severity: 'warning', long: '3d', short: '6h', factor: 1, 'for': '3h' },  // 10% in 3d: ticket
    ],
    // Fewer logical calls than this in the long window: too little traffic to judge (no alert).
    sloMinCalls: 100,
    // Windows from this length on are recorded in their own rule group, evaluated at this slower
    // interval (a 1d/3d rate moves little in a minute; the alerts on them wait 1h/3h anyway).
    sloSlowWindowFrom: '1d',
    sloSlowInterval: '1m',
    // Error budget left over sloBudgetWindow (1 = untouched, 0 = spent, < 0 = overspent), from
    // sloBudgetStep increases recorded every sloBudgetStep (a 30-day rate over raw counters every
    // few seconds would read millions of samples).
    sloBudgetWindow: '30d',
    sloBudgetStep: '5m',
    // HardeningUpstreamSLIAbsent: an upstream's SLI series (the 5m error ratio) existed within
    // sliAbsentWindow and is gone while its service still reports: the burn-rate alerts are blind.
    sliAbsentWindow: '1h',
    sliAbsentFor: '10m',

    // ---- HardeningWatchdog -----------------------------------------------------------------------
    // Always firing: Alertmanager routes it to its own receiver, a dead-man's switch that pages when
    // the notifications STOP (docs/runbooks.md#hardeningwatchdog).
    watchdogSeverity: 'none',

    // ---- Links ---------------------------------------------------------------------------------
    // Alert annotations: dashboard_url = grafanaUrl + /d/<uid>; runbook_url = runbookUrl + #anchor.
    // Set both to where your Grafana and your copy of docs/runbooks.md live.
    grafanaUrl: 'http://127.0.0.1:3000',
    runbookUrl: 'docs/runbooks.md',

    // ---- Dashboards ------------------------------------------------------------------------------
    // Default datasource uids (grafana/provisioning/datasources): each dashboard also has a
    // datasource variable per type, defaulting to these.
    datasources: {
      prometheus: 'prometheus',
      jaeger: 'jaeger',
      victorialogs: 'victorialogs',
      alertmanager: 'alertmanager',
    },
    dashboardUids: {
      health: 'hardening-health',
      http: 'hardening-http',
      resources: 'hardening-resources',
      pipeline: 'hardening-pipeline',
    },
    dashboardTags: ['otel-hardening'],
    dashboardRefresh: '10s',
    dashboardPeriod: 'now-1h',
    // Traces per Jaeger search in the retried / failed-after-retry request tables.
    traceLimit: 20,
    // VictoriaLogs panels: log records per query; the latest-hunt panel shows only the newest few.
    logLimit: 20,
    huntLogLimit: 5,
  },
}
