/*
 * sheet.c - electronic film sheets (sheet.h). A sheet is drawn in points
 * (1/72 in) whatever the output: a PDF page is in points already, and the
 * PNG's image surface is scaled by dpi/72, so one drawing serves both.
 * Each cell's picture is rendered (pixel/render.h, PS3.3 C.11) at the
 * cell's size in device pixels and painted at that scale, so the PDF
 * carries the resolution asked for and no more; cairo writes a grey
 * picture as a DeviceGray image.
 *
 * Corner annotations follow the layout of film printers and viewers:
 * patient top-left, institution and exam top-right, window and slice
 * bottom-left, zoom and scale bottom-right. Text is set by pango in
 * PDF_FONT_FAMILY so that Chinese names print.
 */
#include "film/sheet.h"

#include <cairo-pdf.h>
#include <cairo.h>
#include <math.h>
#include <pango/pangocairo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dataset.h"
#include "dicom/tag.h"
#include "film/pdf.h"
#include "pixel/pixel.h"
#include "pixel/render.h"

#define FAIL(err, st, ...) cp_error_set((err), (st), CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, \
                                        __VA_ARGS__)

/* The frame of a sheet, in points: margins, the header and footer bands, the cell gap. */
#define SHEET_MARGIN 9.0
#define SHEET_HEADER 16.0
#define SHEET_FOOTER 13.0
#define SHEET_GAP 1.5

#define DEFAULT_TITLE "Electronic film"

/* JPEG quality of a PDF's pictures: a viewing copy, without visible loss. */
#define SHEET_JPEG_QUALITY 92

static const sheet_size sizes[] = {
    { "8x10in", 8.0, 10.0 },
    { "10x12in", 10.0, 12.0 },
    { "11x14in", 11.0, 14.0 },
    { "14x14in", 14.0, 14.0 },
    { "14x17in", 14.0, 17.0 },
    { "A4", 210.0 / 25.4, 297.0 / 25.4 },
    { "A3", 297.0 / 25.4, 420.0 / 25.4 },
};

/* The grids printers offer, smallest first (rows, columns). */
static const unsigned grids[][2] = {
    { 1, 1 }, { 2, 2 }, { 3, 3 }, { 3, 4 }, { 4, 5 }, { 5, 6 },
};

typedef struct preset {
    const char *name;
    double center;
    double width;
} preset;

static const preset ct_presets[] = {
    { "lung", -600, 1500 },
    { "mediastinum", 40, 400 },
    { "bone", 300, 1500 },
    { "brain", 40, 80 },
    { "abdomen", 40, 350 },
};

/* --- sizes, grids and presets --------------------------------------------------------- */

bool sheet_size_find(const char *text, sheet_size *out)
{
    size_t n = text != NULL ? strlen(text) : 0;

    for (size_t i = 0; n > 0 && i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = strlen(sizes[i].name);
        bool inches = len > 2 && strcmp(sizes[i].name + len - 2, "in") == 0;

        if (strcasecmp(text, sizes[i].name) == 0 ||
            (inches && n == len - 2 && strncasecmp(text, sizes[i].name, n) == 0)) {
            *out = sizes[i];
            return true;
        }
    }
    return false;
}

bool sheet_layout_parse(const char *text, unsigned *rows, unsigned *cols)
{
    for (size_t i = 0; text != NULL && i < sizeof(grids) / sizeof(grids[0]); i++) {
        char name[8];

        snprintf(name, sizeof(name), "%ux%u", grids[i][0], grids[i][1]);
        if (strcasecmp(text, name) == 0) {
            *rows = grids[i][0];
            *cols = grids[i][1];
            return true;
        }
    }
    return false;
}

void sheet_layout_auto(size_t count, bool landscape, unsigned *rows, unsigned *cols)
{
    size_t n = sizeof(grids) / sizeof(grids[0]);
    size_t i = 0;

    while (i + 1 < n && (size_t)grids[i][0] * grids[i][1] < count)
        i++;
    /* The grid's longer side goes along the sheet's. */
    *rows = landscape ? grids[i][0] : grids[i][1];
    *cols = landscape ? grids[i][1] : grids[i][0];
}

