use serde_json::json;

use super::*;

fn claims(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("test claims must be an object"),
    }
}

fn policy(claims: &[&str]) -> Policy {
    Policy {
        username_claims: claims.iter().map(|c| (*c).to_owned()).collect(),
        ..Policy::default()
    }
}

#[test]
fn first_present_string_claim_names_the_user() {
    let p = policy(&["email", "preferred_username", "upn", "sub"]);
    let found = p
        .apply(&claims(
            json!({"sub":"123","upn":"a@corp.example","preferred_username":"alice"}),
        ))
        .unwrap();
    assert_eq!(found.user, "alice");
    assert_eq!(found.claim, "preferred_username");
    assert_eq!(found.backend_user, "alice");

    // null and non-strings are skipped, not fatal.
    let found = p
        .apply(&claims(
            json!({"email":null,"preferred_username":7,"sub":"123"}),
        ))
        .unwrap();
    assert_eq!((found.user.as_str(), found.claim.as_str()), ("123", "sub"));

    assert_eq!(
        p.apply(&claims(json!({"name":"Alice"}))),
        Err(InvalidReason::NoUserClaim {
            claim: "email,preferred_username,upn,sub".to_owned()
        })
    );
}

#[test]
fn user_must_be_usable_in_a_login() {
    let p = policy(&["username"]);
    for bad in ["", "alice\r\nA1 LOGOUT", "a\u{0}b"] {
        assert!(
            matches!(
                p.apply(&claims(json!({"username": bad}))),
                Err(InvalidReason::Malformed { ref claim, .. }) if claim == "username"
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn domain_rules_and_case() {
    let p = Policy {
        username_domain: Some("example.org".to_owned()),
        strip_domains: vec!["corp.example".to_owned()],
        lowercase_username: true,
        ..policy(&["u"])
    };
    let user = |u: &str| p.apply(&claims(json!({ "u": u }))).map(|f| f.user);
    assert_eq!(user("Alice").unwrap(), "alice@example.org");
    assert_eq!(user("alice@Example.ORG").unwrap(), "alice@example.org");
    // A listed domain is stripped (any case), then the default domain appended.
    assert_eq!(user("Alice@CORP.example").unwrap(), "alice@example.org");
    // Other domains are kept: stripping them would map a foreign user onto a local one.
    assert_eq!(
        user("alice@elsewhere.example").unwrap(),
        "alice@elsewhere.example"
    );

    let strip_only = Policy {
        strip_domains: vec!["example.org".to_owned()],
        ..policy(&["u"])
    };
    let found = strip_only
        .apply(&claims(json!({"u":"Bob@example.org"})))
        .unwrap();
    assert_eq!(found.user, "Bob", "no lower-casing unless asked");
}

#[test]
fn client_allow_list_uses_client_id_then_azp() {
    let p = Policy {
        allowed_client_ids: vec!["thunderbird".to_owned(), "webmail".to_owned()],
        ..policy(&["u"])
    };
    let judge = |c: Value| p.apply(&claims(c)).map(|f| f.client_id);
    assert_eq!(
        judge(json!({"u":"a","client_id":"webmail"}))
            .unwrap()
            .as_deref(),
        Some("webmail")
    );
    assert_eq!(
        judge(json!({"u":"a","azp":"thunderbird"}))
            .unwrap()
            .as_deref(),
        Some("thunderbird")
    );
    assert_eq!(
        judge(json!({"u":"a","client_id":"evil","azp":"webmail"})),
        Err(InvalidReason::ClientNotAllowed {
            client_id: "evil".to_owned()
        })
    );
    assert_eq!(
        judge(json!({"u":"a"})),
        Err(InvalidReason::ClientNotAllowed {
            client_id: String::new()
        })
    );
    // Without a list, any client (or none) is fine.
    assert!(policy(&["u"]).apply(&claims(json!({"u":"a"}))).is_ok());
}

#[test]
fn scopes_from_scope_or_scp() {
    let p = Policy {
        required_scopes: vec!["mail".to_owned()],
        ..policy(&["u"])
    };
    for ok in [
        json!({"u":"a","scope":"openid mail"}),
        json!({"u":"a","scp":"mail IMAP.AccessAsUser.All"}),
        json!({"u":"a","scp":["openid","mail"]}),
    ] {
        assert!(p.apply(&claims(ok.clone())).is_ok(), "{ok}");
    }
    assert_eq!(
        p.apply(&claims(json!({"u":"a","scope":"openid mailx"}))),
        Err(InvalidReason::MissingScope {
            scope: "mail".to_owned()
        })
    );
    assert!(matches!(
        p.apply(&claims(json!({"u":"a","scp":[1]}))),
        Err(InvalidReason::Malformed { ref claim, .. }) if claim == "scp"
    ));
}

#[test]
fn protocol_scopes_apply_to_their_protocol_only() {
    let p = Policy {
        protocol_scopes: BTreeMap::from([(ScopeKey::new("smtp"), vec!["mail.send".to_owned()])]),
        ..policy(&["u"])
    };
    let (imap, smtp) = (ScopeKey::new("imap"), ScopeKey::new("smtp"));
    let found = p
        .apply(&claims(json!({"u":"a","scope":"mail.read"})))
        .unwrap();
    assert_eq!(p.check_protocol(&imap, &found.scopes), Ok(()));
    assert_eq!(
        p.check_protocol(&smtp, &found.scopes),
        Err(InvalidReason::MissingScope {
            scope: "mail.send".to_owned()
        })
    );
    assert_eq!(p.check_protocol(&smtp, &["mail.send".to_owned()]), Ok(()));
}

#[test]
fn user_map_changes_the_backend_login_only() {
    let p = Policy {
        user_map: HashMap::from([("alice@example.org".to_owned(), "alice".to_owned())]),
        ..policy(&["email"])
    };
    let found = p
        .apply(&claims(json!({"email":"alice@example.org"})))
        .unwrap();
    assert_eq!(found.user, "alice@example.org");
    assert_eq!(found.backend_user, "alice");
    let other = p
        .apply(&claims(json!({"email":"bob@example.org"})))
        .unwrap();
    assert_eq!(other.backend_user, "bob@example.org");
}

#[test]
fn validate_names_the_key() {
    let key_of = |p: Policy| match p.validate() {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("{other:?}"),
    };
    assert_eq!(key_of(policy(&[])), "username_claim");
    assert_eq!(key_of(policy(&[""])), "username_claim");
    assert_eq!(
        key_of(Policy {
            required_scopes: vec!["ma\"il".to_owned()],
            ..policy(&["u"])
        }),
        "required_scope"
    );
    assert_eq!(
        key_of(Policy {
            protocol_scopes: BTreeMap::from([(ScopeKey::new("smtp"), vec!["ma\\il".to_owned()])]),
            ..policy(&["u"])
        }),
        "protocol_scopes"
    );
    assert_eq!(
        key_of(Policy {
            username_domain: Some("@example.org".to_owned()),
            ..policy(&["u"])
        }),
        "username_domain"
    );
    assert_eq!(
        key_of(Policy {
            strip_domains: vec!["a b".to_owned()],
            ..policy(&["u"])
        }),
        "strip_domains"
    );
    assert_eq!(
        key_of(Policy {
            user_map: HashMap::from([("alice".to_owned(), String::new())]),
            ..policy(&["u"])
        }),
        "user_map"
    );
    assert_eq!(policy(&["u"]).validate(), Ok(()));
}

#[test]
fn every_client_the_token_names_must_be_allowed() {
    let p = Policy {
        allowed_client_ids: vec!["webmail".to_owned()],
        ..policy(&["u"])
    };
    assert_eq!(
        p.apply(&claims(json!({"u":"a","client_id":"webmail","azp":"evil"}))),
        Err(InvalidReason::ClientNotAllowed {
            client_id: "evil".to_owned()
        })
    );
    let found = p
        .apply(&claims(
            json!({"u":"a","client_id":"webmail","azp":"webmail"}),
        ))
        .unwrap();
    assert_eq!(found.client_id.as_deref(), Some("webmail"));
}

#[test]
fn an_unverified_email_names_nobody() {
    let p = policy(&["email", "sub"]);
    for (verified, ok) in [
        (json!(true), true),
        (json!(false), false),
        (json!("true"), false),
        (Value::Null, false),
    ] {
        let result = p.apply(&claims(
            json!({"email":"alice@example.org","email_verified":verified}),
        ));
        assert_eq!(result.is_ok(), ok, "{verified}: {result:?}");
        if !ok {
            assert_eq!(result, Err(InvalidReason::EmailNotVerified));
        }
    }
    // Absent: many access tokens do not carry it.
    assert!(p
        .apply(&claims(json!({"email":"alice@example.org"})))
        .is_ok());
    // Only the email claim is concerned.
    let by_sub = policy(&["sub"]);
    assert!(by_sub
        .apply(&claims(
            json!({"sub":"1","email":"x@y","email_verified":false})
        ))
        .is_ok());
}

#[test]
fn lower_casing_is_ascii_only_and_claimed_users_follow_the_same_rules() {
    let p = Policy {
        lowercase_username: true,
        strip_domains: vec!["example.org".to_owned()],
        ..policy(&["u"])
    };
    // U+212A KELVIN SIGN is not folded onto `k`.
    let found = p.apply(&claims(json!({"u":"\u{212A}im"}))).unwrap();
    assert_eq!(found.user, "\u{212A}im");
    assert_eq!(p.normalise("Alice@Example.org"), "alice");
}

#[test]
fn user_map_keys_must_be_in_normalised_form() {
    let p = Policy {
        lowercase_username: true,
        user_map: HashMap::from([("Alice@Example.org".to_owned(), "alice".to_owned())]),
        ..policy(&["u"])
    };
    assert!(matches!(
        p.validate(),
        Err(ConfigError::Invalid { key: "user_map", ref problem }) if problem.contains("alice@example.org")
    ));
}
