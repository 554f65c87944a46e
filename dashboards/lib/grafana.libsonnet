// Small Grafana dashboard-JSON builders (what the mixin needs of grafonnet, written here).
// Panels are placed by `dashboard()` on a 24-column grid from their `w`/`h`, left to right.
// Each data source type is queried through a variable named after it. Grafana variable names are
// \w+ only, so the VictoriaLogs plugin (type victoriametrics-logs-datasource) gets a short one.
local types = { prometheus: 'prometheus', jaeger: 'jaeger', victorialogs: 'victoriametrics-logs-datasource' };
local dsVariable = {
  [types.prometheus]: 'prometheus_datasource',
  [types.jaeger]: 'jaeger_datasource',
  [types.victorialogs]: 'victorialogs_datasource',
};
local ds(type) = { type: type, uid: '${%s}' % dsVariable[type] };

local thresholds(steps) = {
  mode: 'absolute',
  steps: [{ color: steps[0][1], value: null }] + [{ color: s[1], value: s[0] } for s in steps[1:]],
};

local panel(type, title, description, dsType, targets, unit, w, h) = {
  type: type,
  title: title,
  description: description,
  datasource: ds(dsType),
  targets: [targets[i] { refId: std.char(65 + i), datasource: ds(dsType) } for i in std.range(0, std.length(targets) - 1)],
  fieldConfig: {
    defaults: { unit: unit, color: { mode: 'palette-classic' }, mappings: [] },
    overrides: [],
  },
  options: {},
  w:: w,
  h:: h,
};