bool sheet_preset_find(const char *name, const char *modality, sheet_window *out, bool *known)
{
    *known = false;
    if (name == NULL || name[0] == '\0' || strcasecmp(name, "default") == 0)
        return true;
    if (modality == NULL || strcasecmp(modality, "CT") != 0)
        return false;
    for (size_t i = 0; i < sizeof(ct_presets) / sizeof(ct_presets[0]); i++) {
        if (strcasecmp(name, ct_presets[i].name) == 0) {
            out->center = ct_presets[i].center;
            out->width = ct_presets[i].width;
            *known = true;
            return true;
        }
    }
    return false;
}

/* The page in points, portrait or landscape. */
static void page_points(const sheet_options *o, double *w, double *h)
{
    double a = o->size.width_in * 72.0, b = o->size.height_in * 72.0;

    *w = o->landscape ? b : a;
    *h = o->landscape ? a : b;
}

static unsigned dpi_of(const sheet_options *o)
{
    return o->dpi != 0 ? o->dpi : SHEET_DPI_SCREEN;
}

static void grid_of(const sheet_options *o, unsigned *rows, unsigned *cols)
{
    *rows = o->rows != 0 ? o->rows : 4;
    *cols = o->cols != 0 ? o->cols : 5;
}

static bool options_ok(const sheet_options *o)
{
    unsigned dpi = dpi_of(o), rows, cols;
    double longest = fmax(o->size.width_in, o->size.height_in);

    grid_of(o, &rows, &cols);
    return o->size.width_in > 1.0 && o->size.height_in > 1.0 && dpi >= SHEET_DPI_MIN &&
           dpi <= SHEET_DPI_MAX && rows <= SHEET_GRID_MAX && cols <= SHEET_GRID_MAX &&
           longest * dpi <= SHEET_SIDE_MAX;
}

bool sheet_pixels(const sheet_options *o, uint32_t *width, uint32_t *height)
{
    double w, h;

    if (!options_ok(o))
        return false;
    page_points(o, &w, &h);
    *width = (uint32_t)lround(w * dpi_of(o) / 72.0);
    *height = (uint32_t)lround(h * dpi_of(o) / 72.0);
    return true;
}

/* A cell's box in points, and the room its picture gets inside the gap. */
static void cell_points(const sheet_options *o, double *cw, double *ch)
{
    unsigned rows, cols;
    double w, h;

    grid_of(o, &rows, &cols);
    page_points(o, &w, &h);
    *cw = (w - 2 * SHEET_MARGIN) / cols;
    *ch = (h - 2 * SHEET_MARGIN - SHEET_HEADER - SHEET_FOOTER) / rows;
}

bool sheet_cell_pixels(const sheet_options *o, uint32_t *width, uint32_t *height)
{
    double cw, ch, k = dpi_of(o) / 72.0;

    if (!options_ok(o))
        return false;
    cell_points(o, &cw, &ch);
    *width = (uint32_t)floor((cw - 2 * SHEET_GAP) * k);
    *height = (uint32_t)floor((ch - 2 * SHEET_GAP) * k);
    return *width > 0 && *height > 0;
}

size_t sheet_pick(size_t count, size_t cells, size_t *picks)
{
    if (count <= cells) {
        for (size_t i = 0; i < count; i++)
            picks[i] = i;
        return count;
    }
    if (cells == 1) {
        picks[0] = count / 2;
        return 1;
    }
    for (size_t i = 0; i < cells; i++)
        picks[i] = (size_t)llround((double)i * (double)(count - 1) / (double)(cells - 1));
    return cells;
}

/* --- loading one image ------------------------------------------------------------------ */

void sheet_image_clear(sheet_image *img)
{
    cp_free(img->data);
    memset(img, 0, sizeof(*img));
}

