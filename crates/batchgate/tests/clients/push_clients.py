#!/usr/bin/env python3
"""Drives a Pushgateway-compatible server with the official Python client (prometheus_client).

Usage: push_clients.py GATEWAY_URL

Uses push_to_gateway (PUT), pushadd_to_gateway (POST, also gzip-compressed) and delete_from_gateway
(DELETE) with grouping keys that exercise every escaping rule of the client: a value with `/`
(urlsafe, padded base64), an empty value (`@base64/=`), spaces, `+`, reserved URL characters and
non-ASCII text; plus one push through the URL an older client (< 0.22, `quote_plus`) built, where a
space becomes `+`.

While pushing it simulates the Pushgateway's storage rules (PUT replaces the group, POST replaces
the pushed families, DELETE removes the exact group; grouping labels overwrite body labels; a
missing `instance` becomes `instance=""`) and prints, as JSON on stdout, the groups that must be
stored afterwards with every sample in them. Any HTTP error from the server makes the client raise,
which makes this script exit non-zero with the traceback on stderr.
"""

import json
import sys

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    delete_from_gateway,
    generate_latest,
    push_to_gateway,
    pushadd_to_gateway,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, default_handler
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString
from urllib.parse import quote_plus

GW = sys.argv[1].rstrip("/")

# The simulated store: frozenset(grouping labels incl. job) -> {family name -> family}.
STORE = {}
JOBS = set()
SAMPLE_NAMES = set()
FAMILY_NAMES = set()
DELETED = []
LOG = []


def group_id(job, grouping_key):
    labels = dict(grouping_key or {})
    labels["job"] = job
    return frozenset(labels.items())


def families_of(registry, job, grouping_key):
    """The families of a push as the Pushgateway stores them (TYPE-line names, sanitised labels)."""
    text = generate_latest(registry).decode("utf-8")
    grouping = dict(grouping_key or {})
    grouping["job"] = job
    out = {}
    for fam in text_string_to_metric_families(text):
        # The parser strips `_total` from counter family names; the Pushgateway keeps the
        # name of the TYPE line.
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        samples = []
        for s in fam.samples:
            labels = dict(s.labels)
            labels.update(grouping)
            labels.setdefault("instance", "")
            samples.append(
                {"name": s.name, "labels": labels, "value": floatToGoString(s.value)}
            )
            SAMPLE_NAMES.add(s.name)
        FAMILY_NAMES.add(name)
        out[name] = {"type": fam.type, "help": fam.documentation, "samples": samples}
    return out


def do_put(job, registry, grouping_key=None, **kw):
    push_to_gateway(GW, job=job, registry=registry, grouping_key=grouping_key, timeout=10, **kw)
    JOBS.add(job)
    STORE[group_id(job, grouping_key)] = families_of(registry, job, grouping_key)
    LOG.append(["PUT", job, grouping_key])


def do_post(job, registry, grouping_key=None, **kw):
    pushadd_to_gateway(GW, job=job, registry=registry, grouping_key=grouping_key, timeout=10, **kw)
    JOBS.add(job)
    STORE.setdefault(group_id(job, grouping_key), {}).update(
        families_of(registry, job, grouping_key)
    )
    LOG.append(["POST", job, grouping_key])


def do_delete(job, grouping_key=None):
    delete_from_gateway(GW, job=job, grouping_key=grouping_key, timeout=10)
    JOBS.add(job)
    gid = group_id(job, grouping_key)
    if gid in STORE:
        del STORE[gid]
    labels = dict(grouping_key or {})
    labels["job"] = job
    DELETED.append(labels)
    LOG.append(["DELETE", job, grouping_key])


