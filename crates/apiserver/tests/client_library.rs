//! The client-library suite of issue 4: the kube-rs client (crates.io
//! `kube` + `k8s-openapi`) against the API server served over real TLS on
//! 127.0.0.1, authenticated with the admin client certificate from a
//! kubeconfig file, exactly as a user's program would connect. Checks the
//! API semantics client libraries depend on: watch from a resourceVersion,
//! 410 Gone after compaction (and the `watcher` re-listing), 409 on a stale
//! update, `limit`/`continue` pagination, and watch bookmarks.
//!
//! The test holds a clone of the `minik_store::Store` under the server so it
//! can compact history the way a long-running cluster does.

mod support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::start;
use tokio::time::timeout;

/// How long any single expected event may take.
const STEP: Duration = Duration::from_secs(20);

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"suite": "client"}},
        "data": {"v": value},
    }))
    .unwrap()
}

fn rv_of(o: &ConfigMap) -> i64 {
    o.metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

/// Next watch event, with a deadline.
async fn next_event<S>(s: &mut S) -> WatchEvent<ConfigMap>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    timeout(STEP, s.try_next())
        .await
        .expect("no watch event in time")
        .expect("watch stream failed")
        .expect("watch stream ended early")
}

fn describe(ev: &WatchEvent<ConfigMap>) -> (String, String, String) {
    let (ty, o) = match ev {
        WatchEvent::Added(o) => ("ADDED", o),
        WatchEvent::Modified(o) => ("MODIFIED", o),
        WatchEvent::Deleted(o) => ("DELETED", o),
        other => panic!("expected an object event, got {other:?}"),
    };
    (
        ty.to_string(),
        o.metadata.name.clone().unwrap(),
        o.metadata.resource_version.clone().unwrap(),
    )
}

/// (1) A watch from a resourceVersion replays exactly the later events, in
/// order, then delivers live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_resource_version_replays_later_events_then_goes_live() {
    let c = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    let pp = PostParams::default();
    let a = cms.create(&pp, &cm("a", "1")).await.unwrap();
    let from = a.metadata.resource_version.clone().unwrap();
    let b = cms.create(&pp, &cm("b", "1")).await.unwrap();
    let mut a2 = cms.get("a").await.unwrap();
    a2.data = Some(BTreeMap::from([("v".to_string(), "2".to_string())]));
    let a2 = cms.replace("a", &pp, &a2).await.unwrap();
    cms.delete("b", &DeleteParams::default()).await.unwrap();
    // a write elsewhere must not show up in a ConfigMap watch
    let secrets: Api<Secret> = Api::default_namespaced(c.client.clone());
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    secrets.create(&pp, &s).await.unwrap();

    let mut w = cms
        .watch(&WatchParams::default().labels("suite=client"), &from)
        .await
        .unwrap()
        .boxed();
    let e1 = describe(&next_event(&mut w).await);
    assert_eq!((e1.0.as_str(), e1.1.as_str()), ("ADDED", "b"));
    assert_eq!(e1.2, b.metadata.resource_version.clone().unwrap());
    let e2 = describe(&next_event(&mut w).await);
    assert_eq!((e2.0.as_str(), e2.1.as_str()), ("MODIFIED", "a"));
    assert_eq!(e2.2, a2.metadata.resource_version.clone().unwrap());
    let e3 = describe(&next_event(&mut w).await);
    assert_eq!((e3.0.as_str(), e3.1.as_str()), ("DELETED", "b"));
    let revs: Vec<i64> = [&e1.2, &e2.2, &e3.2]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
    assert!(revs.windows(2).all(|p| p[0] < p[1]), "{revs:?}");
    assert!(revs[0] > from.parse::<i64>().unwrap());

    // nothing else was replayed: the next event is the live one
    let d = cms.create(&pp, &cm("d", "1")).await.unwrap();
    let e4 = describe(&next_event(&mut w).await);
    assert_eq!(
        (e4.0.as_str(), e4.1.as_str(), e4.2.as_str()),
        (
            "ADDED",
            "d",
            d.metadata.resource_version.as_deref().unwrap()
        )
    );
    assert!(rv_of(&d) > revs[2]);
}

