//! Windows, callers and the counter table through [`FakeHost`]'s strict-CAS shared data.

use super::counter::{Fault, Table, Taken};
use super::*;
use crate::host::fake::FakeHost;
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn limit(requests: u64, window: Window, key: Option<&str>, max_callers: u32) -> RateLimit {
    RateLimit {
        name: "partners".into(),
        requests,
        window,
        key: key.map_or(CallerKey::IssuerSubject, |k| {
            CallerKey::Claim(ClaimPath::parse(k).unwrap())
        }),
        max_callers,
    }
}

fn caller(limit: &RateLimit, sub: &str) -> Caller {
    let claims = json!({"iss": "https://idp", "sub": sub, "client_id": sub});
    Caller::of(limit, claims.as_object().unwrap()).unwrap()
}

/// Takes one request of `who` at `now`.
fn take(host: &mut FakeHost, limit: &RateLimit, who: &Caller, now: u64) -> Taken {
    let table = Table::new(limit, "ns");
    let keys = table.slot_keys(who);
    table.take(host, &keys, who, limit, now)
}

#[test]
fn windows_align_on_utc_and_say_when_they_end() {
    // 2027-01-15T08:00:00Z + 59 min 59 s.
    let now = 1_800_000_000 + 3_599;
    assert_eq!(Window::Day.start(now) % 86_400, 0);
    assert_eq!(Window::Hour.start(now) % 3_600, 0);
    assert_eq!(Window::Minute.reset_after(now), 60 - now % 60);
    assert_eq!(Window::Second.reset_after(now), 1);
    assert_eq!(Window::Day.reset_after(Window::Day.start(now)), 86_400);
    for w in Window::ALL {
        assert_eq!(Window::parse(w.name()), Some(w));
    }
    assert_eq!(Window::parse("week"), None);
}

#[test]
fn callers_come_from_the_verified_claims_and_need_their_key() {
    let by_sub = limit(5, Window::Minute, None, 64);
    let by_client = limit(5, Window::Minute, Some("client_id"), 64);
    let by_tenant = limit(5, Window::Minute, Some("org.tenant"), 64);
    let claims = json!({"iss": "https://idp", "sub": "ada", "client_id": "p-7",
                        "org": {"tenant": 42}, "list": ["a"]});
    let claims = claims.as_object().unwrap();
    let ada = Caller::of(&by_sub, claims).unwrap();
    assert_eq!(&*ada.label, "sub=\"ada\" iss=\"https://idp\"");
    assert_eq!(
        &*Caller::of(&by_client, claims).unwrap().label,
        "client_id=\"p-7\""
    );
    assert_eq!(
        &*Caller::of(&by_tenant, claims).unwrap().label,
        "org.tenant=\"42\""
    );
    // The same value under another key is another caller.
    let other = json!({"iss": "https://idp", "sub": "p-7"});
    assert_ne!(
        Caller::of(&by_sub, other.as_object().unwrap()).unwrap().id,
        Caller::of(&by_client, claims).unwrap().id
    );
    // iss and sub are one pair: ("a", "bc") is not ("ab", "c").
    let a = json!({"iss": "a", "sub": "bc"});
    let b = json!({"iss": "ab", "sub": "c"});
    assert_ne!(
        Caller::of(&by_sub, a.as_object().unwrap()).unwrap().id,
        Caller::of(&by_sub, b.as_object().unwrap()).unwrap().id
    );
    for missing in [
        json!({"iss": "https://idp"}),
        json!({"iss": "https://idp", "sub": ""}),
        json!({"sub": "ada"}),
        json!({"iss": "https://idp", "sub": 7}),
    ] {
        assert_eq!(Caller::of(&by_sub, missing.as_object().unwrap()), None);
    }
    for bad in [
        json!({"client_id": ["a"]}),
        json!({"client_id": {"a": 1}}),
        json!({"client_id": null}),
        json!({}),
    ] {
        assert_eq!(
            Caller::of(&by_client, bad.as_object().unwrap()),
            None,
            "{bad}"
        );
    }
}

#[test]
fn a_caller_gets_exactly_its_budget_then_429_until_the_window_rolls() {
    let mut host = FakeHost::at(NOW);
    let rule = limit(3, Window::Minute, None, 64);
    let ada = caller(&rule, "ada");
    let start = Window::Minute.start(NOW);
    for left in [2, 1, 0] {
        assert_eq!(
            take(&mut host, &rule, &ada, start + 5),
            Taken::Counted { remaining: left }
        );
    }
    for _ in 0..3 {
        assert_eq!(take(&mut host, &rule, &ada, start + 59), Taken::Limited);
    }
    // The next minute starts afresh.
    assert_eq!(
        take(&mut host, &rule, &ada, start + 60),
        Taken::Counted { remaining: 2 }
    );
}

#[test]
fn distinct_callers_are_independent() {
    let mut host = FakeHost::at(NOW);
    let rule = limit(2, Window::Hour, Some("client_id"), 64);
    let (a, b) = (caller(&rule, "a"), caller(&rule, "b"));
    for _ in 0..2 {
        assert!(matches!(
            take(&mut host, &rule, &a, NOW),
            Taken::Counted { .. }
        ));
    }
    assert_eq!(take(&mut host, &rule, &a, NOW), Taken::Limited);
    assert_eq!(
        take(&mut host, &rule, &b, NOW),
        Taken::Counted { remaining: 1 }
    );
}

