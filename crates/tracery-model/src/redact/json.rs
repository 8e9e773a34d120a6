//! Redaction of JSON rows (PostgreSQL rows keyed by column, Redis replies, MongoDB
//! documents).

use serde_json::Value as Json;

use super::{redacted_json, Redaction};

/// Members whose key matches become `{"redacted": RULE}`; so does the `value` of a
/// `{"field"|"key": NAME, "value": V}` pair (a Redis hash entry) whose NAME matches.
pub(super) fn redact(r: &Redaction, j: &mut Json) {
    match j {
        Json::Object(map) => {
            let pair_name = ["field", "key"]
                .iter()
                .find_map(|k| map.get(*k).and_then(Json::as_str));
            if let Some(rule) = pair_name
                .filter(|_| map.contains_key("value"))
                .and_then(|n| r.rule_for(n))
            {
                let rule = rule.to_owned();
                map.insert("value".into(), redacted_json(&rule));
            }
            for (key, v) in map.iter_mut() {
                match r.rule_for(key) {
                    Some(rule) if !is_redacted(v) => *v = redacted_json(rule),
                    Some(_) => {}
                    None => redact(r, v),
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|i| redact(r, i)),
        _ => {}
    }
}

fn is_redacted(v: &Json) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o.get("redacted").is_some_and(Json::is_string))
}