/// (2) After compaction past a resourceVersion, a watch from it gets an
/// ERROR event with code 410 (Expired), and the kube-rs `watcher` recovers
/// by re-listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_compacted_resource_version_is_gone_and_watcher_relists() {
    let c = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    let pp = PostParams::default();
    let old = cms.create(&pp, &cm("old", "1")).await.unwrap();
    let old_rv = old.metadata.resource_version.clone().unwrap();
    cms.create(&pp, &cm("newer", "1")).await.unwrap();
    c.store.compact(c.store.revision()).await.unwrap();
    assert!(c.store.compacted_revision() > rv_of(&old));

    let mut w = cms
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match next_event(&mut w).await {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410, "{e:?}");
            assert_eq!(e.reason, "Expired", "{e:?}");
            assert!(e.message.contains("too old resource version"), "{e:?}");
        }
        other => panic!("expected ERROR 410, got {other:?}"),
    }
    // the server ends the stream after the error
    let end = timeout(STEP, w.try_next())
        .await
        .expect("stream not closed");
    assert!(matches!(end, Ok(None)), "{end:?}");

    // the watcher: each watch times out after 1s and resumes from the last
    // resourceVersion it saw; compact history past that while it is quiet.
    let cfg = watcher::Config::default().labels("suite=client").timeout(1);
    let mut events = watcher(cms.clone(), cfg).boxed();
    let mut init_names = Vec::new();
    loop {
        match timeout(STEP, events.next()).await.expect("watcher stalled") {
            Some(Ok(watcher::Event::Init)) => {}
            Some(Ok(watcher::Event::InitApply(o))) => init_names.push(o.metadata.name.unwrap()),
            Some(Ok(watcher::Event::InitDone)) => break,
            other => panic!("unexpected before the first InitDone: {other:?}"),
        }
    }
    init_names.sort();
    assert_eq!(init_names, ["newer", "old"]);
    // an event proves the watcher's watch is open (the watcher starts it after InitDone)
    cms.create(&pp, &cm("live", "1")).await.unwrap();
    match timeout(STEP, events.next()).await.expect("watcher stalled") {
        Some(Ok(watcher::Event::Apply(o))) => assert_eq!(o.metadata.name.as_deref(), Some("live")),
        other => panic!("expected the live object, got {other:?}"),
    }
    // writes outside the watched resource move the revision on...
    let secrets: Api<Secret> = Api::default_namespaced(c.client.clone());
    for i in 0..3 {
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": format!("s{i}")}})).unwrap();
        secrets.create(&pp, &s).await.unwrap();
    }
    // ...and compaction drops the history the watcher would resume from
    c.store.compact(c.store.revision()).await.unwrap();

    let mut saw_gone = false;
    let mut relisted = Vec::new();
    loop {
        match timeout(STEP, events.next()).await.expect("watcher stalled") {
            Some(Err(watcher::Error::WatchError(e))) => {
                assert_eq!(e.code, 410, "{e:?}");
                saw_gone = true;
            }
            Some(Ok(watcher::Event::Init)) => {
                assert!(saw_gone, "re-listed without a 410");
                relisted.clear();
            }
            Some(Ok(watcher::Event::InitApply(o))) => relisted.push(o.metadata.name.unwrap()),
            Some(Ok(watcher::Event::InitDone)) => break,
            other => panic!("unexpected while waiting for the 410: {other:?}"),
        }
    }
    relisted.sort();
    assert_eq!(relisted, ["live", "newer", "old"]);
    // and it is live again afterwards
    cms.create(&pp, &cm("after", "1")).await.unwrap();
    // (a watch that times out and resumes yields nothing; another 410 would fail here)
    match timeout(STEP, events.next()).await.expect("watcher stalled") {
        Some(Ok(watcher::Event::Apply(o))) => {
            assert_eq!(o.metadata.name.as_deref(), Some("after"))
        }
        other => panic!("expected the new object, got {other:?}"),
    }
}

/// (3) An update carrying a stale resourceVersion is refused with 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_with_stale_resource_version_is_conflict() {
    let c = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    let pp = PostParams::default();
    let created = cms.create(&pp, &cm("x", "1")).await.unwrap();
    let mut first = created.clone();
    first.data = Some(BTreeMap::from([("v".to_string(), "2".to_string())]));
    let updated = cms.replace("x", &pp, &first).await.unwrap();
    assert!(rv_of(&updated) > rv_of(&created));

    let mut stale = created.clone();
    stale.data = Some(BTreeMap::from([("v".to_string(), "3".to_string())]));
    match cms.replace("x", &pp, &stale).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409, "{e:?}");
            assert_eq!(e.reason, "Conflict", "{e:?}");
            assert!(e.message.contains("the object has been modified"), "{e:?}");
        }
        other => panic!("expected 409 Conflict, got {other:?}"),
    }
    // the stale write changed nothing
    let now = cms.get("x").await.unwrap();
    assert_eq!(now.data.as_ref().unwrap()["v"], "2");
    assert_eq!(rv_of(&now), rv_of(&updated));
}

