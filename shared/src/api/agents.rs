//! `GET /api/pool/agents` one page at a time, and each agent's invite QR code from a route of
//! its own: the whole list with a drawn QR code per agent outgrew Lambda's 6 MB answer limit
//! at about a thousand agents (issue 14).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use time::OffsetDateTime;

use super::Reply;
use super::errors::Answer;
use super::handlers::page_limit;
use super::views::AgentView;
use crate::engine::{ActionError, Engine};
use crate::store::{Agent, AgentsAfter, Status};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;
/// A page ends early once its agents would pass this many bytes of JSON. One agent is at most
/// about 400 KiB (64 KiB of instructions, each byte escaped at worst as `\u00XX`), so every
/// page holds at least one agent and stays far below Lambda's 6 MB.
pub const PAGE_BYTES: usize = 1024 * 1024;
/// A cursor is a timestamp and an instance id; anything longer was not made here.
const MAX_CURSOR: usize = 512;

/// `?limit=N` (1–200, default 50) and `?cursor=` (the `nextCursor` of the previous page):
/// `{"agents": [...], "nextCursor": "..." | null}`, newest claimed first.
pub async fn agents(engine: &Engine, query: Option<&str>) -> Answer {
    let (limit, after) = page_query(query)?;
    // One row more than the page says whether another page follows.
    let rows = engine.store().agents_page(after.as_ref(), limit + 1).await?;
    let mut agents = Vec::new();
    let mut bytes = 0;
    let mut next_cursor = None;
    for (index, row) in rows.iter().enumerate() {
        let view = AgentView::from(row);
        let size = serde_json::to_vec(&view).map_err(|err| Reply::internal(&err))?.len() + 1;
        let full = index as i64 == limit || (!agents.is_empty() && bytes + size > PAGE_BYTES);
        if full {
            next_cursor = Some(cursor(&rows[index - 1]));
            break;
        }
        bytes += size;
        agents.push(view);
    }
    Ok(Reply::ok(json!({ "agents": agents, "nextCursor": next_cursor })))
}

/// The invite URL of a live agent as a QR code (SVG), drawn here: invite URLs are private, so
/// no outside QR service ever sees one.
pub async fn agent_qr(engine: &Engine, id: &str) -> Answer {
    let instance = engine.store().instance(id).await?.ok_or(ActionError::NotFound)?;
    if !matches!(instance.status, Status::Claimed | Status::Crashed) {
        return Err(Reply::not_found("agent"));
    }
    let invite = instance.invite_url.as_deref().ok_or_else(|| Reply::not_found("invite URL"))?;
    let code = qrcode::QrCode::new(invite.as_bytes()).map_err(|err| Reply::internal(&err))?;
    let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(160, 160).quiet_zone(true).build();
    Ok(Reply::svg(svg))
}

fn page_query(query: Option<&str>) -> Result<(i64, Option<AgentsAfter>), Reply> {
    let mut limit = DEFAULT_LIMIT;
    let mut after = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "limit" => limit = page_limit(&value, MAX_LIMIT)?,
            "cursor" => {
                after = Some(
                    parse_cursor(&value)
                        .ok_or_else(|| Reply::bad_request("cursor", "is not a nextCursor this route gave"))?,
                )
            }
            _ => {}
        }
    }
    Ok((limit, after))
}

/// Opaque to clients: `<listed_at as Unix nanoseconds>:<instance id>`, base64url.
fn cursor(agent: &Agent) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", agent.listed_at.unix_timestamp_nanos(), agent.id))
}

fn parse_cursor(text: &str) -> Option<AgentsAfter> {
    if text.len() > MAX_CURSOR {
        return None;
    }
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
    let (nanos, id) = decoded.split_once(':')?;
    // Postgres text cannot hold a NUL: refused here rather than failing the query.
    if id.is_empty() || id.contains('\0') {
        return None;
    }
    let listed_at = OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?;
    Some(AgentsAfter { listed_at, id: id.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_the_row_it_was_made_from() {
        let listed_at = OffsetDateTime::from_unix_timestamp_nanos(1_795_262_400_123_456_000).unwrap();
        let agent = Agent {
            id: "abc:def".into(),
            agent_name: None,
            instructions: None,
            invite_url: None,
            conversation_id: None,
            join_status: None,
            status: Status::Claimed,
            claimed_at: Some(listed_at),
            listed_at,
        };
        assert_eq!(parse_cursor(&cursor(&agent)), Some(AgentsAfter { listed_at, id: "abc:def".into() }));
        for bad in ["", "!!", "bm9jb2xvbg", &URL_SAFE_NO_PAD.encode("12:"), &URL_SAFE_NO_PAD.encode("x:id")] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
        assert_eq!(parse_cursor(&URL_SAFE_NO_PAD.encode("12:a\0b")), None);
    }
}
