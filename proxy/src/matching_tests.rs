use super::*;

fn pat(s: &str) -> HostPattern {
    s.parse().unwrap()
}

fn route(owner: &str, hosts: &[&str], prefix: Option<&str>, excluded: &[&str]) -> Route {
    Route {
        owner: Owner::from(owner),
        hosts: hosts.iter().map(|h| pat(h)).collect(),
        path_prefix: prefix.map(str::to_owned),
        excluded_paths: excluded.iter().map(|e| (*e).to_owned()).collect(),
    }
}

fn inject(owner: &str) -> Selection {
    Selection::Inject(Owner::from(owner))
}

#[test]
fn host_patterns_parse() {
    let ok = [
        ("api.openai.com", HostPattern::Exact("api.openai.com".into())),
        ("API.OpenAI.com.", HostPattern::Exact("api.openai.com".into())),
        ("*.googleapis.com", HostPattern::Suffix("googleapis.com".into())),
        ("10.1.2.3", HostPattern::Exact("10.1.2.3".into())),
        ("[::1]", HostPattern::Exact("::1".into())),
        ("localhost", HostPattern::Exact("localhost".into())),
    ];
    for (input, want) in ok {
        assert_eq!(input.parse::<HostPattern>().unwrap(), want, "{input}");
    }
    for bad in [
        "",
        "*",
        "*.",
        "*foo.com",
        "foo.*.com",
        "a..b",
        "*.com",
        "api.x.com:443",
        "https://api.x.com",
        "api.x.com/v1",
        ".x.com",
        "**.x.com",
    ] {
        assert!(bad.parse::<HostPattern>().is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn host_patterns_match_on_label_boundaries() {
    let cases = [
        ("*.example.com", "a.example.com", true),
        ("*.example.com", "a.b.example.com", true),
        ("*.example.com", "example.com", false),
        ("*.example.com", "badexample.com", false),
        ("*.example.com", "example.com.evil.net", false),
        ("*.googleapis.com", "googleapis.evil.com", false),
        ("api.x.com", "api.x.com", true),
        ("api.x.com", "xapi.x.com", false),
        ("api.x.com", "api.x.com.evil", false),
    ];
    for (pattern, host, want) in cases {
        assert_eq!(pat(pattern).matches(host), want, "{pattern} vs {host}");
    }
}

#[test]
fn select_follows_upstream_semantics() {
    let table = RouteTable::new(
        vec![
            route("openai", &["api.openai.com"], None, &["/oauth/token"]),
            route("google", &["*.googleapis.com"], None, &[]),
            route("gmail", &["gmail.googleapis.com"], None, &[]),
            route("v2", &["api.x.com"], Some("/v2"), &[]),
            route("x", &["api.x.com"], None, &[]),
            route("deep", &["api.x.com"], Some("/v2/deep/"), &[]),
            route("loop", &["localhost", "127.0.0.1"], None, &[]),
        ],
        vec![],
    );
    let cases: &[(&str, &str, Selection)] = &[
        ("api.openai.com", "/v1/chat", inject("openai")),
        ("API.OPENAI.COM", "/v1/chat", inject("openai")),
        ("api.openai.com.", "/", inject("openai")),
        ("api.openai.com", "/oauth/token", Selection::None),
        ("api.openai.com", "/oauth/token?grant_type=x", Selection::None),
        ("api.openai.com", "/oauth/token/", Selection::None),
        ("api.openai.com", "/oauth/tokens", inject("openai")),
        ("storage.googleapis.com", "/b", inject("google")),
        // exact beats wildcard at the same prefix length
        ("gmail.googleapis.com", "/x", inject("gmail")),
        ("googleapis.com", "/x", Selection::None),
        // longest prefix first, on segment boundaries
        ("api.x.com", "/v2", inject("v2")),
        ("api.x.com", "/v2/models", inject("v2")),
        ("api.x.com", "/v22", inject("x")),
        ("api.x.com", "/v2/deep", inject("deep")),
        ("api.x.com", "/v2/deeper", inject("v2")),
        ("api.x.com", "/v2/deep/x?q=1", inject("deep")),
        ("api.x.com", "", inject("x")),
        // never loopback
        ("localhost", "/", Selection::None),
        ("127.0.0.1", "/", Selection::None),
        ("unknown.example", "/", Selection::None),
    ];
    for (host, path, want) in cases {
        assert_eq!(&table.select(host, path, None), want, "{host}{path}");
    }
}

#[test]
fn ties_between_owners_inject_nothing_unless_a_placeholder_chooses() {
    let table = RouteTable::new(
        vec![
            route("a", &["shared.example.com"], None, &[]),
            route("b", &["shared.example.com"], None, &[]),
            route("c", &["*.example.com"], None, &[]),
            route("a", &["other.example.com"], None, &[]),
        ],
        vec![],
    );
    let tie = Selection::Ambiguous(vec![Owner::from("a"), Owner::from("b")]);
    assert_eq!(table.select("shared.example.com", "/", None), tie);
    assert_eq!(table.select("shared.example.com", "/", Some(&Owner::from("b"))), inject("b"));
    assert_eq!(table.select("shared.example.com", "/", Some(&Owner::from("a"))), inject("a"));
    // a placeholder of an owner that is not among the tied does not settle anything
    assert_eq!(table.select("shared.example.com", "/", Some(&Owner::from("c"))), tie);
    // the same owner twice is not a tie
    assert_eq!(table.select("other.example.com", "/", None), inject("a"));
}

#[test]
fn owns_host_ignores_paths_and_loopback() {
    let table = RouteTable::new(
        vec![
            route("x", &["api.x.com"], Some("/v2"), &[]),
            route("g", &["*.g.com"], None, &[]),
            route("l", &["localhost"], None, &[]),
        ],
        vec![],
    );
    assert!(table.owns_host("api.x.com"));
    assert!(table.owns_host("API.X.COM"));
    assert!(table.owns_host("a.g.com"));
    assert!(!table.owns_host("g.com"));
    assert!(!table.owns_host("localhost"));
    assert!(table.owner_owns_host(&Owner::from("x"), "api.x.com"));
    assert!(!table.owner_owns_host(&Owner::from("g"), "api.x.com"));
}

#[test]
fn placeholders_are_found_exactly() {
    let table = RouteTable::new(
        vec![],
        vec![
            Placeholder { value: "sk-authsome_AAAA".into(), owner: Owner::from("openai"), connection: "work".into() },
            Placeholder {
                value: "ghp_authsome_BBBB".into(),
                owner: Owner::from("github"),
                connection: "default".into(),
            },
        ],
    );
    assert_eq!(table.placeholder("sk-authsome_AAAA").unwrap().connection, "work");
    assert!(table.placeholder("sk-authsome_AAA").is_none());
    let found: Vec<_> = table.placeholders_in(b"Bearer sk-authsome_AAAA").map(|p| p.owner.0.as_str()).collect();
    assert_eq!(found, ["openai"]);
    assert_eq!(table.placeholders_in(b"Bearer sk-authsome_AAA").count(), 0);
    assert_eq!(table.placeholders_in(b"x").count(), 0);
    assert!(!format!("{:?}", table.placeholder("sk-authsome_AAAA")).contains("AAAA"));
}

#[test]
fn find_is_a_substring_search() {
    assert_eq!(find(b"abcabd", b"abd"), Some(3));
    assert_eq!(find(b"aaab", b"ab"), Some(2));
    assert_eq!(find(b"ab", b"abc"), None);
    assert_eq!(find(b"abc", b""), None);
    assert_eq!(find(b"xyz", b"z"), Some(2));
}

#[test]
fn paths_are_normalised_before_matching() {
    let cases = [
        ("/", "/"),
        ("", "/"),
        ("/api/v1", "/api/v1"),
        ("/api/v1/", "/api/v1/"),
        ("/api/../admin", "/admin"),
        ("/api/./v1", "/api/v1"),
        ("//api//v1", "/api/v1"),
        ("/api%2F..%2Fadmin", "/admin"),
        ("/api%2f..%2fadmin", "/admin"),
        ("/api/%2e%2e/admin", "/admin"),
        ("/api/%2E%2E/admin", "/admin"),
        ("/api;jsessionid=1/../admin", "/admin"),
        ("/api;x/v1", "/api/v1"),
        ("/oauth;x/token", "/oauth/token"),
        ("/../../etc", "/etc"),
        ("/api\\..\\admin", "/admin"),
        ("/api%5C..%5Cadmin", "/admin"),
        ("/%61pi/v1", "/api/v1"),
        ("/api/x%20y", "/api/x%20y"),
        ("/api/x%252F..", "/api/x%252F.."),
        ("/api/v1?x=/../..", "/api/v1"),
    ];
    for (input, want) in cases {
        assert_eq!(normalize_path(input), want, "{input:?}");
    }
}

#[test]
fn a_normalised_path_that_leaves_a_prefix_does_not_match_it() {
    let table = RouteTable::new(vec![route("scoped", &["api.x.com"], Some("/api"), &["/oauth/token"])], vec![]);
    assert_eq!(table.select("api.x.com", "/api/v1", None), inject("scoped"));
    for escaping in ["/api/../admin", "/api%2F..%2Fadmin", "/api/%2e%2e/admin", "/api;x/../admin", "/api\\..\\x"] {
        assert_eq!(table.select("api.x.com", escaping, None), Selection::None, "{escaping}");
    }
    let whole = RouteTable::new(vec![route("o", &["api.x.com"], None, &["/oauth/token"])], vec![]);
    for excluded in ["//oauth/token", "/oauth//token", "/oauth;x/token", "/x/../oauth/token", "/oauth%2Ftoken"] {
        assert_eq!(whole.select("api.x.com", excluded, None), Selection::None, "{excluded}");
    }
}
