//! Build → encode → decode → parse round trips, and "never panics" checks on arbitrary
//! input for the parsers and the exchange.

use proptest::prelude::*;
use sasl::{
    decode_base64, encode_base64, is_b64token, oauthbearer_client_response, parse_oauthbearer,
    parse_plain, parse_xoauth2, plain_client_response, xoauth2_client_response, ClientMessage,
    ExposeSecret, Mechanism, ServerExchange, ServerStep,
};

/// RFC 6750 b64token.
const B64TOKEN: &str = "[A-Za-z0-9._~+/-]{1,200}={0,3}";
/// OAUTHBEARER `value` characters minus `^A`-free concerns (value excludes ^A anyway).
const HOST: &str = "[\\x21-\\x7e \\t]{1,60}";

proptest! {
    #[test]
    fn oauthbearer_round_trip(
        authzid in proptest::option::of("[^\\x00]{1,40}"),
        token in B64TOKEN,
        host in proptest::option::of(HOST),
        port in proptest::option::of(1u16..),
    ) {
        let built = oauthbearer_client_response(authzid.as_deref(), &token, host.as_deref(), port)
            .unwrap();
        let line = encode_base64(&built);
        let creds = parse_oauthbearer(&decode_base64(line.as_bytes()).unwrap()).unwrap();
        prop_assert_eq!(creds.mechanism, Mechanism::OAuthBearer);
        prop_assert_eq!(creds.authzid, authzid);
        prop_assert_eq!(creds.token.expose_secret(), token.as_str());
        prop_assert_eq!(creds.host, host);
        prop_assert_eq!(creds.port, port);
    }

    #[test]
    fn xoauth2_round_trip(user in "[^\\p{Cc}]{1,40}", token in B64TOKEN) {
        let built = xoauth2_client_response(&user, &token).unwrap();
        let creds = parse_xoauth2(&built).unwrap();
        prop_assert_eq!(creds.authzid.as_deref(), Some(user.as_str()));
        prop_assert_eq!(creds.token.expose_secret(), token.as_str());
    }

    #[test]
    fn plain_round_trip(
        authzid in "[^\\x00]{0,40}",
        authcid in "[^\\x00]{1,40}",
        password in "[^\\x00]{1,40}",
    ) {
        let built = plain_client_response(&authzid, &authcid, &password).unwrap();
        let creds = parse_plain(&built).unwrap();
        prop_assert_eq!(creds.authzid, Some(authzid).filter(|a| !a.is_empty()));
        prop_assert_eq!(creds.authcid, authcid);
        prop_assert_eq!(creds.password.expose_secret(), password.as_str());
    }

    #[test]
    fn exchange_round_trip(mechanism in prop_oneof![Just(Mechanism::OAuthBearer), Just(Mechanism::XOAuth2)],
                           user in "[a-z0-9@.]{1,20}", token in B64TOKEN) {
        let built = match mechanism {
            Mechanism::OAuthBearer => oauthbearer_client_response(Some(&user), &token, None, None),
            Mechanism::XOAuth2 => xoauth2_client_response(&user, &token),
        }.unwrap();
        let mut ex = ServerExchange::new(mechanism);
        let step = ex.step_line(encode_base64(&built).as_bytes());
        let ServerStep::Validate(creds) = step else {
            return Err(TestCaseError::fail(format!("{step:?}")));
        };
        prop_assert_eq!(creds.authzid.as_deref(), Some(user.as_str()));
        prop_assert_eq!(creds.token.expose_secret(), token.as_str());
    }

    #[test]
    fn base64_round_trip(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let line = encode_base64(&data);
        prop_assert_eq!(decode_base64(line.as_bytes()).unwrap(), data.clone());
        prop_assert_eq!(decode_base64(line.trim_end_matches('=').as_bytes()).unwrap(), data);
    }

    #[test]
    fn b64token_check_matches_the_grammar(token in "[ -~]{0,30}") {
        let body = token.trim_end_matches('=');
        let expected = !body.is_empty()
            && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        prop_assert_eq!(is_b64token(token.as_bytes()), expected);
    }

    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_oauthbearer(&data);
        let _ = parse_xoauth2(&data);
        let _ = parse_plain(&data);
        let _ = decode_base64(&data);
        let _ = ClientMessage::from_line(&data);
    }

    #[test]
    fn structured_garbage_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just(b"n,".to_vec()), Just(b"y,".to_vec()), Just(b"F,".to_vec()),
                Just(b"a=".to_vec()), Just(b",".to_vec()), Just(b"\x01".to_vec()),
                Just(b"auth=".to_vec()), Just(b"user=".to_vec()), Just(b"host=".to_vec()),
                Just(b"port=".to_vec()), Just(b"Bearer ".to_vec()), Just(b"=2C".to_vec()),
                Just(b"=".to_vec()), Just(b"\x00".to_vec()), "[a-zA-Z0-9 ]{0,4}".prop_map(String::into_bytes),
            ],
            0..16,
        ),
    ) {
        let data = parts.concat();
        let _ = parse_oauthbearer(&data);
        let _ = parse_xoauth2(&data);
        let _ = parse_plain(&data);
    }

    #[test]
    fn exchange_never_panics(
        mechanism in prop_oneof![Just(Mechanism::OAuthBearer), Just(Mechanism::XOAuth2)],
        actions in proptest::collection::vec(0u8..6, 0..10),
        lines in proptest::collection::vec("[A-Za-z0-9+/=*%]{0,12}", 10),
    ) {
        let mut ex = ServerExchange::new(mechanism);
        for (action, line) in actions.into_iter().zip(lines) {
            match action {
                0 | 1 => { let _ = ex.step_line(line.as_bytes()); }
                2 => { let _ = ex.accept(); }
                3 => { let _ = ex.refuse(sasl::ChallengeError::new(sasl::ChallengeStatus::InvalidToken)); }
                4 => { let _ = ex.step(ClientMessage::Empty); }
                _ => ex.abandon(),
            }
        }
    }
}
