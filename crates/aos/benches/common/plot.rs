//! SVG line charts for the records in `docs/benchmarks/` (plotters, SVG backend: no fonts or
//! native libraries needed, and the files diff as text).

use std::path::Path;

use plotters::prelude::*;

/// One named line of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// How the x axis is scaled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum XScale {
    Linear,
    Log,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_scale: XScale,
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

impl Chart<'_> {
    /// Draws `series` into an 800×480 SVG at `path`.
    pub fn draw(&self, path: &Path, series: &[Series]) -> anyhow::Result<()> {
        let all = || series.iter().flat_map(|s| s.points.iter().copied());
        let (x_min, x_max) = bounds(all().map(|(x, _)| x));
        let (_, y_max) = bounds(all().map(|(_, y)| y));
        let y_range = 0.0..(y_max * 1.1).max(1e-9);

        let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(self.title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64);
        match self.x_scale {
            XScale::Log => self.draw_on(builder, (x_min..x_max).log_scale(), y_range, series)?,
            XScale::Linear => self.draw_on(builder, x_min..x_max, y_range, series)?,
        }
        root.present().map_err(plot_error)?;
        Ok(())
    }
}

impl Chart<'_> {
    /// Axes with their labels, then one line (with points) per series and the legend.
    fn draw_on<'a, X>(
        &self,
        mut builder: ChartBuilder<'_, '_, SVGBackend<'a>>,
        x_range: X,
        y_range: std::ops::Range<f64>,
        series: &[Series],
    ) -> anyhow::Result<()>
    where
        X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
        X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        let mut chart = builder
            .build_cartesian_2d(x_range, y_range)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .draw()
            .map_err(plot_error)?;
        for (i, line) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(line.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
            chart
                .draw_series(
                    line.points
                        .iter()
                        .map(|&p| Circle::new(p, 3, colour.filled())),
                )
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        Ok(())
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo * 0.9, lo * 1.1 + 1.0)
    } else {
        (0.0, 1.0)
    }
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}
