//! `GET /api/pool/events` (issue 16.2): the audit trail, newest first, an instance's history
//! lines and the pool's own events in one list, narrowed by instance, kind and time, one page
//! at a time.

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Reply;
use super::errors::Answer;
use super::handlers::page_limit;
use crate::engine::Engine;
use crate::lifecycle::EventKind;
use crate::store::EventFilter;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
/// Instance ids are made by the pool (12 characters); anything far longer was not.
const MAX_ID: usize = 128;

/// `?limit=N` (1–500, default 50), `instance=ID`, `kind=K[,K...]`, `since=` and `until=`
/// (RFC 3339; since inclusive, until exclusive) and `cursor=` (the previous page's
/// `nextCursor`): `{"events": [...], "nextCursor": "..." | null}`.
pub async fn events(engine: &Engine, query: Option<&str>) -> Answer {
    let (filter, limit) = feed_query(query)?;
    let events = engine.store().feed(&filter, limit).await?;
    // A full page may have more behind it; the cursor is the last event's id.
    let next_cursor =
        (events.len() as i64 == limit).then(|| events.last().map(|e| e.id().to_string())).flatten();
    Ok(Reply::ok(json!({ "events": events, "nextCursor": next_cursor })))
}

fn feed_query(query: Option<&str>) -> Result<(EventFilter, i64), Reply> {
    let mut filter = EventFilter::default();
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "limit" => limit = page_limit(&value, MAX_LIMIT)?,
            "instance" => {
                // Postgres text cannot hold a NUL: refused here rather than failing the query.
                if value.is_empty() || value.chars().count() > MAX_ID || value.contains('\0') {
                    return Err(Reply::bad_request(
                        "instance",
                        format!("must be an instance id (1 to {MAX_ID} characters)"),
                    ));
                }
                filter.instance_id = Some(value.into_owned());
            }
            "kind" => filter.kinds = Some(kinds(&value)?),
            "since" => filter.since = Some(time_field("since", &value)?),
            "until" => filter.until = Some(time_field("until", &value)?),
            "cursor" => match value.parse::<i64>() {
                Ok(id) if id > 0 => filter.before = Some(id),
                _ => return Err(Reply::bad_request("cursor", "is not a nextCursor this route gave")),
            },
            _ => {}
        }
    }
    Ok((filter, limit))
}

fn kinds(value: &str) -> Result<Vec<EventKind>, Reply> {
    value
        .split(',')
        .map(|kind| {
            kind.parse::<EventKind>().map_err(|()| {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                Reply::bad_request(
                    "kind",
                    format!("must be one or more of {}, comma-separated", known.join(", ")),
                )
            })
        })
        .collect()
}

fn time_field(field: &str, value: &str) -> Result<OffsetDateTime, Reply> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|_| Reply::bad_request(field, "must be a time in RFC 3339, e.g. 2026-12-01T09:30:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::reply::Payload;

    #[test]
    fn every_filter_is_read_and_every_bad_value_names_its_field() {
        let (filter, limit) =
            feed_query(Some("instance=abc&kind=wake,breaker&since=2026-12-01T09:30:00Z&until=2026-12-01T10:00:00%2B01:00&cursor=42&limit=7")).unwrap();
        assert_eq!(limit, 7);
        assert_eq!(filter.instance_id.as_deref(), Some("abc"));
        assert_eq!(filter.kinds, Some(vec![EventKind::Wake, EventKind::Breaker]));
        assert_eq!(filter.since.unwrap().unix_timestamp(), 1_796_117_400);
        assert_eq!(filter.until.unwrap().unix_timestamp(), 1_796_115_600);
        assert_eq!(filter.before, Some(42));
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("kind=status,nope", "kind"),
            ("kind=", "kind"),
            ("since=yesterday", "since"),
            ("until=2026-13-01T00:00:00Z", "until"),
            ("cursor=-1", "cursor"),
            ("cursor=abc", "cursor"),
            ("instance=", "instance"),
            ("instance=a%00b", "instance"),
        ] {
            let Payload::Json(body) = feed_query(Some(query)).unwrap_err().body else { panic!("{query}") };
            assert_eq!(body["field"], field, "{query}");
        }
    }
}
