//! PNG charts: plotters' bitmap backend for the lines, and text drawn with ab_glyph from the chart font
//! ([`super::font`]), so Japanese titles render wherever a Japanese font file is present.
use ab_glyph::{Font, FontVec, PxScale, ScaleFont};
use plotters::prelude::*;
use plotters_backend::{
    text_anchor::{HPos, VPos},
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};

use crate::{Error, Result};

/// plotters' bitmap backend, with `draw_text` and `estimate_text_size` done by one ab_glyph font (no text when
/// there is none; the layout then reserves space as if there were).
pub struct GlyphBackend<'a> {
    inner: BitMapBackend<'a>,
    font: Option<&'a FontVec>,
}

type BitmapError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

impl<'a> GlyphBackend<'a> {
    pub fn new(buf: &'a mut [u8], size: (u32, u32), font: Option<&'a FontVec>) -> Self {
        GlyphBackend {
            inner: BitMapBackend::with_buffer(buf, size),
            font,
        }
    }

    /// Width, height and ascent in pixels of `text` at `size` px.
    fn measure(&self, text: &str, size: f64) -> (f32, f32, f32) {
        let Some(font) = self.font else {
            let em = size as f32;
            return (em * 0.55 * text.chars().count() as f32, em, em * 0.8);
        };
        let f = font.as_scaled(PxScale::from(size as f32));
        let mut width = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                width += f.kern(p, id);
            }
            width += f.h_advance(id);
            prev = Some(id);
        }
        (width, f.ascent() - f.descent(), f.ascent())
    }
}

impl<'a> DrawingBackend for GlyphBackend<'a> {
    type ErrorType = BitmapError;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }
    fn ensure_prepared(&mut self) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.present()
    }
    fn draw_pixel(
        &mut self,
        p: BackendCoord,
        c: BackendColor,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.draw_pixel(p, c)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.draw_rect(a, b, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.inner.fill_polygon(vert, style)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> std::result::Result<(u32, u32), DrawingErrorKind<BitmapError>> {
        let (w, h, _) = self.measure(text, style.size());
        Ok((w.ceil() as u32, h.ceil() as u32))
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        let (Some(font), color) = (self.font, style.color()) else {
            return Ok(());
        };
        if color.alpha == 0.0 {
            return Ok(());
        }
        let (width, height, ascent) = self.measure(text, style.size());
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -width / 2.0,
            HPos::Right => -width,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0.0,
            VPos::Center => -height / 2.0,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let f = font.as_scaled(PxScale::from(style.size() as f32));
        let mut caret = 0.0;
        let mut prev = None;
        let mut pixels = Vec::new();
        for c in text.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                caret += f.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(f.scale(), ab_glyph::point(caret + dx, ascent + dy));
            caret += f.h_advance(id);
            if let Some(outline) = f.outline_glyph(glyph) {
                let b = outline.px_bounds();
                outline.draw(|x, y, cov| pixels.push((x as i32 + b.min.x as i32, y as i32 + b.min.y as i32, cov)));
            }
        }
        for (x, y, cov) in pixels {
            let (tx, ty) = trans.transform(x, y);
            let c = BackendColor {
                alpha: color.alpha * cov.clamp(0.0, 1.0) as f64,
                rgb: color.rgb,
            };
            self.inner.draw_pixel((pos.0 + tx, pos.1 + ty), c)?;
        }
        Ok(())
    }
}

/// Encode an RGB buffer as PNG.
pub fn encode(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let err = |e: png::EncodingError| Error::msg(format!("PNG encoding: {e}"));
        let mut writer = enc.write_header().map_err(err)?;
        writer.write_image_data(rgb).map_err(err)?;
    }
    Ok(out)
}
