//! Kernel macvtap (placeholder while the DPDK systems are brought up).

use anyhow::Result;

use crate::model::{Case, Env};
use crate::systems::SwitchFigures;
use crate::Results;

#[derive(clap::Args, Debug)]
pub struct TapArgs {}

pub fn tap_main(_a: TapArgs) -> Result<()> {
    Ok(())
}

pub fn measure(_env: &Env, _case: &Case) -> Result<Option<(f64, SwitchFigures)>> {
    Ok(None)
}

pub fn report_section(_res: &Results, _o: &mut String) {}
