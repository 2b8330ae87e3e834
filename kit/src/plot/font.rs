//! The font PNG charts draw their text with, found once per process.
//!
//! Order: `$KIT_FONT` (a `.ttf`/`.otf`/`.ttc` path), the Japanese font `kit fetch font` puts in kit's cache
//! ([`crate::hub::cjk_font_path`]), a few well-known system fonts with Japanese glyphs, then Latin system fonts
//! (DejaVu Sans, Liberation Sans, Helvetica, Arial). Text a font cannot draw falls back to its Latin part
//! ([`latin_fallback`]), with one note on stderr per process; with no font at all the PNG has no text. SVG charts
//! need none of this: the browser draws their text.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use ab_glyph::{Font, FontVec};

/// A loaded font and where it came from.
pub struct ChartFont {
    pub font: FontVec,
    pub path: PathBuf,
}

impl ChartFont {
    /// Load a font file (the first face of a collection).
    pub fn load(path: &Path) -> Option<ChartFont> {
        let bytes = std::fs::read(path).ok()?;
        let font = FontVec::try_from_vec_and_index(bytes, 0).ok()?;
        Some(ChartFont {
            font,
            path: path.to_path_buf(),
        })
    }

    /// Whether the font has a glyph for `c`.
    pub fn has_glyph(&self, c: char) -> bool {
        c.is_whitespace() || self.font.glyph_id(c).0 != 0
    }

    /// Whether every character of `text` has a glyph.
    pub fn covers(&self, text: &str) -> bool {
        text.chars().all(|c| self.has_glyph(c))
    }

    /// Whether the font has Japanese glyphs.
    pub fn has_japanese(&self) -> bool {
        self.covers("学習あア")
    }
}

const SYSTEM_JAPANESE: &[&str] = &[
    "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/ヒラギノ角ゴシック W3.ttc",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "C:\\Windows\\Fonts\\YuGothM.ttc",
    "C:\\Windows\\Fonts\\meiryo.ttc",
];

const SYSTEM_LATIN: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Helvetica.ttc",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The candidate font files, best first.
pub fn candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("KIT_FONT") {
        v.push(PathBuf::from(p));
    }
    v.push(crate::hub::cjk_font_path(&crate::hub::kit_home()));
    v.extend(SYSTEM_JAPANESE.iter().chain(SYSTEM_LATIN).map(PathBuf::from));
    v
}

/// The chart font of this process: the first candidate that loads (looked up once).
pub fn chart_font() -> Option<&'static ChartFont> {
    static FONT: OnceLock<Option<ChartFont>> = OnceLock::new();
    FONT.get_or_init(|| candidates().iter().find_map(|p| ChartFont::load(p)))
        .as_ref()
}

/// What a PNG shows for `text` when the font lacks some of its characters (`has_glyph` is false for them): the text
/// without them (brackets left empty and separators at the ends are dropped too), or `None` when nothing legible
/// remains.
pub fn latin_fallback(text: &str, has_glyph: impl Fn(char) -> bool) -> Option<String> {
    let kept: String = text.chars().map(|c| if has_glyph(c) { c } else { ' ' }).collect();
    let words: Vec<&str> = kept.split_whitespace().collect();
    let joined = words.join(" ");
    let trimmed = joined
        .replace("()", "")
        .replace("[]", "")
        .trim_matches(|c: char| !c.is_alphanumeric() && c != ')' && c != '(')
        .trim()
        .to_string();
    trimmed.chars().any(char::is_alphanumeric).then_some(trimmed)
}

static NOTED: AtomicBool = AtomicBool::new(false);

/// Say once per process that PNG text fell back to Latin (or was left out), and how to get a Japanese font.
pub fn note_missing_glyphs(font: Option<&ChartFont>) {
    if NOTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let what = match font {
        Some(f) => format!(
            "the font {} has no Japanese glyphs, so PNG charts show their Latin text only",
            f.path.display()
        ),
        None => "no font file was found, so PNG charts have no text".to_string(),
    };
    eprintln!(
        "kit: {what}. Run `kit fetch font` (or notebook 00) to get IPAexGothic, or set KIT_FONT to a .ttf/.otf file. \
         The SVG next to each PNG has the full text."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_fallback_keeps_what_a_latin_font_can_draw() {
        let latin = |c: char| c.is_ascii();
        assert_eq!(
            latin_fallback("学習曲線（loss, eval_loss）", latin).as_deref(),
            Some("loss, eval_loss")
        );
        assert_eq!(latin_fallback("報酬 (DPO)", latin).as_deref(), Some("(DPO)"));
        assert_eq!(latin_fallback("正解率 () ", latin), None);
        assert_eq!(latin_fallback("ステップ", latin), None);
        assert_eq!(latin_fallback("step", latin).as_deref(), Some("step"));
    }
}
