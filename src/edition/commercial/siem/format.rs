//! What a sink receives for one audit event: the API's JSON, Splunk HEC's envelope, OCSF, and
//! the RFC 5424 syslog message around any of them.

use super::config::Format;
use crate::api::timestamp;
use crate::audit::hex;
use crate::store::audit::StoredEvent;
use serde_json::{Value, json};

/// The OCSF schema version events are mapped to.
pub const OCSF_VERSION: &str = "1.5.0";
/// The HEC sourcetype events are sent with.
pub const SOURCETYPE: &str = "clavitor:audit";
/// RFC 5612's enterprise number for documentation; the structured data's id.
const SD_ID: &str = "clavitor@32473";

/// The event exactly as `GET /v1/audit` returns it.
pub fn api_json(e: &StoredEvent) -> Value {
    let d = &e.data;
    let details: serde_json::Map<String, Value> = d
        .details
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "seq": e.seq,
        "time": timestamp(e.time),
        "actor": { "kind": d.actor_kind, "id": d.actor_id },
        "action": d.action,
        "target": d.target,
        "outcome": d.outcome,
        "ip": d.ip,
        "request_id": d.request_id,
        "hash": hex(&e.hash),
        "details": details,
    })
}

/// One event in `format`, as the JSON value a sink sends (one line of a batch).
pub fn encode(format: Format, pop_id: &str, e: &StoredEvent) -> Value {
    match format {
        Format::Json => api_json(e),
        Format::Hec => json!({
            "time": e.time as f64 / 1000.0,
            "host": pop_id,
            "source": "clavitor",
            "sourcetype": SOURCETYPE,
            "event": api_json(e),
        }),
        Format::Ocsf => ocsf(pop_id, e),
    }
}

/// `(class_uid, class_name, activity_id, activity_name)` of an action.
fn ocsf_class(action: &str) -> (u32, &'static str, u32, &'static str) {
    const AUTH: (u32, &str) = (3002, "Authentication");
    const ACCOUNT: (u32, &str) = (3001, "Account Change");
    const ENTITY: (u32, &str) = (3004, "Entity Management");
    const API: (u32, &str) = (6003, "API Activity");
    let (class, activity, name) = match action {
        "auth.failed" => (AUTH, 1, "Logon"),
        "user.create" | "agent.create" => (ACCOUNT, 1, "Create"),
        "user.activate" => (ACCOUNT, 2, "Enable"),
        "owner.rotate" | "user.token.rotate" => (ACCOUNT, 3, "Password Change"),
        "user.deactivate" | "agent.revoke" => (ACCOUNT, 5, "Disable"),
        "user.delete" => (ACCOUNT, 6, "Delete"),
        "user.update" => (ACCOUNT, 99, "Other"),
        "group.create" => (ENTITY, 1, "Create"),
        "group.delete" => (ENTITY, 4, "Delete"),
        "group.update" | "group.member.add" | "group.member.remove" => (ENTITY, 3, "Update"),
        a if a.ends_with(".create") => (API, 1, "Create"),
        a if a.ends_with(".read") || a.ends_with(".list") || a.ends_with(".use") => {
            (API, 2, "Read")
        }
        a if a.ends_with(".update") => (API, 3, "Update"),
        a if a.ends_with(".delete") => (API, 4, "Delete"),
        _ => (API, 99, "Other"),
    };
    (class.0, class.1, activity, name)
}

/// The event as an OCSF record of one of four classes; the original event (its seq and hash
/// included) is kept whole under `unmapped`, and its hash is the record's `metadata.uid`.
pub fn ocsf(pop_id: &str, e: &StoredEvent) -> Value {
    let d = &e.data;
    let (class_uid, class_name, activity_id, activity_name) = ocsf_class(&d.action);
    let category = class_uid / 1000;
    let category_name = if category == 3 {
        "Identity & Access Management"
    } else {
        "Application Activity"
    };
    let ok = d.outcome == "ok";
    let mut record = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "time": e.time,
        "severity_id": if ok { 1 } else { 3 },
        "severity": if ok { "Informational" } else { "Medium" },
        "status_id": if ok { 1 } else { 2 },
        "status": if ok { "Success" } else { "Failure" },
        "status_detail": d.outcome,
        "message": d.action,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "Clavitor Vault",
                "vendor_name": "Clavitor",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "uid": hex(&e.hash),
            "sequence": e.seq,
            "log_name": "audit",
            "log_provider": pop_id,
        },
        "actor": { "user": { "uid": d.actor_id, "type": d.actor_kind } },
        "unmapped": api_json(e),
    });
    if let Some(ip) = &d.ip {
        record["src_endpoint"] = json!({ "ip": ip });
    }
    if let Some(target) = &d.target {
        match class_uid {
            3001 | 3002 => record["user"] = json!({ "uid": target }),
            3004 => record["entity"] = json!({ "uid": target, "type": d.action.split('.').next() }),
            _ => {
                record["resources"] = json!([{ "uid": target, "type": d.action.split('.').next() }])
            }
        }
    }
    if class_uid == 6003 {
        record["api"] = json!({ "operation": d.action, "request": { "uid": d.request_id } });
    }
    record
}

/// An RFC 5424 message carrying `body` (the event in the sink's format), framed by octet
/// counting (RFC 5425 section 4.3): `LEN SP MSG`.
pub fn syslog_frame(pop_id: &str, e: &StoredEvent, body: &Value) -> Vec<u8> {
    // Facility 13 (log audit); severity 6 (informational), or 4 (warning) for a denial.
    let severity = if e.data.outcome == "ok" { 6 } else { 4 };
    let pri = 13 * 8 + severity;
    // MSGID: 1-32 printable US-ASCII characters (RFC 5424 section 6.2.7).
    let msgid: String = e
        .data
        .action
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    let host: String = pop_id
        .chars()
        .filter(char::is_ascii_graphic)
        .take(255)
        .collect();
    let msg = format!(
        "<{pri}>1 {} {} clavitor - {} [{SD_ID} seq=\"{}\" hash=\"{}\"] {}",
        timestamp(e.time),
        if host.is_empty() { "-" } else { &host },
        if msgid.is_empty() { "-" } else { &msgid },
        e.seq,
        hex(&e.hash),
        body
    );
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}
