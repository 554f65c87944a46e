"""otel-hardening's benchmark suite: ``python -m bench [--quick | --full] [--out DIR] [--readme]``.

Sections (``--only`` picks a subset), each in processes of its own:

- ``timing`` (:mod:`bench.overhead`): four client set-ups (:mod:`bench._variants`) side by side,
  interleaved, in sync / 16 threads / async-200 modes against a fast upstream and 16 threads against
  one answering in 10 ms: CPU per request, throughput, p50/p99, wall time, peak RSS, ratios 3/2, 3/4;
- ``instructions``: the same requests counted by callgrind (:mod:`bench._callgrind`);
- ``layer`` and ``profile`` (:mod:`bench._layer`): the hardening layer alone over a canned transport,
  and where a traced request's CPU goes;
- ``faults`` (:mod:`bench.faults`): rejecting while open, attempts per request in an outage;
- ``collector`` (:mod:`bench.collector_outage`): a dead and a killed collector;
- ``resources`` (:mod:`bench.resources_overhead`): background cost at the defaults, hunt slowdown;
- ``scale`` (:mod:`bench.scale`): 5,000 upstreams;
- ``outbox`` (:mod:`bench.outbox`): a deferral, a replay, and what GETs pay for an outbox;
- ``features`` (:mod:`bench.features`): issue 19's slow-request detection and network quality, each off
  and on: the instructions they add per request against the layer's own.

``bench/leak_detection.py`` and ``bench/resources_cost.py`` are standalone scripts behind the
README's resource-tracking section.
"""