/* The first value of a DS element as a number; false when absent or not a number. */
static bool ds_number(const dcm_dataset *ds, uint32_t tag, double *out)
{
    char text[72];
    char *end = NULL;

    if (dcm_dataset_get_string(ds, tag, text, sizeof(text)) != CP_OK)
        return false;
    *out = strtod(text, &end);
    return end != text && isfinite(*out);
}

/* What the data set says about slice, spacing and its own window. */
static void read_facts(const dcm_dataset *ds, const sheet_window *window, sheet_image *out)
{
    double v;

    if (ds_number(ds, DCM_TAG(0x0018, 0x0050), &v) && v > 0)
        out->slice_thickness = v;
    out->has_location = ds_number(ds, DCM_TAG(0x0020, 0x1041), &out->slice_location);
    if (ds_number(ds, DCM_TAG(0x0028, 0x0030), &v) && v > 0)
        out->pixel_spacing = v;
    else if (ds_number(ds, DCM_TAG(0x0018, 0x1164), &v) && v > 0)
        out->pixel_spacing = v;
    if (window != NULL) {
        out->has_window = true;
        out->window = *window;
    } else if (ds_number(ds, DCM_TAG(0x0028, 0x1050), &out->window.center) &&
               ds_number(ds, DCM_TAG(0x0028, 0x1051), &out->window.width)) {
        out->has_window = true;
    }
}

cp_status sheet_image_load(dcm_source *src, const sheet_window *window, uint32_t width,
                           uint32_t height, sheet_image *out, cp_error *err)
{
    dcm_file *file = NULL;
    dcm_read_options ro;
    px_image img;
    bool img_ready = false;
    px_presentation *pres = NULL;
    px_render_params params;
    px_frame fr;
    px_picture pic;
    cp_buf bytes = CP_BUF_INIT;
    const dcm_dataset *ds;
    cp_status st;

    memset(out, 0, sizeof(*out));
    memset(&fr, 0, sizeof(fr));
    memset(&pic, 0, sizeof(pic));
    memset(&ro, 0, sizeof(ro));
    st = dcm_file_read(src, &ro, &file, err);
    if (st != CP_OK)
        goto done;
    ds = file->dataset;
    if (dcm_dataset_get(ds, DCM_TAG_PIXEL_DATA) == NULL &&
        dcm_dataset_get(ds, DCM_TAG_FLOAT_PIXEL_DATA) == NULL &&
        dcm_dataset_get(ds, DCM_TAG_DOUBLE_FLOAT_PIXEL_DATA) == NULL) {
        st = FAIL(err, CP_ERR_UNSUPPORTED, "sheet: the instance holds no pixel data");
        goto done;
    }
    st = px_image_init(&img, file, src, err);
    if (st != CP_OK)
        goto done;
    img_ready = true;
    if (!px_can_decode(img.transfer_syntax)) {
        st = FAIL(err, CP_ERR_UNSUPPORTED, "sheet: no decoder for the transfer syntax");
        goto done;
    }
    st = px_frame_bytes(&img, src, 0, &bytes, err);
    if (st == CP_OK)
        st = px_decode_frame(&img, bytes.data, bytes.len, &fr, err);
    if (st == CP_OK)
        st = px_presentation_create(ds, src, 0, &pres, err);
    if (st != CP_OK)
        goto done;

    memset(&params, 0, sizeof(params));
    params.voi_function = PX_VOI_LINEAR;
    params.viewport_width = width;
    params.viewport_height = height;
    if (window != NULL) {
        params.has_window = true;
        params.window_center = window->center;
        params.window_width = window->width;
    }
    st = px_render(&img, pres, &fr, &params, &pic, err);
    if (st != CP_OK)
        goto done;

    out->width = pic.width;
    out->height = pic.height;
    out->channels = pic.channels;
    out->data = pic.data;
    pic.data = NULL;
    out->source_columns = fr.columns;
    out->source_rows = fr.rows;
    read_facts(ds, window, out);

done:
    px_picture_clear(&pic);
    px_frame_clear(&fr);
    px_presentation_destroy(pres);
    cp_buf_free(&bytes);
    if (img_ready)
        px_image_clear(&img);
    dcm_file_destroy(file);
    return st;
}

