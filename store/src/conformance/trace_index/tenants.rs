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
