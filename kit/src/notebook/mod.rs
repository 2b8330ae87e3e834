//! Rich output in Jupyter (evcxr): charts inline as PNG (what GitHub renders reliably in committed notebooks) and
//! tables as HTML, through evcxr's display protocol — a value whose type has an `evcxr_display` method is shown that
//! way when a cell ends with it. Outside a notebook the same values print as text.
use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;

use crate::metrics::Metrics;
use crate::plot::{line_chart_png, line_chart_svg, metric_lines, Series};
use crate::Result;

pub use crate::smoke::{smoke_mode, smoke_take, SMOKE_ENV};

mod tables;
pub use tables::accuracy_table;

/// Send `content` of MIME type `mime` to the notebook (evcxr's protocol: marked blocks on stdout).
pub fn display(mime: &str, content: &str) {
    println!("EVCXR_BEGIN_CONTENT {mime}\n{content}\nEVCXR_END_CONTENT");
}

/// A chart, shown inline in a notebook as PNG; saved as SVG and PNG.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub svg: String,
    /// The PNG file's bytes.
    pub png: Vec<u8>,
}

impl Chart {
    /// Lines of (x, y) points. Accuracies get their own 0–1 axis (see [`crate::plot::layout`]).
    pub fn lines(lines: &[Series], title: &str, x_label: &str) -> Result<Chart> {
        Ok(Chart {
            title: title.to_string(),
            svg: line_chart_svg(lines, title, x_label)?,
            png: line_chart_png(lines, title, x_label)?,
        })
    }

    /// Metrics of a run against the step; keys the run did not log are left out.
    pub fn metrics(history: &[Metrics], keys: &[&str], title: &str) -> Result<Chart> {
        Self::lines(&metric_lines(history, keys), title, crate::metrics::keys::STEP)
    }

    /// Write the SVG to `path` and the PNG next to it (`path` with the extension `.png`), atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::plot::save_both(path.as_ref(), &self.svg, &self.png)
    }

    /// evcxr calls this when a cell evaluates to a `Chart`: the PNG, base64-encoded.
    pub fn evcxr_display(&self) {
        display(
            "image/png",
            &base64::engine::general_purpose::STANDARD.encode(&self.png),
        );
    }
}

impl std::fmt::Display for Chart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[chart: {}]", self.title)
    }
}

/// A table: HTML in a notebook, aligned text elsewhere.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Table {
    pub fn new<S: ToString>(headers: &[S]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: vec![],
        }
    }

    pub fn row<S: ToString>(mut self, cells: &[S]) -> Self {
        self.rows.push(cells.iter().map(|c| c.to_string()).collect());
        self
    }

    pub fn push<S: ToString>(&mut self, cells: &[S]) {
        self.rows.push(cells.iter().map(|c| c.to_string()).collect());
    }

    pub fn to_html(&self) -> String {
        let mut s = String::from("<table><thead><tr>");
        for h in &self.headers {
            let _ = write!(s, "<th style=\"text-align:left\">{}</th>", escape(h));
        }
        s.push_str("</tr></thead><tbody>");
        for r in &self.rows {
            s.push_str("<tr>");
            for c in r {
                let _ = write!(
                    s,
                    "<td style=\"text-align:left\">{}</td>",
                    escape(c).replace('\n', "<br>")
                );
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>");
        s
    }

    /// A GitHub-flavoured Markdown table (`|` in cells escaped, line breaks as `<br>`).
    pub fn to_markdown(&self) -> String {
        let cell = |c: &String| c.replace('|', "\\|").replace('\n', "<br>");
        let mut s = format!(
            "| {} |\n|",
            self.headers.iter().map(cell).collect::<Vec<_>>().join(" | ")
        );
        s.push_str(&"---|".repeat(self.headers.len()));
        s.push('\n');
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.iter().map(cell).collect::<Vec<_>>().join(" | "));
        }
        s
    }

    /// evcxr calls this when a cell evaluates to a `Table`.
    pub fn evcxr_display(&self) {
        display("text/html", &self.to_html());
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.headers.join(" | "))?;
        for r in &self.rows {
            writeln!(f, "{}", r.join(" | "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_escape_html_and_charts_are_svg_and_png() {
        let t = Table::new(&["文", "log p"]).row(&["<ねこ>", "-1.5"]);
        assert_eq!(
            t.to_html(),
            "<table><thead><tr><th style=\"text-align:left\">文</th><th style=\"text-align:left\">log p</th></tr>\
             </thead><tbody><tr><td style=\"text-align:left\">&lt;ねこ&gt;</td><td style=\"text-align:left\">-1.5</td>\
             </tr></tbody></table>"
        );
        assert_eq!(
            Table::new(&["a", "b"]).row(&["x|y", "1\n2"]).to_markdown(),
            "| a | b |\n|---|---|\n| x\\|y | 1<br>2 |\n"
        );
        let mut m = Metrics::new();
        m.insert("step".into(), 1.0);
        m.insert("loss".into(), 2.0);
        let c = Chart::metrics(&[m], &["loss", "absent"], "loss").unwrap();
        assert!(c.svg.starts_with("<svg") && c.to_string() == "[chart: loss]");
        assert!(c.png.starts_with(b"\x89PNG"));
    }
}
