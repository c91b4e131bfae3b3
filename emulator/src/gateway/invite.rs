//! Invites the emulated gateway issues and accepts.
//!
//! A real invite slug is a signed protobuf the convos CLI decodes and verifies before it
//! contacts anyone; a slug it cannot decode fails the join at once (convos-contracts §7: a
//! bogus invite is a 500 with the CLI's error, never a join). The emulator cannot check real
//! signatures, so its invites carry a fixed marker instead: a slug is valid when it is
//! base64url (no padding) of bytes starting with [`INVITE_MARKER`]. Every create issues such a
//! slug, and a test that needs an invite the emulator accepts without creating a conversation
//! first can build one the same way ([`mint_invite_url`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a valid emulated invite slug decodes to first.
pub const INVITE_MARKER: &[u8] = b"emulated-convos-invite:";

/// A fresh slug the emulated CLI accepts.
pub fn mint_slug() -> String {
    let mut raw = INVITE_MARKER.to_vec();
    raw.extend((0..32).map(|_| rand::random::<u8>()));
    URL_SAFE_NO_PAD.encode(raw)
}

/// The invite URL for `env` (`production` → popup.convos.org, anything else → dev.convos.org),
/// as the real gateway answers it (convos-contracts §1.3).
pub fn invite_url(env: &str, slug: &str) -> String {
    let host = if env == "production" { "popup.convos.org" } else { "dev.convos.org" };
    format!("https://{host}/v2?i={slug}")
}

/// A fresh invite URL the emulated gateway accepts on a join.
pub fn mint_invite_url(env: &str) -> String {
    invite_url(env, &mint_slug())
}

/// Checks an invite the way the CLI's decoding does: a full URL (its `i` parameter) or a raw
/// slug. `Err` is the CLI's message.
pub fn check(invite: &str) -> Result<(), String> {
    let invite = invite.trim();
    let slug = match url::Url::parse(invite) {
        Ok(url) => url
            .query_pairs()
            .find(|(k, _)| k == "i")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| format!("Invalid invite URL: no invite code in {invite}"))?,
        Err(_) => invite.to_string(),
    };
    let raw = URL_SAFE_NO_PAD
        .decode(slug.trim_end_matches('='))
        .map_err(|_| "Invalid invite: could not decode the invite code".to_string())?;
    if raw.starts_with(INVITE_MARKER) && raw.len() > INVITE_MARKER.len() {
        Ok(())
    } else {
        Err("Invalid invite signature".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_invites_pass_and_bogus_ones_fail() {
        let slug = mint_slug();
        assert_eq!(check(&slug), Ok(()));
        assert_eq!(check(&invite_url("dev", &slug)), Ok(()));
        assert_eq!(check(&mint_invite_url("production")), Ok(()));
        assert!(mint_invite_url("production").starts_with("https://popup.convos.org/v2?i="));
        // The one the real gateway was seen to refuse (§7).
        assert_eq!(check("https://dev.convos.org/v2?i=abc"), Err("Invalid invite signature".into()));
        assert!(check("https://dev.convos.org/v2").unwrap_err().starts_with("Invalid invite URL"));
        assert!(check("not base64!").unwrap_err().starts_with("Invalid invite: could not decode"));
        assert_eq!(check(&URL_SAFE_NO_PAD.encode(INVITE_MARKER)), Err("Invalid invite signature".into()));
    }
}
