//! Conformance cases: tenants (`docs/adr/0011-tenants.md`). The tenant is an argument of
//! every read, never a condition a query can state, widen or remove.

use super::super::fixtures::in_tenant;
#[allow(unused_imports)]
use super::*;
use clew_proto::Tenant;

async fn find_in(idx: &Arc<dyn TraceIndex>, tenant: &Tenant, q: TraceQuery) -> HashSet<TraceId> {
    idx.find_trace_ids(tenant, &q)
        .await
        .unwrap_or_else(|e| panic!("find_trace_ids({tenant}, {q:?}): {e}"))
        .hits
        .into_iter()
        .map(|h| h.trace_id)
        .collect()
}

/// Three tenants, one of them `default`, sharing a trace id and service names: every
/// search, listing and cursor stays within the caller's tenant, whatever the query holds.
pub async fn tenants_are_isolated(idx: Arc<dyn TraceIndex>) {
    let default = Tenant::default();
    let shop = Tenant::parse("shop").unwrap();
    let bank = Tenant::parse("bank").unwrap();
    let (shared, shop_only, bank_only) = (trace_id(1), trace_id(2), trace_id(3));
    index(&idx, checkout_trace(shared, "d-1", BASE_TIME, false)).await;
    index(
        &idx,
        in_tenant(
            checkout_trace(shared, "s-1", BASE_TIME + MINUTE, true),
            "shop",
        ),
    )
    .await;
    // shop's span carries attributes named like index fields and like the tenant
    let mut tricky = span(
        shop_only,
        span_id(1),
        None,
        "shop-api",
        "Buy",
        BASE_TIME,
        MS,
    );
    tricky
        .attributes
        .push(super::super::fixtures::kv("tenant", "bank"));
    tricky
        .attributes
        .push(super::super::fixtures::kv("_id", "x"));
    index(
        &idx,
        in_tenant(vec![with_key(tricky, "order_id", "s-2")], "shop"),
    )
    .await;
    index(
        &idx,
        in_tenant(
            vec![with_key(
                span(
                    bank_only,
                    span_id(1),
                    None,
                    "bank-api",
                    "Pay",
                    BASE_TIME,
                    MS,
                ),
                "order_id",
                "b-1",
            )],
            "bank",
        ),
    )
    .await;
    idx.refresh().await.unwrap();

    assert_eq!(find_in(&idx, &default, q()).await, set(&[shared]));
    assert_eq!(find_in(&idx, &shop, q()).await, set(&[shared, shop_only]));
    assert_eq!(find_in(&idx, &bank, q()).await, set(&[bank_only]));
    assert_eq!(
        find_in(&idx, &Tenant::parse("nobody").unwrap(), q()).await,
        set(&[])
    );

    // the same trace id and service in two tenants: each finds its own document only
    assert_eq!(find_in(&idx, &shop, key("order_id", "d-1")).await, set(&[]));
    assert_eq!(
        find_in(&idx, &default, key("order_id", "d-1")).await,
        set(&[shared])
    );
    assert_eq!(
        find_in(&idx, &default, key("order_id", "s-1")).await,
        set(&[])
    );
    let errors = TraceQuery {
        errors_only: true,
        ..q()
    };
    assert_eq!(
        find_in(&idx, &default, errors.clone()).await,
        set(&[]),
        "shop's error"
    );
    assert_eq!(find_in(&idx, &shop, errors).await, set(&[shared]));
    assert_eq!(find_in(&idx, &bank, key("order_id", "s-2")).await, set(&[]));

    // whatever the query text says, it stays within the caller's tenant
    let injections = [
        text("tenant:bank OR *"),
        text("*"),
        text("_id:*"),
        text("tenant:bank"),
        key("tenant", "bank"),
        key("order_id", "b-1 OR tenant:bank"),
        TraceQuery {
            attributes: vec![("tenant".into(), "bank".into())],
            ..q()
        },
        TraceQuery {
            attributes: vec![("_id".into(), "x".into())],
            ..q()
        },
        TraceQuery {
            service: Some("*".into()),
            ..q()
        },
        TraceQuery {
            service: Some("bank-api".into()),
            ..q()
        },
    ];
    for inj in injections {
        let found = find_in(&idx, &shop, inj.clone()).await;
        assert!(
            found.is_subset(&set(&[shared, shop_only])),
            "{inj:?} from shop found {found:?}"
        );
        let found = find_in(&idx, &default, inj.clone()).await;
        assert!(
            found.is_subset(&set(&[shared])),
            "{inj:?} from default found {found:?}"
        );
    }
    // an attribute named `tenant` is an attribute, and finds shop's own span
    let attr = TraceQuery {
        attributes: vec![("tenant".into(), "bank".into())],
        ..q()
    };
    assert_eq!(find_in(&idx, &shop, attr.clone()).await, set(&[shop_only]));
    assert_eq!(find_in(&idx, &bank, attr).await, set(&[]));

    // a cursor of one tenant's page pages that tenant's data only, in any tenant's hands
    let first = idx
        .find_trace_ids(&shop, &TraceQuery { limit: 1, ..q() })
        .await
        .unwrap();
    let cursor = first.next_cursor.expect("shop has two traces");
    let rest = |t: Tenant| {
        let idx = idx.clone();
        let cursor = cursor.clone();
        async move {
            let q = TraceQuery {
                cursor: Some(cursor),
                ..q()
            };
            find_in(&idx, &t, q).await
        }
    };
    assert!(rest(shop.clone())
        .await
        .is_subset(&set(&[shared, shop_only])));
    assert!(rest(bank.clone()).await.is_subset(&set(&[bank_only])));

    // listings are per tenant
    assert_eq!(
        idx.services(&default).await.unwrap(),
        ["checkout", "frontend", "payments"]
    );
    assert_eq!(
        idx.services(&shop).await.unwrap(),
        ["checkout", "frontend", "payments", "shop-api"]
    );
    assert_eq!(idx.services(&bank).await.unwrap(), ["bank-api"]);
    assert_eq!(idx.operations(&shop, "shop-api").await.unwrap(), ["Buy"]);
    assert!(idx.operations(&bank, "shop-api").await.unwrap().is_empty());
    assert!(idx
        .operations(&default, "bank-api")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        idx.operations(&bank, "frontend").await.unwrap(),
        Vec::<String>::new()
    );
}

