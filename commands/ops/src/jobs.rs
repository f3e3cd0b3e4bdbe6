//! `job run`: a Job from a CronJob's template, exactly like
//! `kubectl create job --from=cronjob/<name>` (labels and annotations from the
//! job template, `cronjob.kubernetes.io/instantiate: manual`, an owner
//! reference to the CronJob), then its progress.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};

use super::{call, OpsError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running { active: i32 },
    Complete { seconds: Option<i64> },
    Failed { reason: String },
    DryRun,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub job: String,
    pub namespace: String,
    pub state: JobState,
}

/// The default Job name: `<cronjob>-manual-<unix time>`, within 63 characters.
pub fn default_job_name(cronjob: &str, now: jiff::Timestamp) -> String {
    let suffix = format!("-manual-{}", now.as_second());
    let keep = 63usize.saturating_sub(suffix.len());
    let base: String = cronjob.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end_matches('-'))
}

pub async fn run_from_cronjob(
    client: &kube::Client,
    namespace: &str,
    cronjob: &str,
    job_name: &str,
    dry_run: bool,
    watch: Duration,
) -> Result<JobOutcome, OpsError> {
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), namespace);
    let cj = call(
        &format!("cronjob/{cronjob} in namespace {namespace}"),
        cronjobs.get(cronjob),
    )
    .await?;
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), "manual".into());
    let job = Job {
        metadata: ObjectMeta {
            name: Some(job_name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cronjob.to_string(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let params = PostParams {
        dry_run,
        ..Default::default()
    };
    let what = format!("job/{job_name} in namespace {namespace}");
    call(&what, jobs.create(&params, &job)).await?;
    if dry_run {
        return Ok(JobOutcome {
            job: job_name.into(),
            namespace: namespace.into(),
            state: JobState::DryRun,
        });
    }
    let started = Instant::now();
    loop {
        let j = call(&what, jobs.get(job_name)).await?;
        let state = state_of(&j);
        if !matches!(state, JobState::Running { .. }) || started.elapsed() >= watch {
            return Ok(JobOutcome {
                job: job_name.into(),
                namespace: namespace.into(),
                state,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn state_of(j: &Job) -> JobState {
    let status = j.status.clone().unwrap_or_default();
    for c in status.conditions.iter().flatten() {
        if c.status == "True" && (c.type_ == "Complete" || c.type_ == "SuccessCriteriaMet") {
            let seconds = match (&status.start_time, &status.completion_time) {
                (Some(s), Some(e)) => Some(e.0.as_second() - s.0.as_second()),
                _ => None,
            };
            return JobState::Complete { seconds };
        }
        if c.status == "True" && c.type_ == "Failed" {
            return JobState::Failed {
                reason: c
                    .reason
                    .clone()
                    .or(c.message.clone())
                    .unwrap_or_else(|| "failed".into()),
            };
        }
    }
    JobState::Running {
        active: status.active.unwrap_or(0),
    }
}