/* --- the writer --------------------------------------------------------------------------- */

struct sheet_writer {
    sheet_options o;
    sheet_format format;
    unsigned want;                      /* the PNG's sheet */
    cp_buf *out;
    size_t start;                       /* out's length when the writer began */
    cp_status sink_st;
    cairo_surface_t *surf;
    cairo_t *cr;                        /* NULL while a PNG's other sheets pass */
    double page_w, page_h;              /* points */
    unsigned rows, cols;
    unsigned page;                      /* the sheet being drawn, 1-based; 0 before any */
    unsigned cell;                      /* cells used on it */
    bool pending_break;
    bool png_done;
    cp_buf png;
};

static cairo_status_t write_sink(void *closure, const unsigned char *data, unsigned int len)
{
    sheet_writer *w = closure;

    if (w->sink_st == CP_OK && w->out->len - w->start + len > PDF_FILE_MAX)
        w->sink_st = CP_ERR_LIMIT;
    if (w->sink_st == CP_OK)
        w->sink_st = cp_buf_append(w->out, data, len);
    return w->sink_st == CP_OK ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

static cairo_status_t png_sink(void *closure, const unsigned char *data, unsigned int len)
{
    return cp_buf_append(closure, data, len) == CP_OK ? CAIRO_STATUS_SUCCESS
                                                      : CAIRO_STATUS_WRITE_ERROR;
}

cp_status sheet_writer_create(const sheet_options *o, sheet_format format, unsigned page,
                              cp_buf *out, sheet_writer **wp, cp_error *err)
{
    sheet_writer *w;

    *wp = NULL;
    if (o == NULL || out == NULL || !options_ok(o) ||
        (format == SHEET_PNG && (page == 0 || page > SHEET_PAGES_MAX)))
        return FAIL(err, CP_ERR_INVALID, "sheet: size, resolution, grid or page out of range");
    w = cp_calloc(1, sizeof(*w));
    if (w == NULL)
        return FAIL(err, CP_ERR_NOMEM, "sheet: writer");
    w->o = *o;
    w->format = format;
    w->want = page;
    w->out = out;
    w->start = out->len;
    cp_buf_init(&w->png);
    page_points(o, &w->page_w, &w->page_h);
    grid_of(o, &w->rows, &w->cols);
    if (format == SHEET_PDF) {
        w->surf = cairo_pdf_surface_create_for_stream(write_sink, w, w->page_w, w->page_h);
        cairo_pdf_surface_set_metadata(w->surf, CAIRO_PDF_METADATA_TITLE,
                                       o->title != NULL ? o->title : DEFAULT_TITLE);
        cairo_pdf_surface_set_metadata(w->surf, CAIRO_PDF_METADATA_CREATOR, "cloudpacs");
        w->cr = cairo_create(w->surf);
        if (cairo_status(w->cr) != CAIRO_STATUS_SUCCESS) {
            sheet_writer_destroy(w);
            return FAIL(err, CP_ERR_NOMEM, "sheet: the PDF surface");
        }
    }
    *wp = w;
    return CP_OK;
}

static unsigned next_page(const sheet_writer *w)
{
    if (w->page == 0)
        return 1;
    return (w->cell == w->rows * w->cols || w->pending_break) ? w->page + 1 : w->page;
}

bool sheet_writer_wants(const sheet_writer *w)
{
    unsigned p = next_page(w);

    return p <= SHEET_PAGES_MAX && (w->format == SHEET_PDF || p == w->want);
}

/* A text block of lines at (x, y): align 0 left from x, 1 right to x; bottom: y is its foot. */
static void text_block(cairo_t *cr, double x, double y, double width, double size, int align,
                       bool bottom, const char *text)
{
    PangoLayout *layout;
    PangoFontDescription *desc;
    int lw, lh;

    if (text == NULL || text[0] == '\0')
        return;
    layout = pango_cairo_create_layout(cr);
    desc = pango_font_description_new();
    pango_font_description_set_family(desc, PDF_FONT_FAMILY);
    pango_font_description_set_absolute_size(desc, size * PANGO_SCALE);
    pango_layout_set_font_description(layout, desc);
    pango_font_description_free(desc);
    pango_layout_set_width(layout, (int)(width * PANGO_SCALE));
    pango_layout_set_ellipsize(layout, PANGO_ELLIPSIZE_END);
    pango_layout_set_alignment(layout, align ? PANGO_ALIGN_RIGHT : PANGO_ALIGN_LEFT);
    pango_layout_set_text(layout, text, -1);
    pango_layout_get_size(layout, &lw, &lh);
    (void)lw;
    cairo_move_to(cr, align ? x - width : x, bottom ? y - (double)lh / PANGO_SCALE : y);
    pango_cairo_show_layout(cr, layout);
    g_object_unref(layout);
}

static void draw_frame(sheet_writer *w)
{
    cairo_t *cr = w->cr;
    double inner = w->page_w - 2 * SHEET_MARGIN;
    char line[160];

    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_paint(cr);
    cairo_set_source_rgb(cr, 1, 1, 1);
    text_block(cr, SHEET_MARGIN, SHEET_MARGIN, inner * 0.7, 9.0, 0, false,
               w->o.institution);
    snprintf(line, sizeof(line), "%s", w->o.title != NULL ? w->o.title : DEFAULT_TITLE);
    text_block(cr, w->page_w - SHEET_MARGIN, SHEET_MARGIN, inner * 0.3, 9.0, 1, false, line);
    snprintf(line, sizeof(line), "%s %s  %ux%u  %u dpi  sheet %u", w->o.size.name,
             w->o.landscape ? "landscape" : "portrait", w->rows, w->cols, dpi_of(&w->o),
             w->page);
    text_block(cr, SHEET_MARGIN, w->page_h - SHEET_MARGIN, inner, 7.0, 0, true, line);
}

/* Ends the sheet being drawn: a PDF page is shown, a PNG encoded. */
static void end_page(sheet_writer *w)
{
    if (w->cr == NULL || w->page == 0)
        return;
    if (w->format == SHEET_PDF) {
        cairo_show_page(w->cr);
        return;
    }
    cairo_destroy(w->cr);
    w->cr = NULL;
    cairo_surface_flush(w->surf);
    if (cairo_surface_write_to_png_stream(w->surf, png_sink, &w->png) != CAIRO_STATUS_SUCCESS)
        w->sink_st = CP_ERR_NOMEM;
    else
        w->png_done = true;
    cairo_surface_destroy(w->surf);
    w->surf = NULL;
}

static cp_status begin_page(sheet_writer *w)
{
    uint32_t pw, ph;
    double k = dpi_of(&w->o) / 72.0;

    w->page++;
    w->cell = 0;
    w->pending_break = false;
    if (w->format == SHEET_PNG) {
        if (w->page != w->want)
            return CP_OK;
        sheet_pixels(&w->o, &pw, &ph);
        w->surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)pw, (int)ph);
        w->cr = cairo_create(w->surf);
        if (cairo_status(w->cr) != CAIRO_STATUS_SUCCESS)
            return CP_ERR_NOMEM;
        cairo_scale(w->cr, k, k);
    }
    draw_frame(w);
    return CP_OK;
}

