//! Every SASL parser on arbitrary bytes: no panic, and whatever parses also round-trips
//! through the client-side builder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sasl::ExposeSecret;

fuzz_target!(|data: &[u8]| {
    if let Ok(credentials) = sasl::parse_oauthbearer(data) {
        let rebuilt = sasl::oauthbearer_client_response(
            credentials.authzid.as_deref(),
            credentials.token.expose_secret(),
            credentials.host.as_deref(),
            credentials.port,
        );
        if let Ok(rebuilt) = rebuilt {
            let again = sasl::parse_oauthbearer(&rebuilt).expect("rebuilt response parses");
            assert_eq!(again.authzid, credentials.authzid);
            assert_eq!(
                again.token.expose_secret(),
                credentials.token.expose_secret()
            );
        }
    }
    let _ = sasl::parse_xoauth2(data);
    let _ = sasl::parse_plain(data);
    let _ = sasl::decode_base64(data);
});