/// (4) `limit` + `continue` page through 250 ConfigMaps in name order with
/// no duplicates or gaps, every page but the last full even where the
/// selector filters objects out; a bad token is 400 and an expired one 410.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_with_limit_and_continue() {
    let c = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    let names: Vec<String> = (0..250).map(|i| format!("cm-{i:03}")).collect();
    // interleaved ConfigMaps the selector filters out: pages must still be full
    let others = (0..250).step_by(5).map(|i| format!("cm-{i:03}-other"));
    futures::stream::iter(names.iter().cloned().chain(others))
        .map(|n| {
            let cms = cms.clone();
            async move {
                let mut o = cm(&n, "x");
                if n.ends_with("-other") {
                    o.metadata.labels = Some(BTreeMap::from([("suite".into(), "other".into())]));
                }
                cms.create(&PostParams::default(), &o).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    let mut first_token = None;
    loop {
        let mut lp = ListParams::default().labels("suite=client").limit(60);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 60);
        seen.extend(page.items.iter().map(|o| o.metadata.name.clone().unwrap()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if first_token.is_none() {
            first_token = token.clone();
        }
        match &token {
            Some(_) => assert_eq!(page.items.len(), 60, "a non-final page is full"),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 5, "250 items in pages of 60");
    assert_eq!(
        seen, names,
        "pages must be in order, without duplicates or gaps"
    );

    // a token that is not one of ours
    let bad = ListParams::default()
        .limit(10)
        .continue_token("not-a-token");
    match cms.list(&bad).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 400, "{e:?}");
            assert!(e.message.contains("continue"), "{e:?}");
        }
        Ok(l) => panic!(
            "expected 400 for a garbage continue token, got {} items",
            l.items.len()
        ),
        Err(e) => panic!("expected 400 for a garbage continue token, got {e}"),
    }
    // a token from before a compaction is expired, as in kube (410 Expired)
    let secrets: Api<Secret> = Api::default_namespaced(c.client.clone());
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    c.store.compact(c.store.revision()).await.unwrap();
    let expired = ListParams::default()
        .labels("suite=client")
        .limit(60)
        .continue_token(first_token.as_deref().unwrap());
    match cms.list(&expired).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 410, "{e:?}");
            assert_eq!(e.reason, "Expired", "{e:?}");
        }
        Ok(l) => panic!(
            "expected 410 Expired for a compacted continue token, got a page of {} items",
            l.items.len()
        ),
        Err(e) => panic!("expected 410 Expired for a compacted continue token, got {e}"),
    }
    // a fresh list works again
    let fresh = cms
        .list(&ListParams::default().labels("suite=client").limit(60))
        .await
        .unwrap();
    assert_eq!(fresh.items.len(), 60);
}

/// (5) `allowWatchBookmarks=true` yields BOOKMARK events carrying a
/// resourceVersion: the end-of-initial-events bookmark of a streaming list,
/// and one before a watch's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_carry_a_resource_version() {
    let c = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client.clone());
    let pp = PostParams::default();
    cms.create(&pp, &cm("one", "1")).await.unwrap();
    let two = cms.create(&pp, &cm("two", "1")).await.unwrap();

    // streaming list: ADDED for each object, then a BOOKMARK marking the end
    let mut w = cms
        .watch(
            &WatchParams::streaming_lists()
                .labels("suite=client")
                .timeout(30),
            "0",
        )
        .await
        .unwrap()
        .boxed();
    let mut added = Vec::new();
    let bm = loop {
        match next_event(&mut w).await {
            WatchEvent::Added(o) => added.push(o.metadata.name.unwrap()),
            WatchEvent::Bookmark(b) => break b,
            other => panic!("unexpected {other:?}"),
        }
    };
    added.sort();
    assert_eq!(added, ["one", "two"]);
    assert!(bm.metadata.resource_version.parse::<i64>().unwrap() >= rv_of(&two));
    assert_eq!(
        bm.metadata
            .annotations
            .get("k8s.io/initial-events-end")
            .map(String::as_str),
        Some("true"),
        "the end-of-initial-events bookmark is annotated"
    );
    drop(w);

    // a plain watch with bookmarks allowed and a short timeout: a bookmark
    // with the last resourceVersion arrives before the server ends it
    let from = two.metadata.resource_version.clone().unwrap();
    let mut w = cms
        .watch(&WatchParams::default().timeout(3), &from)
        .await
        .unwrap()
        .boxed();
    let three = cms.create(&pp, &cm("three", "1")).await.unwrap();
    let mut bookmark_rv = None;
    while let Some(ev) = timeout(STEP, w.try_next())
        .await
        .expect("the watch did not end after its timeout")
        .unwrap()
    {
        match ev {
            WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("three")),
            WatchEvent::Bookmark(b) => bookmark_rv = Some(b.metadata.resource_version),
            other => panic!("unexpected {other:?}"),
        }
    }
    let bookmark_rv = bookmark_rv.expect("no BOOKMARK before the watch timed out");
    assert_eq!(bookmark_rv, three.metadata.resource_version.unwrap());

    // without allowWatchBookmarks there are none
    let mut w = cms
        .watch(
            &WatchParams::default().disable_bookmarks().timeout(2),
            &from,
        )
        .await
        .unwrap()
        .boxed();
    while let Some(ev) = timeout(STEP, w.try_next()).await.unwrap().unwrap() {
        assert!(!matches!(ev, WatchEvent::Bookmark(_)), "{ev:?}");
    }
}