static void format_date(const char *da, const char *tm, char *out, size_t cap)
{
    size_t n = da != NULL ? strlen(da) : 0;
    size_t t = tm != NULL ? strlen(tm) : 0;

    out[0] = '\0';
    if (n == 8)
        snprintf(out, cap, "%.4s-%.2s-%.2s", da, da + 4, da + 6);
    else if (n > 0)
        snprintf(out, cap, "%s", da);
    if (t >= 4) {
        size_t used = strlen(out);

        snprintf(out + used, cap - used, "%s%.2s:%.2s", used ? " " : "", tm, tm + 2);
    }
}

/* "F 045Y" or "F 1980-05-17": the sex and the age or the birth date. */
static void format_sex_age(const sheet_notes *n, char *out, size_t cap)
{
    const char *age = n->age != NULL ? n->age : "";
    const char *sex = n->sex != NULL ? n->sex : "";

    if (strlen(age) == 8 && strspn(age, "0123456789") == 8)
        snprintf(out, cap, "%s%s%.4s-%.2s-%.2s", sex, sex[0] ? " " : "", age, age + 4,
                 age + 6);
    else
        snprintf(out, cap, "%s%s%s", sex, sex[0] && age[0] ? " " : "", age);
}

static void draw_notes(cairo_t *cr, double x, double y, double cw, double ch,
                       const sheet_image *img, const sheet_notes *n, double shown_w)
{
    double size = fmin(fmax(fmin(cw, ch) / 26.0, 5.0), 11.0);
    double pad = size * 0.4, half = cw / 2 - pad;
    char tl[600], tr[600], bl[160], br[160], sexage[80], when[40], num[64];

    if (n == NULL)
        return;
    format_sex_age(n, sexage, sizeof(sexage));
    snprintf(tl, sizeof(tl), "%s\n%s\n%s", n->patient_name ? n->patient_name : "",
             n->patient_id ? n->patient_id : "", sexage);
    format_date(n->study_date, n->study_time, when, sizeof(when));
    num[0] = '\0';
    if (n->series_number != INT64_MIN)
        snprintf(num, sizeof(num), "Se: %lld", (long long)n->series_number);
    if (n->instance_number != INT64_MIN)
        snprintf(num + strlen(num), sizeof(num) - strlen(num), "%sIm: %lld",
                 num[0] ? "  " : "", (long long)n->instance_number);
    snprintf(tr, sizeof(tr), "%s\n%s\n%s\n%s", n->institution ? n->institution : "", when,
             n->modality ? n->modality : "", num);

    bl[0] = br[0] = '\0';
    if (img != NULL) {
        size_t used = 0;

        if (img->has_window)
            used = (size_t)snprintf(bl, sizeof(bl), "C: %.0f  W: %.0f", img->window.center,
                                    img->window.width);
        if (img->slice_thickness > 0)
            used += (size_t)snprintf(bl + used, sizeof(bl) - used, "%sThk: %.1f mm",
                                     used ? "\n" : "", img->slice_thickness);
        if (img->has_location && used < sizeof(bl))
            snprintf(bl + used, sizeof(bl) - used, "%sLoc: %.1f mm", used ? "\n" : "",
                     img->slice_location);
        if (img->source_columns > 0) {
            /* Zoom: printed size over the picture's own size at the sheet's resolution. */
            used = (size_t)snprintf(br, sizeof(br), "Zoom: %.2f",
                                    (double)img->width / img->source_columns);
            if (img->pixel_spacing > 0) {
                double real_mm = img->source_columns * img->pixel_spacing;
                double printed_mm = shown_w / 72.0 * 25.4;

                snprintf(br + used, sizeof(br) - used, "\nScale 1:%.2f",
                         real_mm / printed_mm);
            }
        }
    }
    cairo_set_source_rgb(cr, 1, 1, 1);
    text_block(cr, x + pad, y + pad, half, size, 0, false, tl);
    text_block(cr, x + cw - pad, y + pad, half, size, 1, false, tr);
    text_block(cr, x + pad, y + ch - pad, half, size, 0, true, bl);
    text_block(cr, x + cw - pad, y + ch - pad, half, size, 1, true, br);
}