/// Tenants in different retention classes (`conformance::retention_classes`, with which
/// every index is opened): the same trace id of the short, the long and the default
/// tenant indexed on one day; retention at a `now` where only the short class expired
/// leaves the other two searchable, and each tenant still finds only its own, whatever
/// class partition holds it; past the global `retention_days` only the long class stays.
pub async fn retention_classes_drop_apart(idx: Arc<dyn TraceIndex>) {
    use super::super::{LONG_DAYS, LONG_TENANT, SHORT_DAYS, SHORT_TENANT};
    const { assert!(SHORT_DAYS + 1 < RETENTION_DAYS && RETENTION_DAYS + 2 < LONG_DAYS) };
    let short = Tenant::parse(SHORT_TENANT).unwrap();
    let long = Tenant::parse(LONG_TENANT).unwrap();
    let default = Tenant::default();
    let id = trace_id(40);
    let day_d = BASE_TIME - 10 * DAY;
    for (tenant, order) in [(&default, "r-d"), (&short, "r-s"), (&long, "r-l")] {
        index(
            &idx,
            in_tenant(checkout_trace(id, order, day_d, false), tenant.as_str()),
        )
        .await;
    }
    idx.refresh().await.unwrap();
    for (tenant, order) in [(&default, "r-d"), (&short, "r-s"), (&long, "r-l")] {
        assert_eq!(
            find_in(&idx, tenant, key("order_id", order)).await,
            HashSet::from([id]),
            "{tenant} finds its own trace"
        );
        assert_eq!(find_in(&idx, tenant, q()).await, HashSet::from([id]));
    }
    // every class's partition is searched for every tenant, and the tenant clause holds
    assert!(find_in(&idx, &long, key("order_id", "r-s"))
        .await
        .is_empty());
    assert!(find_in(&idx, &short, key("order_id", "r-l"))
        .await
        .is_empty());
    assert!(find_in(&idx, &default, key("order_id", "r-l"))
        .await
        .is_empty());
    assert_eq!(
        idx.services(&long).await.unwrap(),
        idx.services(&short).await.unwrap()
    );

    // now = D + SHORT_DAYS + 2: only the short class expired
    let dropped = idx
        .drop_expired(day_d + u64::from(SHORT_DAYS + 2) * DAY)
        .await
        .unwrap();
    assert!(
        dropped >= 1,
        "the short class's partition of day D is dropped"
    );
    idx.refresh().await.unwrap();
    assert!(
        find_in(&idx, &short, q()).await.is_empty(),
        "short class gone"
    );
    assert!(idx.services(&short).await.unwrap().is_empty());
    assert_eq!(
        find_in(&idx, &long, key("order_id", "r-l")).await,
        HashSet::from([id])
    );
    assert_eq!(
        find_in(&idx, &default, key("order_id", "r-d")).await,
        HashSet::from([id]),
        "the default tenant keeps the global retention_days"
    );

    // now = D + RETENTION_DAYS + 2: the default class expired too, the long one stays
    idx.drop_expired(day_d + u64::from(RETENTION_DAYS + 2) * DAY)
        .await
        .unwrap();
    idx.refresh().await.unwrap();
    assert!(find_in(&idx, &default, key("order_id", "r-d"))
        .await
        .is_empty());
    assert_eq!(
        find_in(&idx, &long, key("order_id", "r-l")).await,
        HashSet::from([id])
    );
    assert!(!idx.services(&long).await.unwrap().is_empty());
}
