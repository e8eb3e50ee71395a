//! An SVG plot of a run: loss (left axis) and mean p of the loss tokens (right axis, 0-1)
//! against the optimizer step.

use crate::train::StepMetrics;

pub fn training_svg(history: &[StepMetrics]) -> String {
    let (w, h, pad) = (720.0, 400.0, 50.0);
    let steps = history.len().max(2) as f64;
    let max_loss = history
        .iter()
        .map(|m| m.loss)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (steps - 1.0);
    let y = |v: f64, top: f64| h - pad - (h - 2.0 * pad) * (v / top).clamp(0.0, 1.0);
    let line = |pts: Vec<(f64, f64)>, colour: &str| {
        let p: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
            p.join(" ")
        )
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{pad}\" y=\"24\"><tspan fill=\"#c0392b\">loss</tspan> and <tspan fill=\"#2471a3\">mean p</tspan> over {n} steps</text>\n\
         <line x1=\"{pad}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{bottom}\" stroke=\"black\"/>\n\
         <line x1=\"{right}\" y1=\"{pad}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"black\"/>\n",
        bottom = h - pad,
        right = w - pad,
        n = history.len()
    );
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{max_loss:.3}</text>\n",
        pad - 4.0,
        pad + 4.0
    );
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">0</text>\n",
        pad - 4.0,
        h - pad
    );
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\">1.0</text>\n",
        w - pad + 4.0,
        pad + 4.0
    );
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\">0</text>\n",
        w - pad + 4.0,
        h - pad
    );
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">step</text>\n",
        w / 2.0,
        h - 12.0
    );
    s += &line(
        history
            .iter()
            .enumerate()
            .map(|(i, m)| (x(i), y(m.loss, max_loss)))
            .collect(),
        "#c0392b",
    );
    s += &line(
        history
            .iter()
            .enumerate()
            .map(|(i, m)| (x(i), y(m.mean_p, 1.0)))
            .collect(),
        "#2471a3",
    );
    s + "</svg>\n"
}