/*
 * A ruler of 5 cm (1 cm when that is too long) on the image's right edge,
 * when the pixel spacing says how long a printed point is.
 */
static void draw_ruler(cairo_t *cr, double x, double y, double h, double pt_per_mm)
{
    double mm = pt_per_mm * 50 <= h * 0.6 ? 50 : 10;
    double len = pt_per_mm * mm;

    if (len > h * 0.6 || len < 6)
        return;
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_set_line_width(cr, 0.6);
    cairo_move_to(cr, x, y + (h - len) / 2);
    cairo_line_to(cr, x, y + (h + len) / 2);
    for (int i = 0; i <= (int)mm / 10; i++) {
        double t = y + (h - len) / 2 + i * pt_per_mm * 10;

        cairo_move_to(cr, x, t);
        cairo_line_to(cr, x - 3, t);
    }
    cairo_stroke(cr);
}

static void free_jpeg(void *data)
{
    cp_buf *b = data;

    cp_buf_free(b);
    cp_free(b);
}

/* The picture as a cairo RGB24 surface (grey spread to the three channels). */
static cairo_surface_t *picture_surface(const sheet_image *img)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)img->width,
                                                    (int)img->height);
    unsigned char *base;
    int stride;

    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS)
        return s;
    cairo_surface_flush(s);
    base = cairo_image_surface_get_data(s);
    stride = cairo_image_surface_get_stride(s);
    for (uint32_t yy = 0; yy < img->height; yy++) {
        uint32_t *row = (uint32_t *)(void *)(base + (size_t)yy * (size_t)stride);
        const uint8_t *src = img->data + (size_t)yy * img->width * img->channels;

        for (uint32_t xx = 0; xx < img->width; xx++) {
            const uint8_t *p = src + (size_t)xx * img->channels;
            uint32_t r = p[0], g = img->channels == 3 ? p[1] : p[0];
            uint32_t b = img->channels == 3 ? p[2] : p[0];

            row[xx] = (r << 16) | (g << 8) | b;
        }
    }
    cairo_surface_mark_dirty(s);
    return s;
}