#[test]
fn slots_are_fixed_width_and_the_table_never_holds_more_than_max_callers() {
    let mut host = FakeHost::at(NOW);
    let rule = limit(1_000, Window::Second, None, 16);
    for round in 0..5 {
        for i in 0..40 {
            let who = caller(&rule, &format!("user-{i}"));
            let _ = take(&mut host, &rule, &who, NOW + round);
        }
    }
    assert!(host.shared.len() <= 16, "{} slots", host.shared.len());
    // Each slot's value is its key's record of a 32-byte payload: one length per key, forever.
    for (key, (value, _)) in &host.shared {
        assert_eq!(value.len(), 4 + 4 + key.len() + 4 + 32, "{key}");
    }
}

#[test]
fn a_full_table_admits_uncounted_and_an_old_window_frees_its_slots() {
    let mut host = FakeHost::at(NOW);
    let rule = limit(10, Window::Minute, None, 2);
    let start = Window::Minute.start(NOW);
    let (a, b, c) = (caller(&rule, "a"), caller(&rule, "b"), caller(&rule, "c"));
    assert!(matches!(
        take(&mut host, &rule, &a, start),
        Taken::Counted { .. }
    ));
    assert!(matches!(
        take(&mut host, &rule, &b, start),
        Taken::Counted { .. }
    ));
    assert_eq!(
        take(&mut host, &rule, &c, start),
        Taken::Unmetered(Fault::TableFull)
    );
    assert_eq!(
        take(&mut host, &rule, &c, start + 60),
        Taken::Counted { remaining: 9 }
    );
}

#[test]
fn a_slot_of_another_key_is_never_overwritten() {
    // The host compares keys by CRC32: a colliding key's value sits in the caller's slot.
    let mut host = FakeHost::at(NOW);
    let rule = limit(10, Window::Minute, None, 2);
    let ada = caller(&rule, "ada");
    let table = Table::new(&rule, "ns");
    let keys = table.slot_keys(&ada);
    let foreign =
        crate::host::shared::encode("ns/other", &[7; 32], crate::host::shared::Width::Exact)
            .unwrap();
    for key in &keys {
        host.shared.insert(key.clone(), (foreign.clone(), 3));
    }
    assert_eq!(
        table.take(&mut host, &keys, &ada, &rule, NOW),
        Taken::Unmetered(Fault::TableFull)
    );
    assert!(host.shared.values().all(|(v, _)| *v == foreign));
}

#[test]
fn a_host_that_refuses_writes_leaves_the_request_unmetered() {
    let mut host = FakeHost::at(NOW);
    host.refuse_shared_writes = true;
    let rule = limit(1, Window::Minute, None, 16);
    let ada = caller(&rule, "ada");
    assert_eq!(
        take(&mut host, &rule, &ada, NOW),
        Taken::Unmetered(Fault::Host)
    );
}

#[test]
fn give_back_returns_one_request_of_this_window() {
    let mut host = FakeHost::at(NOW);
    let rule = limit(2, Window::Minute, None, 16);
    let ada = caller(&rule, "ada");
    let table = Table::new(&rule, "ns");
    let keys = table.slot_keys(&ada);
    assert!(matches!(
        table.take(&mut host, &keys, &ada, &rule, NOW),
        Taken::Counted { .. }
    ));
    assert!(matches!(
        table.take(&mut host, &keys, &ada, &rule, NOW),
        Taken::Counted { remaining: 0 }
    ));
    table.give_back(&mut host, &keys, &ada, &rule, NOW);
    assert_eq!(
        table.take(&mut host, &keys, &ada, &rule, NOW),
        Taken::Counted { remaining: 0 }
    );
}

#[test]
fn equal_limits_share_a_table_and_any_change_starts_another() {
    let base = limit(5, Window::Minute, None, 64);
    assert_eq!(base.table_prefix("ns"), base.clone().table_prefix("ns"));
    let mut renamed = base.clone();
    renamed.name = "other".into();
    let mut more = base.clone();
    more.requests = 6;
    let mut daily = base.clone();
    daily.window = Window::Day;
    let mut by_client = base.clone();
    by_client.key = CallerKey::Claim(ClaimPath::parse("client_id").unwrap());
    for changed in [renamed, more, daily, by_client] {
        assert_ne!(changed.table_prefix("ns"), base.table_prefix("ns"));
    }
    assert_ne!(base.table_prefix("ns"), base.table_prefix("other"));
    assert!(base.table_prefix("ns").starts_with("ns/rl/"));
}

#[test]
fn headers_render_the_ietf_fields() {
    let minute = limit(5, Window::Minute, None, 64);
    let mut day = limit(10_000, Window::Day, None, 64);
    day.name = "partners_day".into();
    assert_eq!(
        headers::policy(&[minute, day]),
        "\"partners\";q=5;w=60, \"partners_day\";q=10000;w=86400"
    );
    let mut state = String::new();
    headers::push_state(&mut state, "partners", 3, 42);
    headers::push_state(&mut state, "partners_day", 9_000, 3_600);
    assert_eq!(
        state,
        "\"partners\";r=3;t=42, \"partners_day\";r=9000;t=3600"
    );
}