{
  ds:: ds,
  types:: types,
  thresholds:: thresholds,

  // ---- Targets ---------------------------------------------------------------------------------
  prom(expr, legend='__auto', instant=false, exemplar=false, format='time_series'):: {
    expr: expr,
    legendFormat: legend,
    range: !instant,
    instant: instant,
    exemplar: exemplar,
    format: format,
    editorMode: 'code',
  },
  // LogsQL through the VictoriaLogs plugin: queryType instant = the newest `limit` records
  // (/select/logsql/query).
  logsql(expr, limit):: { expr: expr, queryType: 'instant', maxLines: limit, editorMode: 'code' },
  // Grafana's Jaeger search (/api/traces): one service, tags in logfmt (exact match, AND).
  jaegerSearch(service, tags, limit):: { queryType: 'search', service: service, tags: tags, limit: limit },

  // ---- Panels ------------------------------------------------------------------------------------
  timeseries(title, description, targets, unit, w=12, h=8, steps=[[null, 'green']], stack=false, min=null, max=null, overrides=[])::
    panel('timeseries', title, description, 'prometheus', targets, unit, w, h) {
      fieldConfig+: {
        defaults+: {
          thresholds: thresholds(steps),
          [if min != null then 'min']: min,
          [if max != null then 'max']: max,
          custom: {
            drawStyle: 'line',
            lineWidth: 1,
            fillOpacity: if stack then 30 else 10,
            showPoints: 'never',
            spanNulls: false,
            stacking: { mode: if stack then 'normal' else 'none', group: 'A' },
            thresholdsStyle: { mode: if std.length(steps) > 1 then 'line+area' else 'off' },
          },
        },
        overrides: overrides,
      },
      options: {
        legend: { displayMode: 'table', placement: 'bottom', calcs: ['lastNotNull', 'max'], showLegend: true },
        tooltip: { mode: 'multi', sort: 'desc' },
      },
    },

  // A big single value, coloured by thresholds (steps) or by value mappings (mappings).
  stat(title, description, targets, unit, w=6, h=6, steps=[[null, 'green']], mappings=[], colorMode='background')::
    panel('stat', title, description, 'prometheus', targets, unit, w, h) {
      fieldConfig+: { defaults+: { thresholds: thresholds(steps), mappings: mappings, color: { mode: 'thresholds' } } },
      options: {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        colorMode: colorMode,
        graphMode: 'none',
        justifyMode: 'center',
        textMode: 'auto',
        orientation: 'auto',
      },
    },

  // One row per series, coloured spans per value (value mappings give text and colour).
  stateTimeline(title, description, targets, unit, mappings, w=24, h=6)::
    panel('state-timeline', title, description, 'prometheus', targets, unit, w, h) {
      fieldConfig+: {
        defaults+: {
          mappings: mappings,
          color: { mode: 'thresholds' },
          thresholds: thresholds([[null, 'green']]),
          custom: { lineWidth: 0, fillOpacity: 80 },
        },
      },
      options: { mergeValues: true, showValue: 'auto', alignValue: 'left', rowHeight: 0.9, legend: { showLegend: true, displayMode: 'list', placement: 'bottom' } },
    },

  table(title, description, targets, unit, dsType='prometheus', w=12, h=8, transformations=[], overrides=[])::
    panel('table', title, description, dsType, targets, unit, w, h) {
      fieldConfig+: { defaults+: { custom: { align: 'auto', cellOptions: { type: 'auto' }, inspect: false } }, overrides: overrides },
      options: { showHeader: true, cellHeight: 'sm', footer: { show: false, reducer: ['sum'], fields: [] } },
      transformations: transformations,
    },

  logs(title, description, targets, w=24, h=10)::
    panel('logs', title, description, types.victorialogs, targets, 'none', w, h) {
      options: {
        showTime: true,
        showLabels: false,
        showCommonLabels: false,
        wrapLogMessage: true,
        prettifyLogMessage: false,
        enableLogDetails: true,
        dedupStrategy: 'none',
        sortOrder: 'Descending',
      },
    },

  // Value mappings: [[value, text, colour], ...] for exact values.
  valueMappings(entries):: [{
    type: 'value',
    options: { [std.toString(e[0])]: { text: e[1], color: e[2], index: i } for i in std.range(0, std.length(entries) - 1) for e in [entries[i]] },
  }],

  // Overrides that give one field (by name) a unit, or links.
  fieldOverride(name, properties):: { matcher: { id: 'byName', options: name }, properties: properties },
  // Overrides for every series of one query (by its refId: A, B, ...).
  refOverride(refId, properties):: { matcher: { id: 'byFrameRefID', options: refId }, properties: properties },
  // A fixed colour for every series whose name matches the regex.
  colorOverride(regex, color):: {
    matcher: { id: 'byRegexp', options: regex },
    properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: color } }],
  },

  // ---- Variables ---------------------------------------------------------------------------------
  datasourceVariable(type, label, default):: {
    type: 'datasource',
    name: dsVariable[type],
    label: label,
    query: type,
    current: { selected: false, text: default, value: default },
    hide: 0,
    refresh: 1,
    regex: '',
    options: [],
    includeAll: false,
    multi: false,
    skipUrlSync: false,
  },

  // A multi-select Prometheus label variable with All = '.+' (the lint's template-job-rule convention).
  labelVariable(name, label, description, metricSelector, labelName):: {
    type: 'query',
    name: name,
    label: label,
    description: description,
    datasource: ds('prometheus'),
    query: 'label_values(%s, %s)' % [metricSelector, labelName],
    definition: 'label_values(%s, %s)' % [metricSelector, labelName],
    current: { selected: true, text: ['All'], value: ['$__all'] },
    multi: true,
    includeAll: true,
    allValue: '.+',
    refresh: 2,
    sort: 1,
    hide: 0,
    regex: '',
    options: [],
    skipUrlSync: false,
  },

  // A single-select label variable (no All): the first value by default, as Grafana picks it. regex
  // (a /.../ JavaScript regex) keeps its first capture group of each value.
  singleLabelVariable(name, label, description, metricSelector, labelName, regex=''):: self.labelVariable(name, label, description, metricSelector, labelName) {
    current: {},
    multi: false,
    includeAll: false,
    allValue:: null,  // hidden: no All option
    regex: regex,
  },

  // ---- Dashboard ---------------------------------------------------------------------------------
  // rows: [[panel, ...], ...]; each inner list is laid out left to right and wraps at 24 columns.
  dashboard(uid, title, description, tags, variables, rows, refresh, from):: {
    local placed = std.foldl(
      function(acc, p) (
        local x = if acc.x + p.w > 24 then 0 else acc.x;
        local y = if acc.x + p.w > 24 then acc.y + acc.rowH else acc.y;
        local rowH = if acc.x + p.w > 24 then p.h else std.max(acc.rowH, p.h);
        {
          x: x + p.w,
          y: y,
          rowH: rowH,
          panels: acc.panels + [p { gridPos: { x: x, y: y, w: p.w, h: p.h } }],
        }
      ),
      std.flattenArrays([r + [{ newRow:: true, w: 24, h: 0 }] for r in rows]),
      { x: 0, y: 0, rowH: 0, panels: [] }
    ),
    uid: uid,
    title: title,
    description: description,
    tags: tags,
    editable: false,
    graphTooltip: 1,
    timezone: 'browser',
    schemaVersion: 38,
    version: 1,
    refresh: refresh,
    time: { from: from, to: 'now' },
    timepicker: {},
    annotations: { list: [] },
    links: [{
      type: 'dashboards',
      title: 'otel-hardening',
      tags: tags,
      asDropdown: true,
      includeVars: true,
      keepTime: true,
      targetBlank: false,
      icon: 'external link',
    }],
    local real = [p for p in placed.panels if !std.objectHasAll(p, 'newRow')],
    local used = std.set([p.datasource.type for p in real]),
    // A data source variable only for the types the panels query.
    templating: { list: [v for v in variables if v.type != 'datasource' || std.member(used, v.query)] },
    panels: [real[i] { id: i + 1 } for i in std.range(0, std.length(real) - 1)],
  },
}