/*
 * A PDF page takes the picture as its JPEG (cairo embeds mime data as it
 * is): a sheet of twenty pictures stays a few megabytes. Without it (the
 * encoder failed) cairo compresses the pixels losslessly.
 */
static void attach_jpeg(cairo_surface_t *surf, const sheet_image *img)
{
    px_picture pic = { img->width, img->height, img->channels, img->data };
    cp_buf *jpeg = cp_calloc(1, sizeof(*jpeg));

    if (jpeg == NULL)
        return;
    cp_buf_init(jpeg);
    if (px_encode_jpeg(&pic, SHEET_JPEG_QUALITY, jpeg, NULL) != CP_OK ||
        cairo_surface_set_mime_data(surf, CAIRO_MIME_TYPE_JPEG, jpeg->data, jpeg->len,
                                    free_jpeg, jpeg) != CAIRO_STATUS_SUCCESS)
        free_jpeg(jpeg);
}

static cp_status draw_cell(sheet_writer *w, const sheet_image *img, const sheet_notes *n)
{
    cairo_t *cr = w->cr;
    double cw, ch, x, y, shown_w = 0;
    unsigned r = w->cell / w->cols, c = w->cell % w->cols;

    cell_points(&w->o, &cw, &ch);
    x = SHEET_MARGIN + c * cw;
    y = SHEET_MARGIN + SHEET_HEADER + r * ch;
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    cairo_set_line_width(cr, 0.5);
    cairo_rectangle(cr, x + 0.25, y + 0.25, cw - 0.5, ch - 0.5);
    cairo_stroke(cr);

    if (img != NULL && img->data != NULL && img->width > 0 && img->height > 0) {
        double bw = cw - 2 * SHEET_GAP, bh = ch - 2 * SHEET_GAP;
        double s = fmin(bw / img->width, bh / img->height);
        double iw = img->width * s, ih = img->height * s;
        double ix = x + SHEET_GAP + (bw - iw) / 2, iy = y + SHEET_GAP + (bh - ih) / 2;
        cairo_surface_t *pic = picture_surface(img);

        if (cairo_surface_status(pic) != CAIRO_STATUS_SUCCESS) {
            cairo_surface_destroy(pic);
            return CP_ERR_NOMEM;
        }
        if (w->format == SHEET_PDF)
            attach_jpeg(pic, img);
        cairo_save(cr);
        cairo_rectangle(cr, ix, iy, iw, ih);
        cairo_clip(cr);
        cairo_translate(cr, ix, iy);
        cairo_scale(cr, s, s);
        cairo_set_source_surface(cr, pic, 0, 0);
        cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_GOOD);
        cairo_paint(cr);
        cairo_restore(cr);
        cairo_surface_destroy(pic);
        shown_w = iw;
        if (img->pixel_spacing > 0 && img->source_columns > 0)
            draw_ruler(cr, ix + iw - 2, iy, ih, iw / (img->source_columns * img->pixel_spacing));
    }
    draw_notes(cr, x, y, cw, ch, img, n, shown_w);
    return CP_OK;
}

