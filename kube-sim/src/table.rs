//! Server-side printing: a list (or one object) as a `meta.k8s.io/v1`
//! `Table`, which `kubectl get` asks for and prints as it is. Pods and
//! Deployments get kubectl's usual columns; everything else NAME and AGE.

use serde_json::{json, Value};

use crate::resources::{self, ResourceType};

/// Whether the client's `Accept` asks for a Table.
pub fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// kubectl's short ages: `45s`, `3m20s`, `17m`, `5h12m`, `3d`.
pub fn human_age(secs: i64) -> String {
    let secs = secs.max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        match secs % 60 {
            0 => format!("{m}m"),
            s => format!("{m}m{s}s"),
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            mm => format!("{h}h{mm}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        match h % 24 {
            0 => format!("{d}d"),
            hh => format!("{d}d{hh}h"),
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn age(obj: &Value, now: jiff::Timestamp) -> String {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| human_age(now.as_second() - t.as_second()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn column(name: &str, kind: &str, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({ "name": name, "type": kind, "format": format, "description": description, "priority": 0 })
}

fn pod_cells(p: &Value) -> Vec<Value> {
    let statuses = p["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = p["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    let waiting = statuses
        .iter()
        .find_map(|c| c["state"]["waiting"]["reason"].as_str().map(String::from));
    let status = if p["metadata"]["deletionTimestamp"].is_string() {
        "Terminating".to_string()
    } else {
        waiting.unwrap_or_else(|| {
            p["status"]["phase"]
                .as_str()
                .unwrap_or("Unknown")
                .to_string()
        })
    };
    vec![
        json!(format!("{ready}/{total}")),
        json!(status),
        json!(restarts),
    ]
}

fn deployment_cells(d: &Value) -> Vec<Value> {
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    vec![
        json!(format!(
            "{}/{}",
            n(&d["status"]["readyReplicas"]),
            n(&d["spec"]["replicas"])
        )),
        json!(n(&d["status"]["updatedReplicas"])),
        json!(n(&d["status"]["availableReplicas"])),
    ]
}

/// The Table of `items` of resource type `rt`.
pub fn table(rt: ResourceType, items: &[Value], resource_version: &str) -> Value {
    let now = jiff::Timestamp::now();
    let mut columns = vec![column("Name", "string", "Name of the object")];
    match rt {
        resources::PODS => {
            columns.push(column("Ready", "string", "Containers ready / total"));
            columns.push(column(
                "Status",
                "string",
                "The pod's phase or why it waits",
            ));
            columns.push(column("Restarts", "integer", "Container restarts"));
        }
        resources::DEPLOYMENTS => {
            columns.push(column("Ready", "string", "Ready / desired replicas"));
            columns.push(column(
                "Up-to-date",
                "integer",
                "Replicas of the newest template",
            ));
            columns.push(column("Available", "integer", "Available replicas"));
        }
        _ => {}
    }
    columns.push(column("Age", "string", "Time since creation"));
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            match rt {
                resources::PODS => cells.extend(pod_cells(obj)),
                resources::DEPLOYMENTS => cells.extend(deployment_cells(obj)),
                _ => {}
            }
            cells.push(json!(age(obj, now)));
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version },
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let table = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (30 * 3600, "30h"),
            (3 * 86400, "3d"),
            (3 * 86400 + 3600, "3d1h"),
            (100 * 86400, "100d"),
            (800 * 86400, "2y"),
        ];
        for (secs, want) in table {
            assert_eq!(human_age(secs), want, "{secs}");
        }
    }

    #[test]
    fn only_a_table_first_asks_for_a_table() {
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
        assert!(!wanted(
            "application/json, application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
    }
}
