//! Refresh token rotation and reuse detection.

use crate::model::{TokenRejection, TokenRequest};
use crate::scope::MAIL;
use crate::store::Store;
use crate::testing::{code_of, public, refresh, Harness, LOOPBACK};
use crate::tokens;

#[test]
fn refresh_rotates_the_token() {
    let h = Harness::new("");
    let first = h.tokens_for("alice", "mail-app", LOOPBACK);
    h.advance(10);
    let second = h
        .server
        .token(&refresh(&first.refresh_token), &public("mail-app"))
        .unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.scope, first.scope);
    // With openid, refreshing gives a new ID token too.
    assert!(second.id_token.is_some());
    let old = h
        .store
        .refresh(&tokens::hash(&first.refresh_token))
        .unwrap()
        .unwrap();
    assert_eq!(old.spent_at, Some(h.now()));
    let new = h
        .store
        .refresh(&tokens::hash(&second.refresh_token))
        .unwrap()
        .unwrap();
    assert_eq!(new.expires_at, h.now() + 30 * 86_400);
    let third = h
        .server
        .token(&refresh(&second.refresh_token), &public("mail-app"));
    assert!(third.is_ok());
    // The old access token stays valid until it expires: the grant lives on.
    assert!(h.server.check_access_token(&first.access_token).is_ok());
}

#[test]
fn concurrent_refreshes_rotate_once_and_end_the_family() {
    let h = Harness::new("");
    let first = h.tokens_for("bob", "mail-app", LOOPBACK);
    let request = refresh(&first.refresh_token);
    let barrier = std::sync::Barrier::new(8);
    let results: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    h.server.token(&request, &public("mail-app"))
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(winners.len() <= 1, "{results:?}");
    // Every other use was a reuse of a spent token: the whole family is gone, the
    // winner's new tokens included.
    for winner in winners {
        assert_eq!(
            code_of(
                h.server
                    .token(&refresh(&winner.refresh_token), &public("mail-app"))
            ),
            "invalid_grant"
        );
        assert_eq!(
            h.server.check_access_token(&winner.access_token),
            Err(TokenRejection::Revoked)
        );
    }
    assert_eq!(
        h.server.check_access_token(&first.access_token),
        Err(TokenRejection::Revoked)
    );
}

#[test]
fn reusing_a_spent_token_revokes_the_family() {
    let h = Harness::new("");
    let first = h.tokens_for("bob", "mail-app", LOOPBACK);
    let second = h
        .server
        .token(&refresh(&first.refresh_token), &public("mail-app"))
        .unwrap();
    let reuse = h
        .server
        .token(&refresh(&first.refresh_token), &public("mail-app"));
    assert_eq!(code_of(reuse), "invalid_grant");
    // The newest member of the family is dead too, and so are its access tokens.
    let newest = h
        .server
        .token(&refresh(&second.refresh_token), &public("mail-app"));
    assert_eq!(code_of(newest), "invalid_grant");
    assert_eq!(
        h.server.check_access_token(&second.access_token),
        Err(TokenRejection::Revoked)
    );
}

#[test]
fn scope_may_narrow_but_not_widen() {
    let h = Harness::new("");
    let first = h.tokens_for("carol", "mail-app", LOOPBACK);
    assert_eq!(first.scope, format!("openid {MAIL}"));
    let narrow = TokenRequest {
        scope: Some(MAIL.to_owned()),
        ..refresh(&first.refresh_token)
    };
    let narrowed = h.server.token(&narrow, &public("mail-app")).unwrap();
    assert_eq!(narrowed.scope, MAIL);
    assert!(narrowed.id_token.is_none());
    let claims = h.server.check_access_token(&narrowed.access_token).unwrap();
    assert_eq!(claims.scopes, [MAIL]);
    // The grant keeps its scopes: the next refresh may ask for all of them again.
    let wide = h
        .server
        .token(&refresh(&narrowed.refresh_token), &public("mail-app"))
        .unwrap();
    assert_eq!(wide.scope, format!("openid {MAIL}"));

    let wider = TokenRequest {
        scope: Some("openid email".to_owned()),
        ..refresh(&wide.refresh_token)
    };
    assert_eq!(
        code_of(h.server.token(&wider, &public("mail-app"))),
        "invalid_scope"
    );
}

#[test]
fn another_client_cannot_use_or_burn_the_token() {
    let h = Harness::new("");
    let first = h.tokens_for("dave", "mail-app", LOOPBACK);
    let stolen = h
        .server
        .token(&refresh(&first.refresh_token), &public("other-app"));
    assert_eq!(code_of(stolen), "invalid_grant");
    assert!(h
        .server
        .token(&refresh(&first.refresh_token), &public("mail-app"))
        .is_ok());
}

#[test]
fn expired_or_unknown_refresh_tokens_are_refused() {
    let h = Harness::new("");
    let first = h.tokens_for("erin", "mail-app", LOOPBACK);
    assert_eq!(
        code_of(
            h.server
                .token(&refresh("bgr_nonsense"), &public("mail-app"))
        ),
        "invalid_grant"
    );
    h.advance(30 * 86_400);
    assert_eq!(
        code_of(
            h.server
                .token(&refresh(&first.refresh_token), &public("mail-app"))
        ),
        "invalid_grant"
    );
    let missing = TokenRequest {
        refresh_token: None,
        ..refresh("")
    };
    assert_eq!(
        code_of(h.server.token(&missing, &public("mail-app"))),
        "invalid_request"
    );
}