cp_status sheet_writer_add(sheet_writer *w, const sheet_image *img, const sheet_notes *n,
                           cp_error *err)
{
    cp_status st;

    if (next_page(w) != w->page) {
        if (next_page(w) > SHEET_PAGES_MAX)
            return FAIL(err, CP_ERR_LIMIT, "sheet: more than %d sheets", SHEET_PAGES_MAX);
        end_page(w);
        st = begin_page(w);
        if (st != CP_OK)
            return FAIL(err, st, "sheet: the sheet's surface");
    }
    if (w->cr != NULL) {
        st = draw_cell(w, img, n);
        if (st != CP_OK)
            return FAIL(err, st, "sheet: the cell's picture");
    }
    w->cell++;
    return CP_OK;
}

void sheet_writer_break(sheet_writer *w)
{
    if (w->cell > 0)
        w->pending_break = true;
}

cp_status sheet_writer_finish(sheet_writer *w, unsigned *pages, cp_error *err)
{
    cp_status st = CP_OK;

    /* A document without images still has its one empty sheet. */
    if (w->page == 0 && begin_page(w) != CP_OK)
        st = CP_ERR_NOMEM;
    end_page(w);
    if (w->format == SHEET_PDF) {
        if (cairo_status(w->cr) != CAIRO_STATUS_SUCCESS && st == CP_OK)
            st = CP_ERR_IO;
        cairo_destroy(w->cr);
        w->cr = NULL;
        cairo_surface_finish(w->surf);
        if (cairo_surface_status(w->surf) != CAIRO_STATUS_SUCCESS && st == CP_OK)
            st = CP_ERR_IO;
        cairo_surface_destroy(w->surf);
        w->surf = NULL;
    }
    if (st == CP_OK)
        st = w->sink_st;
    if (st == CP_OK && w->format == SHEET_PNG) {
        if (!w->png_done)
            st = CP_ERR_NOT_FOUND;
        else
            st = cp_buf_append(w->out, w->png.data, w->png.len);
    }
    if (pages != NULL)
        *pages = w->page;
    if (st != CP_OK) {
        w->out->len = w->start;
        return FAIL(err, st, st == CP_ERR_NOT_FOUND ? "sheet: there is no such sheet"
                             : st == CP_ERR_LIMIT ? "sheet: the film is too large"
                                                  : "sheet: the film could not be written");
    }
    return CP_OK;
}

void sheet_writer_destroy(sheet_writer *w)
{
    if (w == NULL)
        return;
    if (w->cr != NULL)
        cairo_destroy(w->cr);
    if (w->surf != NULL) {
        /* An unfinished PDF must not reach out: its sink is cut off first. */
        w->sink_st = CP_ERR_STOPPED;
        cairo_surface_finish(w->surf);
        cairo_surface_destroy(w->surf);
        w->out->len = w->start;
    }
    cp_buf_free(&w->png);
    cp_free(w);
}
