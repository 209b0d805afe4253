//! Signals as OCSF Detection Finding (class_uid 2004, OCSF 1.3), for SIEMs and data lakes
//! that ingest OCSF (Amazon Security Lake, Splunk, Sentinel). The native signal stays the
//! source of truth; this is a mapping of it, chosen with `signals.output_format`.

use serde_json::{Value, json};

use crate::config::SignalFormat;
use crate::event::parse_rfc3339_ms;
use crate::signal::{EntityType, Severity, Signal};

/// OCSF `severity_id`: 2 Low, 3 Medium, 4 High, 5 Critical.
fn severity_id(s: Severity) -> u8 {
    match s {
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

fn title_case(s: &str) -> &'static str {
    match s {
        "low" => "Low",
        "medium" => "Medium",
        "high" => "High",
        _ => "Critical",
    }
}

/// OCSF observable `type_id`: 2 IP Address, 4 User Name; services are resource names (10
/// Resource UID).
fn observable(kind: EntityType, value: &str) -> Value {
    let (type_id, ty) = match kind {
        EntityType::Ip => (2, "IP Address"),
        EntityType::Account => (4, "User Name"),
        EntityType::Service => (10, "Resource UID"),
    };
    json!({ "name": "entity.value", "type_id": type_id, "type": ty, "value": value })
}

/// A signal as its configured output JSON.
pub fn render(s: &Signal, format: SignalFormat) -> String {
    let mut buf = Vec::new();
    render_into(s, format, &mut buf);
    String::from_utf8(buf).expect("JSON is UTF-8")
}

/// `render`, appended to `buf` (replay reuses one buffer for every signal).
pub fn render_into(s: &Signal, format: SignalFormat, buf: &mut Vec<u8>) {
    match format {
        SignalFormat::Native => serde_json::to_writer(buf, s).expect("signals serialize"),
        SignalFormat::Ocsf => {
            serde_json::to_writer(buf, &detection_finding(s)).expect("findings serialize")
        }
    }
}

/// The Detection Finding for a signal.
pub fn detection_finding(s: &Signal) -> Value {
    let time = parse_rfc3339_ms(&s.ts).unwrap_or(s.ts_ms);
    let entity_type = match s.entity.kind {
        EntityType::Ip => "ip",
        EntityType::Account => "account",
        EntityType::Service => "service",
    };
    let mut observables = vec![observable(s.entity.kind, &s.entity.value)];
    for ip in &s.evidence.sample_ips {
        if s.entity.kind != EntityType::Ip || *ip != s.entity.value {
            observables.push(json!({
                "name": "evidence.sample_ips", "type_id": 2, "type": "IP Address", "value": ip
            }));
        }
    }
    for a in &s.evidence.sample_accounts {
        if s.entity.kind != EntityType::Account || *a != s.entity.value {
            observables.push(json!({
                "name": "evidence.sample_accounts", "type_id": 4, "type": "User Name", "value": a
            }));
        }
    }
    let evidences: Vec<Value> = s
        .evidence
        .sample_ips
        .iter()
        .map(|ip| json!({ "src_endpoint": { "ip": ip } }))
        .chain(
            s.evidence
                .sample_accounts
                .iter()
                .map(|a| json!({ "user": { "name": a } })),
        )
        .collect();
    let mut f = json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": severity_id(s.severity),
        "severity": title_case(s.severity.as_str()),
        "status_id": 1,
        "status": "New",
        "time": time,
        "message": s.summary,
        "metadata": {
            "version": "1.3.0",
            "uid": s.signal_id,
            "product": {
                "name": "atowatch",
                "vendor_name": "atowatch",
                "version": env!("CARGO_PKG_VERSION"),
            },
        },
        "finding_info": {
            "uid": s.signal_id,
            "title": format!("{}: {} {}", s.rule, entity_type, s.entity.value),
            "desc": s.summary,
            "types": [s.rule.as_str()],
            "created_time": time,
            "analytic": {
                "uid": s.rule.as_str(),
                "name": s.rule.as_str(),
                "type_id": 1,
                "type": "Rule",
            },
        },
        "resources": [{ "type": entity_type, "name": s.entity.value, "uid": s.entity.value }],
        "observables": observables,
        "unmapped": {
            "atowatch": {
                "window": s.window,
                "evidence": s.evidence,
            }
        },
    });
    if !evidences.is_empty() {
        f["evidences"] = Value::Array(evidences);
    }
    if let Some(svc) = &s.service {
        f["unmapped"]["atowatch"]["service"] = json!(svc);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Entity, Evidence, Rule};

    #[test]
    fn a_signal_maps_to_a_detection_finding() {
        let entity = Entity {
            kind: EntityType::Ip,
            value: "203.0.113.7".into(),
        };
        let s = Signal {
            signal_id: Signal::make_id(Rule::CredentialStuffing, &entity, 1_763_719_200_000),
            rule: Rule::CredentialStuffing,
            severity: Severity::High,
            entity,
            ts: "2025-11-21T10:00:00Z".into(),
            window: "10m".into(),
            service: Some("checkout-api".into()),
            evidence: Evidence {
                sample_accounts: vec!["a@example.com".into()],
                ..Evidence::default()
            },
            summary: "203.0.113.7 failed logins on 31 accounts in 10m".into(),
            ts_ms: 1_763_719_200_000,
        };
        let f = detection_finding(&s);
        assert_eq!(f["class_uid"], 2004);
        assert_eq!(f["type_uid"], 200401);
        assert_eq!(f["severity_id"], 4);
        assert_eq!(f["time"], 1_763_719_200_000i64);
        assert_eq!(f["metadata"]["uid"], s.signal_id.as_str());
        assert_eq!(f["finding_info"]["analytic"]["name"], "credential_stuffing");
        assert_eq!(f["observables"][0]["type_id"], 2);
        assert_eq!(f["observables"][1]["value"], "a@example.com");
        assert_eq!(f["unmapped"]["atowatch"]["service"], "checkout-api");
    }
}
