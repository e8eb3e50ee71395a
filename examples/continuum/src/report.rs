//! What `continuum run` leaves behind: results.json (everything), results.md (the table:
//! domain | mean p | base acc | acc per alpha, then the commands run) and results.svg
//! (accuracy against alpha, one line per domain, drawn by hand without a plotting crate).

use std::path::Path;

use crate::run::{alpha_name, Eval, Results, RunError};

/// Writes results.json, results.md and results.svg into `out`.
pub fn write_all(out: &Path, results: &Results) -> Result<(), RunError> {
    let json = serde_json::to_string_pretty(results).expect("results always serialize") + "\n";
    for (name, text) in [
        ("results.json", json),
        ("results.md", markdown(results)),
        ("results.svg", svg(results)),
    ] {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|source| RunError::Io { path, source })?;
    }
    Ok(())
}

fn acc(e: &Eval) -> String {
    format!("{:.3} ({}/{})", e.accuracy, e.correct, e.examples)
}

/// The markdown report: setup, the table, the commands.
pub fn markdown(r: &Results) -> String {
    let mut s = String::from("# Continuum results\n\n");
    s += &format!(
        "Model `{}`; per domain {} train / {} test records (seed {}, label noise {} on \
         arithmetic's), {} steps, lr {}, batch size {}, up to {} new tokens at evaluation (16 \
         on the puzzles). Accuracy is the trainer's `eval` report (correct / examples).\n\n",
        r.model,
        r.train,
        r.test,
        r.seed,
        r.label_noise,
        r.steps,
        r.lr,
        r.batch_size,
        r.max_new_tokens
    );
    let mut head = vec!["domain".to_string(), "mean p".into(), "base acc".into()];
    head.extend(
        r.alphas
            .iter()
            .map(|&a| format!("acc alpha={}", alpha_name(a))),
    );
    s += &format!("| {} |\n", head.join(" | "));
    s += &format!("|{}\n", " --- |".repeat(head.len()));
    for d in &r.domains {
        let mut row = vec![
            d.domain.clone(),
            format!("{:.3}", d.mean_prob),
            acc(&d.base),
        ];
        for &a in &r.alphas {
            let cell = d
                .alphas
                .iter()
                .find(|x| x.alpha == a)
                .map_or_else(|| "-".to_string(), |x| acc(&x.eval));
            row.push(cell);
        }
        s += &format!("| {} |\n", row.join(" | "));
    }
    s += "\n## Commands\n\n```sh\n";
    for c in &r.commands {
        s += c;
        s.push('\n');
    }
    s += "```\n";
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// Accuracy (0 to 1) against alpha. The alphas sit evenly spaced in the order given (0, 1, 10
/// would crowd on a linear axis); each domain is a solid line with its base model's accuracy
/// dashed in the same colour, and its mean p in the legend.
pub fn svg(r: &Results) -> String {
    let (w, h) = (720.0, 420.0);
    let (left, right, top, bottom) = (60.0, 240.0, 40.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let n = r.alphas.len();
    let x = |i: usize| {
        if n <= 1 {
            left + pw / 2.0
        } else {
            // Inset from the frame so the end points are not drawn on it.
            left + 30.0 + (pw - 60.0) * i as f64 / (n - 1) as f64
        }
    };
    let y = |a: f64| top + ph * (1.0 - a.clamp(0.0, 1.0));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        left + pw / 2.0,
        xml_escape(&format!("Accuracy vs alpha ({})", r.model))
    );
    for k in 0..=4 {
        let a = k as f64 / 4.0;
        s += &format!(
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">{a:.2}</text>\n",
            y(a),
            left + pw,
            left - 6.0,
            y(a) + 4.0
        );
    }
    for (i, &a) in r.alphas.iter().enumerate() {
        s += &format!(
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#999\"/>\n\
             <text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
            x(i),
            top + ph,
            top + ph + 5.0,
            top + ph + 20.0,
            alpha_name(a)
        );
    }
    s += &format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">alpha, evenly spaced (0 = NLL, 1 = -p, 10 = -p^10)</text>\n\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">test accuracy</text>\n",
        left + pw / 2.0,
        h - 18.0,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for (k, d) in r.domains.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let points: Vec<(f64, f64)> = r
            .alphas
            .iter()
            .enumerate()
            .filter_map(|(i, &a)| {
                d.alphas
                    .iter()
                    .find(|x| x.alpha == a)
                    .map(|res| (x(i), y(res.eval.accuracy)))
            })
            .collect();
        let by = y(d.base.accuracy);
        s += &format!(
            "<line x1=\"{left}\" y1=\"{by:.1}\" x2=\"{}\" y2=\"{by:.1}\" stroke=\"{color}\" \
             stroke-dasharray=\"5 4\" stroke-width=\"1.5\"/>\n",
            left + pw
        );
        let path: Vec<String> = points
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        s += &format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>\n",
            path.join(" ")
        );
        for (px, py) in &points {
            s += &format!("<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3.5\" fill=\"{color}\"/>\n");
        }
        let ly = top + 10.0 + 36.0 * k as f64;
        let lx = left + pw + 16.0;
        s += &format!(
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"/>\n\
             <text x=\"{}\" y=\"{}\">{}</text>\n\
             <line x1=\"{lx}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-dasharray=\"5 4\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"#555\">base model</text>\n",
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            xml_escape(&format!("{} (mean p {:.3})", d.domain, d.mean_prob)),
            ly + 16.0,
            lx + 24.0,
            ly + 16.0,
            lx + 30.0,
            ly + 20.0
        );
    }
    s += "</svg>\n";
    s
}
