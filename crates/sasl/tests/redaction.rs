//! Secrets redact themselves (STYLE.md habit 8): format everything a whole AUTHENTICATE
//! produces and check that neither the token nor any base64 form of it shows up.

use sasl::{
    encode_base64, oauthbearer_client_response, parse_oauthbearer, parse_plain, parse_xoauth2,
    plain_client_response, xoauth2_client_response, ChallengeError, ChallengeStatus, ClientMessage,
    Mechanism, ServerExchange,
};

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLWJvZHk.U0lHTkFUVVJF";
const PASSWORD: &str = "hunter2-correct-horse";

/// Everything that would let someone reconstruct the secret from a log line.
fn forbidden(secret: &str, line: &str) -> Vec<String> {
    vec![
        secret.to_owned(),
        encode_base64(secret.as_bytes()),
        line.to_owned(),
        // bytes printed as a Debug slice of numbers
        format!("{:?}", secret.as_bytes()),
        // the middle of the secret, in case a truncated form were printed
        secret[4..secret.len() - 4].to_owned(),
    ]
}

fn assert_clean(output: &str, forbidden: &[String]) {
    for needle in forbidden {
        assert!(
            !output.contains(needle.as_str()),
            "secret leaked: {needle:?} in {output}"
        );
    }
}

#[test]
fn whole_oauthbearer_exchange_never_shows_the_token() {
    let response = oauthbearer_client_response(
        Some("alice@example.com"),
        TOKEN,
        Some("imap.example.com"),
        Some(993),
    )
    .unwrap();
    let line = encode_base64(&response);
    let forbidden = forbidden(TOKEN, &line);

    let mut log = String::new();
    let mut ex = ServerExchange::new(Mechanism::OAuthBearer);
    log += &format!("{ex:?}\n");
    log += &format!("{:?}\n", ClientMessage::from_line(line.as_bytes()));
    let step = ex.step_line(line.as_bytes());
    log += &format!("{step:?} {ex:?}\n");
    let sasl::ServerStep::Validate(creds) = step else {
        panic!("expected Validate");
    };
    log += &format!("{creds:?} {:#?}\n", creds.clone());
    let challenge = ex
        .refuse(ChallengeError::new(ChallengeStatus::InvalidToken))
        .unwrap();
    log += &format!("{challenge:?} {ex:?}\n");
    // imaplib answers the challenge with the token again
    log += &format!("{:?} {ex:?}\n", ex.step_line(line.as_bytes()));
    log += &format!(
        "{:?}\n",
        ex.refuse(ChallengeError::new(ChallengeStatus::InvalidToken))
    );
    log += &format!("{:?}\n", parse_oauthbearer(&response));

    assert!(log.contains("REDACTED"), "{log}");
    assert!(log.contains("alice@example.com"), "{log}");
    assert_clean(&log, &forbidden);
}

#[test]
fn whole_xoauth2_exchange_never_shows_the_token() {
    let response = xoauth2_client_response("alice@example.com", TOKEN).unwrap();
    let line = encode_base64(&response);
    let forbidden = forbidden(TOKEN, &line);

    let mut log = String::new();
    let mut ex = ServerExchange::new(Mechanism::XOAuth2);
    log += &format!("{:?}\n", ex.step(ClientMessage::Empty));
    log += &format!("{:?}\n", ClientMessage::Response(response.clone()));
    log += &format!("{:?}\n", ex.step(ClientMessage::Response(response.clone())));
    log += &format!("{:?}\n", ex.accept());
    log += &format!("{:?}\n", parse_xoauth2(&response));
    assert_clean(&log, &forbidden);
}

#[test]
fn errors_about_bad_tokens_do_not_carry_them() {
    // a token with a forbidden character (and with a space, and a non-Bearer credential)
    for auth in [
        format!("Bearer {TOKEN}\"x"),
        format!("Bearer {TOKEN} x"),
        format!("Basic {TOKEN}"),
    ] {
        let response = format!("n,,\x01auth={auth}\x01\x01");
        let line = encode_base64(response.as_bytes());
        let forbidden = forbidden(TOKEN, &line);

        let mut log = String::new();
        let mut ex = ServerExchange::new(Mechanism::OAuthBearer);
        let step = ex.step_line(line.as_bytes());
        assert!(matches!(step, sasl::ServerStep::Challenge(_)), "{step:?}");
        log += &format!("{ex:?} {:?}\n", ex.rejection());
        log += &format!("{step:?}\n");
        let err = parse_oauthbearer(response.as_bytes()).unwrap_err();
        log += &format!("{err:?} {err}\n");
        let xo = format!("user=u\x01auth={auth}\x01\x01");
        let err = parse_xoauth2(xo.as_bytes()).unwrap_err();
        log += &format!("{err:?} {err}\n");
        assert_clean(&log, &forbidden);
    }
    // a builder refusing a bad token does not echo it either
    let err = oauthbearer_client_response(None, &format!("{TOKEN} x"), None, None).unwrap_err();
    assert_clean(&format!("{err:?} {err}"), &forbidden(TOKEN, "-"));
}

#[test]
fn plain_password_is_redacted() {
    let response = plain_client_response("alice", "proxymaster", PASSWORD).unwrap();
    let line = encode_base64(&response);
    let creds = parse_plain(&response).unwrap();
    let log = format!("{creds:?} {:?}", ClientMessage::Response(response.clone()));
    assert!(log.contains("proxymaster"));
    assert_clean(&log, &forbidden(PASSWORD, &line));
}
