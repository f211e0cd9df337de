"""The client-library suite of issue 4 with the official Python `kubernetes`
client (PyPI), against a minik API server over TLS with the admin client
certificate from a kubeconfig file.

Run by crates/apiserver/tests/python_client.rs, which starts the server on a
temp store and passes the kubeconfig path as argv[1]. Compaction is not an
API call, so the script asks the harness for it: it prints `COMPACT` on a line
of its own and waits for `COMPACTED` on stdin. Every check prints `ok <name>`;
the first failure raises and the script exits non-zero.
"""

import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "default"
LABEL = "suite=python"


def compact():
    print("COMPACT", flush=True)
    line = sys.stdin.readline().strip()
    assert line == "COMPACTED", f"the harness did not compact: {line!r}"


def cm(name, value="1"):
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels={"suite": "python"}),
        data={"v": value},
    )


def rv(obj):
    return int(obj.metadata.resource_version)


def check_watch_from_resource_version(v1):
    a = v1.create_namespaced_config_map(NS, cm("w-a"))
    start = a.metadata.resource_version
    b = v1.create_namespaced_config_map(NS, cm("w-b"))
    a.data = {"v": "2"}
    a2 = v1.replace_namespaced_config_map("w-a", NS, a)
    v1.delete_namespaced_config_map("w-b", NS)
    v1.create_namespaced_secret(NS, client.V1Secret(metadata=client.V1ObjectMeta(name="w-s")))

    seen = []
    live = {}

    def create_live():
        live["obj"] = v1.create_namespaced_config_map(NS, cm("w-live"))

    w = watch.Watch()
    for ev in w.stream(
        v1.list_namespaced_config_map,
        NS,
        label_selector=LABEL,
        resource_version=start,
        allow_watch_bookmarks=False,
        timeout_seconds=20,
    ):
        obj = ev["object"]
        seen.append((ev["type"], obj.metadata.name, obj.metadata.resource_version))
        if len(seen) == 3:
            # the history is replayed: now a live event must follow
            live["thread"] = threading.Thread(target=create_live)
            live["thread"].start()
        if len(seen) == 4:
            w.stop()
    if "thread" in live:
        live["thread"].join()
    assert [(t, n) for t, n, _ in seen] == [
        ("ADDED", "w-b"),
        ("MODIFIED", "w-a"),
        ("DELETED", "w-b"),
        ("ADDED", "w-live"),
    ], seen
    assert seen[0][2] == b.metadata.resource_version, seen
    assert seen[1][2] == a2.metadata.resource_version, seen
    revs = [int(r) for _, _, r in seen]
    assert revs == sorted(revs) and len(set(revs)) == 4, revs
    assert revs[0] > int(start), (revs, start)
    assert seen[3][2] == live["obj"].metadata.resource_version
    print("ok watch_from_resource_version", flush=True)


def check_gone_after_compaction(v1):
    old = v1.create_namespaced_config_map(NS, cm("g-old"))
    v1.create_namespaced_config_map(NS, cm("g-newer"))
    compact()
    w = watch.Watch()
    try:
        for ev in w.stream(
            v1.list_namespaced_config_map,
            NS,
            label_selector=LABEL,
            resource_version=old.metadata.resource_version,
        ):
            raise AssertionError(f"expected 410 Gone, got an event {ev['type']}")
    except ApiException as e:
        assert e.status == 410, e
        assert "Expired" in str(e.reason) and "too old resource version" in str(e.reason), e
    else:
        raise AssertionError("the watch from a compacted resourceVersion ended without 410")
    # the documented recovery: list again and watch from the list's resourceVersion
    fresh = v1.list_namespaced_config_map(NS, label_selector=LABEL)
    assert int(fresh.metadata.resource_version) >= rv(old)
    names = {o.metadata.name for o in fresh.items}
    assert {"g-old", "g-newer"} <= names, names
    print("ok gone_after_compaction", flush=True)


def check_conflict(v1):
    created = v1.create_namespaced_config_map(NS, cm("c-x"))
    stale_rv = created.metadata.resource_version
    created.data = {"v": "2"}
    updated = v1.replace_namespaced_config_map("c-x", NS, created)
    assert rv(updated) > int(stale_rv)
    stale = cm("c-x", "3")
    stale.metadata.resource_version = stale_rv
    try:
        v1.replace_namespaced_config_map("c-x", NS, stale)
    except ApiException as e:
        assert e.status == 409, e
        assert "the object has been modified" in e.body, e.body
    else:
        raise AssertionError("a stale update was accepted")
    now = v1.read_namespaced_config_map("c-x", NS)
    assert now.data == {"v": "2"}, now.data
    assert now.metadata.resource_version == updated.metadata.resource_version
    print("ok conflict", flush=True)


def check_pagination(v1):
    names = [f"p-{i:03d}" for i in range(250)]
    for n in names:
        v1.create_namespaced_config_map(NS, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=n, labels={"page": "yes"}), data={"v": "x"}))
    seen, token, first_token, pages = [], None, None, 0
    while True:
        kw = {"label_selector": "page=yes", "limit": 60}
        if token:
            kw["_continue"] = token
        page = v1.list_namespaced_config_map(NS, **kw)
        pages += 1
        seen += [o.metadata.name for o in page.items]
        token = page.metadata._continue
        first_token = first_token or token
        if not token:
            break
        assert len(page.items) == 60, len(page.items)
        assert pages < 10
    assert pages == 5, pages
    assert seen == names, "pages must be in order, without duplicates or gaps"

    try:
        v1.list_namespaced_config_map(NS, limit=10, _continue="not-a-token")
    except ApiException as e:
        assert e.status == 400 and "continue" in e.body, (e.status, e.body)
    else:
        raise AssertionError("a garbage continue token was accepted")

    v1.create_namespaced_secret(NS, client.V1Secret(metadata=client.V1ObjectMeta(name="p-s")))
    compact()
    try:
        v1.list_namespaced_config_map(NS, label_selector="page=yes", limit=60, _continue=first_token)
    except ApiException as e:
        assert e.status == 410 and "Expired" in e.body, (e.status, e.body)
    else:
        raise AssertionError("a continue token from before compaction was accepted")
    print("ok pagination", flush=True)


def check_bookmarks(v1):
    last = v1.create_namespaced_config_map(NS, cm("b-one"))
    w = watch.Watch()
    events = []
    for ev in w.stream(
        v1.list_namespaced_config_map,
        NS,
        label_selector=LABEL,
        resource_version=last.metadata.resource_version,
        allow_watch_bookmarks=True,
        timeout_seconds=3,
    ):
        events.append(ev)
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, f"no BOOKMARK before the watch timed out: {[e['type'] for e in events]}"
    brv = bookmarks[-1]["raw_object"]["metadata"]["resourceVersion"]
    assert int(brv) >= rv(last), (brv, last.metadata.resource_version)

    events = list(watch.Watch().stream(
        v1.list_namespaced_config_map,
        NS,
        label_selector=LABEL,
        resource_version=last.metadata.resource_version,
        allow_watch_bookmarks=False,
        timeout_seconds=3,
    ))
    assert not [e for e in events if e["type"] == "BOOKMARK"], events
    print("ok bookmarks", flush=True)


def main():
    config.load_kube_config(config_file=sys.argv[1])
    v1 = client.CoreV1Api()
    version = client.VersionApi().get_code()
    assert version.minor == "33", version
    check_watch_from_resource_version(v1)
    check_gone_after_compaction(v1)
    check_conflict(v1)
    check_pagination(v1)
    check_bookmarks(v1)
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
