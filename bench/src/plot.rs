//! The PNG: one panel per path, bars of median Mpps per system and frame size, with the
//! min–max range drawn as a whisker. Text uses a system TTF (DejaVu Sans) through ab_glyph.

use std::path::Path as FsPath;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

use crate::model::{Case, Path, System};
use crate::report::{cases, pps, stats, systems};
use crate::Results;

const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

fn colour(s: System) -> RGBColor {
    match s {
        System::Macvtap => RGBColor(0xd6, 0x27, 0x28),
        System::MacvtapNosleep => RGBColor(0xff, 0x98, 0x96),
        System::Testpmd => RGBColor(0x7f, 0x7f, 0x7f),
        System::Ovs => RGBColor(0x1f, 0x77, 0xb4),
        System::Kernel => RGBColor(0x2c, 0xa0, 0x2c),
    }
}

fn load_font() -> Result<()> {
    let file = FONTS.iter().find(|f| FsPath::new(f).exists()).ok_or_else(|| anyhow!("no TTF font found (install fonts-dejavu-core)"))?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(file)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| anyhow!("{file}: not a usable font"))?;
    Ok(())
}

pub fn draw(res: &Results, png: &FsPath) -> Result<()> {
    load_font()?;
    // One panel per path and control thread placement.
    let mut paths: Vec<(Path, bool)> = cases(res).iter().map(|c| (c.path, c.shared_core)).collect();
    paths.sort();
    paths.dedup();
    if paths.is_empty() {
        return Err(anyhow!("no samples"));
    }
    let syss = systems(res);
    let cols = 2usize;
    let rows = paths.len().div_ceil(cols);
    let root = BitMapBackend::new(png, (1400, 80 + 420 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (title, body) = root.split_vertically(60);
    title
        .titled(
            &format!("Mpps (median, min–max whiskers), {} run(s) each — {} {}", res.args.runs, res.host, res.started),
            ("sans-serif", 24),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let panels = body.split_evenly((rows, cols));
    for (&(path, shared), area) in paths.iter().zip(panels.iter()) {
        let cs: Vec<_> = cases(res).into_iter().filter(|c| c.path == path && c.shared_core == shared).collect();
        let mut ymax: f64 = 0.0;
        for c in &cs {
            for s in &syss {
                if let Some((_, _, hi)) = stats(&pps(res, c, *s)) {
                    ymax = ymax.max(hi / 1e6);
                }
            }
        }
        let n = cs.len() as f64;
        let mut chart = ChartBuilder::on(area)
            .caption(Case { path, size: 0, shared_core: shared }.path_name(), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..n, 0f64..(ymax * 1.15).max(0.1))
            .context("chart")?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(cs.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 && i < cs.len() {
                    format!("{} B", cs[i].size)
                } else {
                    String::new()
                }
            })
            .y_desc("Mpps")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        let width = 0.8 / syss.len() as f64;
        for (k, s) in syss.iter().enumerate() {
            let mut bars = Vec::new();
            let mut whiskers = Vec::new();
            for (i, c) in cs.iter().enumerate() {
                if let Some((med, lo, hi)) = stats(&pps(res, c, *s)) {
                    let x0 = i as f64 + 0.1 + k as f64 * width;
                    bars.push(Rectangle::new([(x0, 0.0), (x0 + width * 0.9, med / 1e6)], colour(*s).filled()));
                    let xm = x0 + width * 0.45;
                    whiskers.push(PathElement::new(vec![(xm, lo / 1e6), (xm, hi / 1e6)], BLACK.stroke_width(2)));
                }
            }
            chart
                .draw_series(bars)
                .map_err(|e| anyhow!("{e}"))?
                .label(s.name())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour(*s).filled()));
            chart.draw_series(whiskers).map_err(|e| anyhow!("{e}"))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