def do_put_legacy_quote_plus(job, registry, grouping_key):
    """The URL prometheus_client < 0.22 built: quote_plus for every value (a space becomes `+`,
    client_python#1064), sent with the client's own HTTP handler."""
    url = GW + "/metrics/job/" + quote_plus(job)
    for k, v in sorted(grouping_key.items()):
        url += "/" + k + "/" + quote_plus(v)
    default_handler(
        url=url,
        method="PUT",
        timeout=10,
        headers=[("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)],
        data=generate_latest(registry),
    )()
    # The gateway does not decode `+`: the stored value keeps it.
    stored = {k: v.replace(" ", "+") for k, v in grouping_key.items()}
    JOBS.add(job)
    STORE[group_id(job, stored)] = families_of(registry, job, stored)
    LOG.append(["PUT(legacy quote_plus)", job, stored])


# Help strings are the same in every registry: the Pushgateway picks the help of a random group
# when two groups disagree, which would make the exposition non-deterministic.
def batch_registry(success_ts, errors, durations, status, records):
    r = CollectorRegistry()
    Gauge(
        "py_last_success_timestamp_seconds", "Last time the batch job succeeded.", registry=r
    ).set(success_ts)
    c = Counter("py_errors", "Errors seen by the batch job.", registry=r)
    if errors:
        c.inc(errors)
    h = Histogram(
        "py_duration_seconds",
        "Duration of the batch job.",
        buckets=(0.5, 1, 5, 30),
        registry=r,
    )
    for d in durations:
        h.observe(d)
    st = Gauge("py_status", "Status of the last run.", ["status"], registry=r)
    for s in ("running", "completed", "failed"):
        st.labels(s).set(1 if s == status else 0)
    sm = Summary("py_records", "Records processed per chunk.", registry=r)
    for x in records:
        sm.observe(x)
    return r


def rows_registry(rows):
    r = CollectorRegistry()
    Gauge("py_rows_processed", "Rows processed.", registry=r).set(rows)
    return r


def success_registry(ts):
    r = CollectorRegistry()
    Gauge(
        "py_last_success_timestamp_seconds", "Last time the batch job succeeded.", registry=r
    ).set(ts)
    return r


def odd_values_registry():
    r = CollectorRegistry()
    g = Gauge(
        "py_odd_values",
        'Values the exposition must format exactly: \\ backslash, "quote", newline\nend.',
        ["kind", "city_name"],
        registry=r,
    )
    g.labels("inf", "São Paulo").set(float("inf"))
    g.labels("neg_inf", "Zürich").set(float("-inf"))
    g.labels("tiny", 'quote " and \\ backslash').set(1.5e-7)
    g.labels("big", "line\nbreak").set(123456789012.0)
    g.labels("negative", "").set(-0.25)
    Info("py_build", "Build of the job.", registry=r).info({"version": "1.2.3", "rev": "abc"})
    Enum("py_phase", "Phase of the job.", states=["extract", "load"], registry=r).state("load")
    return r


def body_labels_registry():
    r = CollectorRegistry()
    g = Gauge("py_body_labels", "Labels set in the body.", ["instance", "job", "zone"], registry=r)
    # `instance` from the body survives when it is not in the grouping key; `job` is overwritten.
    g.labels("from-body", "from-body-job", "z1").set(7)
    return r


# 1. The runbook's batch-job metrics, replaced with PUT, then partly updated with POST.
do_put(
    "py_nightly",
    batch_registry(1700000000, 3, [0.2, 0.7, 4.0, 12.0], "completed", [10, 20]),
    {"instance": "worker-1"},
)
do_post("py_nightly", rows_registry(1234), {"instance": "worker-1"})  # adds a family
do_post("py_nightly", success_registry(1700000100), {"instance": "worker-1"})  # replaces one

# 2. PUT replaces the whole group: only the last push's families survive.
do_put(
    "py_nightly",
    batch_registry(1700000200, 0, [40.0], "failed", []),
    {"instance": "worker-2"},
)
do_put("py_nightly", rows_registry(99), {"instance": "worker-2"})

# 3. A value with `/` (urlsafe base64 with padding: L3Zhci90bXA=), two grouping labels.
do_put(
    "py_dir_cleaner",
    batch_registry(1700000300, 1, [0.1], "completed", [1]),
    {"path": "/var/tmp", "instance": "cleaner-1"},
)
# A slash and `+`/`/` characters that differ between the base64 alphabets (`?>` -> `Pz4=`).
do_put("py_dir_cleaner", rows_registry(5), {"path": "/srv/data?>/x", "instance": "cleaner-1"})

# 4. An empty value (`shard@base64/=`).
do_put("py_empty_value", rows_registry(1), {"shard": ""})
do_post("py_empty_value", success_registry(1700000400), {"shard": ""})

# 5. Spaces: the current client sends base64, an older one `+`.
do_put("py spaced job", rows_registry(2), {"env": "staging eu west"})
do_put_legacy_quote_plus("py_legacy", rows_registry(3), {"env": "value with spaces"})

# 6. Non-ASCII job and values, and characters quote_plus percent-encodes.
do_put(
    "Björn_export",
    odd_values_registry(),
    {"city": "Zürich", "note": "a+b&c?d#e%f=g;h,i:j@k~l"},
)

# 7. Labels in the body: instance survives, job is overwritten by the grouping key.
do_put("py_body_labels", body_labels_registry())

# 8. A gzip-compressed POST.
do_post(
    "py_gzip",
    batch_registry(1700000500, 2, [2.5], "completed", [3, 4, 5]),
    {"instance": "gz"},
    compression="gzip",
)

# 8b. A job name with `/` (job@base64) and a gzip-compressed PUT.
do_put("py/slashed job", rows_registry(4), {"instance": "s/1"})
do_put("py_gzip", rows_registry(6), {"instance": "gz-put"}, compression="gzip")

# 9. DELETE: plain key, base64 key, a key that never existed (no-op, 202), and a partial key that
#    must not touch the longer key.
do_put("py_doomed", rows_registry(1), {"instance": "x"})
do_delete("py_doomed", {"instance": "x"})
do_put("py_doomed_b64", rows_registry(1), {"path": "/tmp/gone dir", "instance": ""})
do_delete("py_doomed_b64", {"path": "/tmp/gone dir", "instance": ""})
do_delete("py_never_pushed", {"instance": "nothing"})
do_put("py/doomed/job", rows_registry(1))
do_delete("py/doomed/job")
do_put("py_partial", rows_registry(8), {"instance": "i1"})
do_delete("py_partial")  # {job=py_partial} is not {job=py_partial,instance=i1}
# Delete then push again: the group is back with only the new push.
do_put("py_reborn", batch_registry(1, 1, [1], "completed", [1]), {"instance": "r"})
do_delete("py_reborn", {"instance": "r"})
do_post("py_reborn", rows_registry(42), {"instance": "r"})

groups = []
for gid, fams in sorted(STORE.items(), key=lambda kv: sorted(kv[0])):
    groups.append({"labels": dict(gid), "families": fams})

json.dump(
    {
        "groups": groups,
        "deleted": DELETED,
        "jobs": sorted(JOBS),
        "sample_names": sorted(SAMPLE_NAMES),
        "family_names": sorted(FAMILY_NAMES),
        "log": LOG,
    },
    sys.stdout,
    ensure_ascii=False,
    indent=1,
)
print()
