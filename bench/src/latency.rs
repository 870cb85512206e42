//! Latency (placeholder).

use anyhow::Result;

use crate::model::{Env, System};
use crate::{Results, RunArgs};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LatencyResult {}

pub fn run_all(_env: &Env, _systems: &[System], _a: &RunArgs) -> Result<Vec<LatencyResult>> {
    Ok(Vec::new())
}

pub fn report_section(_res: &Results, _o: &mut String) {}
