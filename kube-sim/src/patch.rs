//! The three patch formats the API server accepts for the objects we serve.
//!
//! JSON patch (RFC 6902) and JSON merge patch (RFC 7386) come from the
//! `json-patch` crate. Strategic merge patch is Kubernetes' own: like a merge
//! patch, except that lists of objects with a merge key (containers and env by
//! `name`, ports by `containerPort`, volume mounts by `mountPath`, conditions
//! by `type`) are merged element by element, and `$patch: delete` removes one.

use serde_json::Value;

/// How the client asked to patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        Some(match ct {
            "application/json-patch+json" => PatchKind::Json,
            "application/merge-patch+json" => PatchKind::Merge,
            "application/strategic-merge-patch+json" => PatchKind::Strategic,
            "application/apply-patch+yaml" => PatchKind::Apply,
            _ => return None,
        })
    }
}

/// Applies `patch` to `target`.
pub fn apply(kind: PatchKind, target: &mut Value, patch: &[u8]) -> Result<(), String> {
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch =
                serde_json::from_slice(patch).map_err(|e| format!("invalid JSON patch: {e}"))?;
            json_patch::patch(target, &ops).map_err(|e| e.to_string())
        }
        PatchKind::Merge => {
            let p: Value =
                serde_json::from_slice(patch).map_err(|e| format!("invalid merge patch: {e}"))?;
            json_patch::merge(target, &p);
            Ok(())
        }
        PatchKind::Strategic => {
            let p: Value = serde_json::from_slice(patch)
                .map_err(|e| format!("invalid strategic merge patch: {e}"))?;
            strategic_merge(target, &p);
            Ok(())
        }
        PatchKind::Apply => {
            // Server-side apply, simplified: the applied configuration is
            // merged strategically. Field ownership is not tracked.
            let p: Value = serde_yaml::from_slice(patch)
                .map_err(|e| format!("invalid apply configuration: {e}"))?;
            strategic_merge(target, &p);
            Ok(())
        }
    }
}

const MERGE_KEYS: &[&str] = &["name", "containerPort", "mountPath", "type", "ip"];

/// Kubernetes strategic merge patch over untyped JSON, with the merge keys
/// the core types use.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch.clone();
        if let Value::Object(m) = &mut replaced {
            m.remove("$patch");
        }
        *target = replaced;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target_map.remove(key);
            }
            Value::Array(items) => {
                let merged = match target_map.get_mut(key) {
                    Some(Value::Array(existing)) => merge_list(existing, items),
                    _ => false,
                };
                if !merged {
                    let cleaned: Vec<Value> = items
                        .iter()
                        .filter(|v| v.get("$patch").and_then(Value::as_str) != Some("delete"))
                        .cloned()
                        .collect();
                    target_map.insert(key.clone(), Value::Array(cleaned));
                }
            }
            Value::Object(_) => {
                let entry = target_map.entry(key.clone()).or_insert(Value::Null);
                strategic_merge(entry, value);
            }
            other => {
                target_map.insert(key.clone(), other.clone());
            }
        }
    }
}

/// Merges a list element-wise by its merge key; false if it has none.
fn merge_list(existing: &mut Vec<Value>, items: &[Value]) -> bool {
    let Some(merge_key) = MERGE_KEYS.iter().find(|k| {
        !items.is_empty()
            && items
                .iter()
                .all(|i| i.get(**k).is_some_and(|v| !v.is_null()))
    }) else {
        return false;
    };
    for item in items {
        let key_value = &item[*merge_key];
        let position = existing.iter().position(|e| &e[*merge_key] == key_value);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut existing[i], item),
            (None, false) => existing.push(item.clone()),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "side:1"}
        ]}}}});
        strategic_merge(
            &mut d,
            &json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}, {"name": "A", "$patch": "delete"}]}
            ]}}}}),
        );
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "app:2");
        assert_eq!(containers[0]["env"], json!([{"name": "B", "value": "2"}]));
        assert_eq!(containers[1]["image"], "side:1");
    }

    #[test]
    fn strategic_merge_null_deletes_and_scalars_replace() {
        let mut d = json!({"metadata": {"labels": {"a": "1", "quarantine": "true"}}, "spec": {"replicas": 2}});
        strategic_merge(
            &mut d,
            &json!({"metadata": {"labels": {"quarantine": null}}, "spec": {"replicas": 5}}),
        );
        assert_eq!(
            d,
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 5}})
        );
    }

    #[test]
    fn json_and_merge_patches() {
        let mut d = json!({"spec": {"replicas": 2, "paused": true}});
        apply(
            PatchKind::Json,
            &mut d,
            br#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
        )
        .unwrap();
        apply(PatchKind::Merge, &mut d, br#"{"spec":{"paused":null}}"#).unwrap();
        assert_eq!(d, json!({"spec": {"replicas": 3}}));
        assert!(apply(
            PatchKind::Json,
            &mut d,
            br#"[{"op":"test","path":"/spec/replicas","value":9}]"#
        )
        .is_err());
    }
}
