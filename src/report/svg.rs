//! A minimal SVG writer: only the elements the plots use. Styles live in one `<style>` block
//! keyed by class, so elements stay short and a reader (or a test) can tell a histogram bar from
//! a frame by its class.

/// The look of every class the plots use.
const STYLE: &str = "\
.bar,.swatch{fill:#4c72b0;fill-opacity:.6}\
.reference{fill:none;stroke:#222;stroke-width:1.2}\
.band{fill:#999;fill-opacity:.25}\
.truth{fill:none;stroke:#c44e52;stroke-width:1.5}\
.frame{fill:none;stroke:#444}\
.tick{stroke:#444}\
.train{fill:none;stroke:#4c72b0;stroke-width:1.5;stroke-linecap:round}\
.val{fill:none;stroke:#dd8452;stroke-width:1.5;stroke-linecap:round}\
.best{fill:#c44e52}\
.m0{fill:none;stroke:#4c72b0;stroke-width:2;stroke-linecap:round}\
.m1{fill:none;stroke:#dd8452;stroke-width:2;stroke-linecap:round}\
.m2{fill:none;stroke:#55a868;stroke-width:2;stroke-linecap:round}\
.m3{fill:none;stroke:#c44e52;stroke-width:2;stroke-linecap:round}\
.title{font-weight:bold}\
.note{fill:#888}";

/// An SVG document being written: elements are appended in drawing order.
pub struct Svg {
    width: f64,
    height: f64,
    body: String,
}

impl Svg {
    pub fn new(width: f64, height: f64) -> Svg {
        Svg { width, height, body: String::new() }
    }

    /// Widens the document to at least `width`, for content wider than the panels (a legend).
    pub fn widen(&mut self, width: f64) {
        self.width = self.width.max(width);
    }

    pub fn rect(&mut self, x: f64, y: f64, width: f64, height: f64, class: &str) {
        self.body.push_str(&format!(
            "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\n",
            num(x),
            num(y),
            num(width),
            num(height)
        ));
    }

    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, class: &str) {
        self.body.push_str(&format!(
            "<line class=\"{class}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\n",
            num(x1),
            num(y1),
            num(x2),
            num(y2)
        ));
    }

    pub fn polyline(&mut self, points: &[(f64, f64)], class: &str) {
        let points: Vec<String> =
            points.iter().map(|&(x, y)| format!("{},{}", num(x), num(y))).collect();
        self.body
            .push_str(&format!("<polyline class=\"{class}\" points=\"{}\"/>\n", points.join(" ")));
    }

    pub fn circle(&mut self, cx: f64, cy: f64, r: f64, class: &str) {
        self.body.push_str(&format!(
            "<circle class=\"{class}\" cx=\"{}\" cy=\"{}\" r=\"{}\"/>\n",
            num(cx),
            num(cy),
            num(r)
        ));
    }

    /// Text at `(x, y)` (the baseline); `anchor` is `start`, `middle` or `end`.
    pub fn text(&mut self, x: f64, y: f64, anchor: &str, class: &str, text: &str) {
        self.body.push_str(&format!(
            "<text class=\"{class}\" x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>\n",
            num(x),
            num(y),
            escape(text)
        ));
    }

    /// Opens a group; every `open` needs a `close`.
    pub fn open(&mut self, class: &str) {
        self.body.push_str(&format!("<g class=\"{class}\">\n"));
    }

    pub fn close(&mut self) {
        self.body.push_str("</g>\n");
    }

    /// The finished document, on a white background so it reads the same in dark viewers.
    pub fn finish(self) -> String {
        let (w, h) = (num(self.width), num(self.height));
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <style>{STYLE}</style>\n\
             <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n{}</svg>\n",
            self.body
        )
    }
}

/// A coordinate to a tenth of a pixel: finer is invisible and only makes files bigger.
fn num(v: f64) -> String {
    format!("{v:.1}")
}

/// Text content with XML's special characters escaped (column names are free-form).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
