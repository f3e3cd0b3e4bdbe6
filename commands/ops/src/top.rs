//! `top`: CPU and memory per pod from the metrics.k8s.io API (metrics-server),
//! like `kubectl top pods`. When metrics-server is not installed the API is
//! not served, and we say exactly that.

use serde::Deserialize;

use super::OpsError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    pub pod: String,
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
}

#[derive(Deserialize)]
struct PodMetricsList {
    items: Vec<PodMetrics>,
}

#[derive(Deserialize)]
struct PodMetrics {
    metadata: Meta,
    containers: Vec<ContainerMetrics>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
}

#[derive(Deserialize)]
struct ContainerMetrics {
    usage: Usage,
}

#[derive(Deserialize)]
struct Usage {
    cpu: String,
    memory: String,
}

/// `250m`, `1`, `123456789n`, `500u` → millicores.
pub fn cpu_millicores(q: &str) -> Option<u64> {
    let (num, unit) = split_quantity(q);
    let n: f64 = num.parse().ok()?;
    let m = match unit {
        "n" => n / 1_000_000.0,
        "u" => n / 1_000.0,
        "m" => n,
        "" => n * 1000.0,
        _ => return None,
    };
    Some(m.round() as u64)
}

/// `64Mi`, `65536Ki`, `1Gi`, `128M`, `1000` → bytes.
pub fn memory_bytes(q: &str) -> Option<u64> {
    let (num, unit) = split_quantity(q);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    };
    Some((n * mult).round() as u64)
}

fn split_quantity(q: &str) -> (&str, &str) {
    let idx = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    (&q[..idx], &q[idx..])
}

pub async fn top_pods(
    client: &kube::Client,
    namespace: &str,
    selector: Option<&str>,
) -> Result<Vec<PodUsage>, OpsError> {
    let mut path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods");
    if let Some(sel) = selector {
        path.push_str("?labelSelector=");
        path.push_str(&sel.replace('=', "%3D").replace(',', "%2C"));
    }
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| OpsError::Api {
            what: "pod metrics".into(),
            code: 0,
            message: e.to_string(),
        })?;
    let list: PodMetricsList = match super::call("pod metrics", client.request(request)).await {
        Ok(l) => l,
        Err(OpsError::NotFound { .. }) => {
            return Err(OpsError::Refused {
                message: "metrics-server isn't installed in this cluster: the metrics.k8s.io API is not served, so there is no CPU or memory usage to show".into(),
            })
        }
        Err(OpsError::Api { code: 503, .. }) => {
            return Err(OpsError::Refused { message: "metrics-server is installed but not ready yet (metrics.k8s.io answered 503); try again in a minute".into() })
        }
        Err(e) => return Err(e),
    };
    let mut out: Vec<PodUsage> = list
        .items
        .into_iter()
        .map(|p| PodUsage {
            pod: p.metadata.name,
            cpu_millicores: p
                .containers
                .iter()
                .filter_map(|c| cpu_millicores(&c.usage.cpu))
                .sum(),
            memory_bytes: p
                .containers
                .iter()
                .filter_map(|c| memory_bytes(&c.usage.memory))
                .sum(),
        })
        .collect();
    out.sort_by(|a, b| a.pod.cmp(&b.pod));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_millicores("250m"), Some(250));
        assert_eq!(cpu_millicores("1"), Some(1000));
        assert_eq!(cpu_millicores("123456789n"), Some(123));
        assert_eq!(memory_bytes("64Mi"), Some(64 * 1024 * 1024));
        assert_eq!(memory_bytes("65536Ki"), Some(64 * 1024 * 1024));
        assert_eq!(memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(memory_bytes("12Q"), None);
    }
}
