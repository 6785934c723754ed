/*
 * pdf.c - the printable report (pdf.h): A4 pages drawn with cairo's PDF
 * surface, text laid out by pango (wrapped by word, or by character for
 * Chinese, and broken across pages line by line), the QR code (ISO/IEC
 * 18004, error correction M) drawn from libqrencode's modules as vector
 * rectangles; and the DICOM Encapsulated PDF instance (PS3.3 A.45.1:
 * Patient C.7.1.1, General Study C.7.2.1, Encapsulated Document Series
 * C.24.1, SC Equipment C.8.6.1, Encapsulated Document C.24.2, SOP Common
 * C.12.1) encoded element by element in Explicit VR Little Endian (PS3.5
 * 7.1.2), in ascending tag order, behind the writer's File Meta
 * Information (PS3.10 7.1).
 */
#include "film/pdf.h"

#include <cairo-pdf.h>
#include <cairo.h>
#include <errno.h>
#include <pango/pangocairo.h>
#include <qrencode.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "consult/sr.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom/uid.h"
#include "dicom/vr.h"
#include "dicom/writer.h"

#define FAIL(err, st, ...) cp_error_set((err), (st), CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, \
                                        __VA_ARGS__)

/* A4 in points, and the page's margins. */
#define PAGE_W 595.28
#define PAGE_H 841.89
#define MARGIN 48.0
#define FOOTER_H 28.0
#define QR_SIZE 104.0
#define QR_QUIET 4

#define DEFAULT_TITLE "影像诊断报告 / Imaging Report"

/* --- output ------------------------------------------------------------------------ */

typedef struct sink {
    cp_buf *out;
    size_t start;
    cp_status st;
} sink;

static cairo_status_t write_sink(void *closure, const unsigned char *data, unsigned int len)
{
    sink *k = closure;

    if (k->st == CP_OK && k->out->len - k->start + len > PDF_FILE_MAX)
        k->st = CP_ERR_LIMIT;
    if (k->st == CP_OK)
        k->st = cp_buf_append(k->out, data, len);
    return k->st == CP_OK ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

/* --- text helpers ------------------------------------------------------------------- */

static const char *nz(const char *s)
{
    return s != NULL ? s : "";
}

/* YYYYMMDD as YYYY-MM-DD (in out, 11 bytes); anything else as it is; "-" for none. */
static const char *format_date(const char *da, char out[11])
{
    size_t n = strlen(nz(da));
    bool digits = n == 8;

    for (size_t i = 0; digits && i < 8; i++)
        digits = da[i] >= '0' && da[i] <= '9';
    if (!digits)
        return n > 0 ? da : "-";
    snprintf(out, 11, "%.4s-%.2s-%.2s", da, da + 4, da + 6);
    return out;
}

static void format_time(int64_t us, char *out, size_t cap)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    if (us <= 0) {
        snprintf(out, cap, "-");
        return;
    }
    localtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%d %H:%M", &tm);
}

static const char *sex_text(const char *sex)
{
    if (sex == NULL || sex[0] == '\0')
        return "-";
    if (strcmp(sex, "F") == 0)
        return "女 F";
    if (strcmp(sex, "M") == 0)
        return "男 M";
    if (strcmp(sex, "O") == 0)
        return "其他 O";
    return sex;
}

static cp_status check_text(const char *t, cp_error *err)
{
    size_t lines = 0;
    size_t n;

    if (t == NULL)
        return CP_OK;
    n = strlen(t);
    if (n > PDF_TEXT_MAX)
        return FAIL(err, CP_ERR_LIMIT, "pdf: a text is over %u bytes", PDF_TEXT_MAX);
    if (!g_utf8_validate(t, (gssize)n, NULL))
        return FAIL(err, CP_ERR_INVALID, "pdf: a text is not UTF-8");
    for (const char *nl = strchr(t, '\n'); nl != NULL; nl = strchr(nl + 1, '\n'))
        if (++lines > PDF_LINES_MAX)
            return FAIL(err, CP_ERR_LIMIT, "pdf: a text has over %d lines", PDF_LINES_MAX);
    return CP_OK;
}

static cp_status check_report(const pdf_report *r, cp_error *err)
{
    const char *texts[] = {
        r->institution, r->title, r->patient_name, r->patient_id, r->sex, r->birth_date,
        r->accession, r->study_date, r->modality, r->body_part, r->study_description,
        r->reading_institution, r->findings, r->impression, r->author, r->reviewer,
        r->signature, r->share_url, r->qr_caption, r->qr_note,
    };
    cp_status st = CP_OK;

    for (size_t i = 0; st == CP_OK && i < sizeof texts / sizeof texts[0]; i++)
        st = check_text(texts[i], err);
    if (st == CP_OK && r->share_url != NULL && strlen(r->share_url) > SHARE_URL_MAX)
        st = FAIL(err, CP_ERR_INVALID, "pdf: the share URL is too long for a QR code");
    for (size_t i = 0; st == CP_OK && i < r->image_count && i < PDF_IMAGES_MAX; i++) {
        const pdf_image *im = &r->images[i];

        if (im->data == NULL || im->width == 0 || im->height == 0 ||
            im->width > PDF_IMAGE_SIDE_MAX || im->height > PDF_IMAGE_SIDE_MAX ||
            (im->channels != 1 && im->channels != 3))
            st = FAIL(err, CP_ERR_INVALID, "pdf: key image %zu has no usable pixels", i + 1);
        else
            st = check_text(im->caption, err);
    }
    return st;
}

/* --- the QR code -------------------------------------------------------------------- */

static cp_status qr_encode(const char *text, QRcode **out, cp_error *err)
{
    if (text == NULL || text[0] == '\0' || strlen(text) > SHARE_URL_MAX)
        return FAIL(err, CP_ERR_INVALID, "pdf: no text, or too long, for a QR code");
    *out = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (*out == NULL)
        return FAIL(err, errno == ENOMEM ? CP_ERR_NOMEM : CP_ERR_INVALID,
                    "pdf: the QR code could not be made");
    return CP_OK;
}

/*
 * White square with the quiet zone, then one rectangle per run of dark
 * modules in a row, all in one path: a single fill leaves no seams between
 * neighbouring modules when a viewer rasterises it.
 */
static void qr_draw(cairo_t *cr, const QRcode *qr, double x, double y, double size)
{
    int n = qr->width;
    double m = size / (n + 2 * QR_QUIET);

    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, x, y, size, size);
    cairo_fill(cr);

    cairo_set_source_rgb(cr, 0, 0, 0);
    for (int row = 0; row < n; row++) {
        int col = 0;

        while (col < n) {
            int start;

            while (col < n && (qr->data[row * n + col] & 1) == 0)
                col++;
            start = col;
            while (col < n && (qr->data[row * n + col] & 1) != 0)
                col++;
            if (col > start)
                cairo_rectangle(cr, x + (start + QR_QUIET) * m, y + (row + QR_QUIET) * m,
                                (col - start) * m, m);
        }
    }
    cairo_fill(cr);
}

cp_status pdf_qr_png(const char *text, unsigned module_px, cp_buf *out, cp_error *err)
{
    cairo_surface_t *surf = NULL;
    cairo_t *cr = NULL;
    QRcode *qr = NULL;
    sink k = { out, out->len, CP_OK };
    int side;
    cp_status st;

    if (module_px == 0)
        module_px = 8;
    if (module_px > 64)
        return FAIL(err, CP_ERR_INVALID, "pdf: %u pixels a module is too many", module_px);
    st = qr_encode(text, &qr, err);
    if (st != CP_OK)
        return st;

    side = (qr->width + 2 * QR_QUIET) * (int)module_px;
    surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, side, side);
    cr = cairo_create(surf);
    cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE);
    qr_draw(cr, qr, 0, 0, side);
    cairo_surface_flush(surf);
    if (cairo_status(cr) != CAIRO_STATUS_SUCCESS ||
        cairo_surface_write_to_png_stream(surf, write_sink, &k) != CAIRO_STATUS_SUCCESS)
        st = FAIL(err, k.st != CP_OK ? k.st : CP_ERR_IO, "pdf: the PNG could not be written");

    cairo_destroy(cr);
    cairo_surface_destroy(surf);
    QRcode_free(qr);
    return st;
}

void pdf_fingerprint(const char *signature_b64, char out[PDF_FINGERPRINT_SIZE])
{
    uint8_t sig[256];
    uint8_t digest[32];
    size_t len = 0;
    size_t n = 0;

    out[0] = '\0';
    if (signature_b64 == NULL || signature_b64[0] == '\0' ||
        sodium_base642bin(sig, sizeof sig, signature_b64, strlen(signature_b64), NULL, &len,
                          NULL, sodium_base64_VARIANT_ORIGINAL) != 0 || len == 0)
        return;
    crypto_generichash(digest, sizeof digest, sig, len, NULL, 0);
    for (size_t i = 0; i < 16; i += 2) {
        n += (size_t)snprintf(out + n, PDF_FINGERPRINT_SIZE - n, "%s%02X%02X",
                              i > 0 ? " " : "", digest[i], digest[i + 1]);
    }
}

/* --- page layout --------------------------------------------------------------------- */

typedef struct page {
    cairo_t *cr;
    const pdf_report *r;
    double y;                           /* where the next block starts */
    int number;                         /* of the current page, from 1 */
    char fingerprint[PDF_FINGERPRINT_SIZE];
    cp_status st;
} page;

typedef struct style {
    double size;                        /* points */
    bool bold;
    PangoAlignment align;
    double red;                         /* the colour's red part; the rest is black */
} style;

static const style body_style = { 10.5, false, PANGO_ALIGN_LEFT, 0 };
static const style label_style = { 12, true, PANGO_ALIGN_LEFT, 0 };
static const style small_style = { 8, false, PANGO_ALIGN_LEFT, 0 };

static PangoLayout *make_layout(page *p, const style *s, double width, const char *text)
{
    PangoLayout *layout = pango_cairo_create_layout(p->cr);
    PangoFontDescription *desc = pango_font_description_new();

    pango_font_description_set_family(desc, PDF_FONT_FAMILY);
    /* One face only: bold is drawn by draw_line. */
    pango_font_description_set_weight(desc, PANGO_WEIGHT_NORMAL);
    pango_font_description_set_absolute_size(desc, s->size * PANGO_SCALE);
    pango_layout_set_font_description(layout, desc);
    pango_font_description_free(desc);
    pango_layout_set_width(layout, (int)(width * PANGO_SCALE));
    pango_layout_set_wrap(layout, PANGO_WRAP_WORD_CHAR);
    pango_layout_set_alignment(layout, s->align);
    pango_layout_set_text(layout, text, -1);
    return layout;
}

static void draw_footer(page *p)
{
    char line[160];
    PangoLayout *layout;

    snprintf(line, sizeof line, "签名指纹 Signature fingerprint: %s    第 %d 页 Page %d",
             p->fingerprint[0] != '\0' ? p->fingerprint : "未签名 not signed", p->number,
             p->number);
    cairo_set_source_rgb(p->cr, 0.35, 0.35, 0.35);
    cairo_set_line_width(p->cr, 0.5);
    cairo_move_to(p->cr, MARGIN, PAGE_H - MARGIN - FOOTER_H + 6);
    cairo_line_to(p->cr, PAGE_W - MARGIN, PAGE_H - MARGIN - FOOTER_H + 6);
    cairo_stroke(p->cr);
    layout = make_layout(p, &small_style, PAGE_W - 2 * MARGIN, line);
    cairo_move_to(p->cr, MARGIN, PAGE_H - MARGIN - FOOTER_H + 10);
    pango_cairo_show_layout(p->cr, layout);
    g_object_unref(layout);
}

/* Ends the page (its footer) and starts the next. */
static void next_page(page *p)
{
    draw_footer(p);
    cairo_show_page(p->cr);
    p->number++;
    p->y = MARGIN;
    if (p->number > PDF_PAGES_MAX && p->st == CP_OK)
        p->st = CP_ERR_LIMIT;
}

static double bottom(void)
{
    return PAGE_H - MARGIN - FOOTER_H;
}

/*
 * One line at the current point. Bold is the regular face with its outline
 * stroked over it: a second CJK face would double the PDF (each subset of
 * Noto Sans CJK is near a megabyte, see KNOWN_ISSUES), and the glyphs stay
 * text that can be searched and copied.
 */
static void draw_line(cairo_t *cr, PangoLayoutLine *line, const style *s)
{
    double x;
    double y;

    if (!s->bold) {
        pango_cairo_show_layout_line(cr, line);
        return;
    }
    cairo_get_current_point(cr, &x, &y);
    pango_cairo_show_layout_line(cr, line);
    cairo_move_to(cr, x, y);
    pango_cairo_layout_line_path(cr, line);
    cairo_set_line_width(cr, s->size * 0.04);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_stroke(cr);
}

/*
 * Draws text at x in width from p->y, line by line, going on to a new page
 * where the page ends; p->y moves below it.
 */
static void text_block(page *p, const style *s, double x, double width, const char *text)
{
    PangoLayout *layout;
    PangoLayoutIter *iter;
    PangoRectangle ink;
    PangoRectangle logical;
    double base = p->y;
    double off = 0;

    if (p->st != CP_OK || text == NULL || text[0] == '\0')
        return;
    layout = make_layout(p, s, width, text);
    iter = pango_layout_get_iter(layout);
    cairo_set_source_rgb(p->cr, s->red, 0, 0);
    do {
        double top;
        double height;

        pango_layout_iter_get_line_extents(iter, &ink, &logical);
        top = (double)logical.y / PANGO_SCALE;
        height = (double)logical.height / PANGO_SCALE;
        if (base + (top - off) + height > bottom() && top > off) {
            next_page(p);
            if (p->st != CP_OK)
                break;
            base = p->y;
            off = top;
            cairo_set_source_rgb(p->cr, s->red, 0, 0);
        }
        cairo_move_to(p->cr, x + (double)logical.x / PANGO_SCALE,
                      base + (double)pango_layout_iter_get_baseline(iter) / PANGO_SCALE - off);
        draw_line(p->cr, pango_layout_iter_get_line_readonly(iter), s);
    } while (pango_layout_iter_next_line(iter));
    pango_layout_get_extents(layout, NULL, &logical);
    p->y = base + (double)logical.height / PANGO_SCALE - off;
    pango_layout_iter_free(iter);
    g_object_unref(layout);
}

/* Lays out text built in b; a failure to build it (no memory) ends the rendering. */
static void text_buf(page *p, const style *s, double x, double width, cp_buf *b, cp_status st)
{
    if (st == CP_OK)
        st = cp_buf_append_byte(b, 0);
    if (st != CP_OK && p->st == CP_OK)
        p->st = st;
    if (st == CP_OK)
        text_block(p, s, x, width, (const char *)b->data);
    cp_buf_free(b);
}

static void rule(page *p, double gap)
{
    cairo_set_source_rgb(p->cr, 0, 0, 0);
    cairo_set_line_width(p->cr, 0.8);
    cairo_move_to(p->cr, MARGIN, p->y + gap / 2);
    cairo_line_to(p->cr, PAGE_W - MARGIN, p->y + gap / 2);
    cairo_stroke(p->cr);
    p->y += gap;
}

/* Starts a new page when less than need points are left on this one. */
static void keep(page *p, double need)
{
    if (p->st == CP_OK && p->y + need > bottom())
        next_page(p);
}

static void draw_header(page *p)
{
    const pdf_report *r = p->r;
    style big = { 18, true, PANGO_ALIGN_CENTER, 0 };
    style title = { 14, false, PANGO_ALIGN_CENTER, 0 };

    text_block(p, &big, MARGIN, PAGE_W - 2 * MARGIN, nz(r->institution));
    p->y += 4;
    text_block(p, &title, MARGIN, PAGE_W - 2 * MARGIN,
               r->title != NULL ? r->title : DEFAULT_TITLE);
    rule(p, 12);
}

/* The patient and exam on the left, the QR code and its caption on the right. */
static void draw_patient(page *p, const QRcode *qr)
{
    const pdf_report *r = p->r;
    double top = p->y;
    double text_w = PAGE_W - 2 * MARGIN - (qr != NULL ? QR_SIZE + 40 : 0);
    double qr_x = PAGE_W - MARGIN - QR_SIZE - 20;
    double qr_bottom = top;
    char birth[11];
    char exam_date[11];
    cp_buf b = CP_BUF_INIT;
    cp_status st;

    st = cp_buf_appendf(&b,
                        "姓名 Name: %s\n性别 Sex: %s    出生日期 Birth date: %s\n"
                        "患者编号 Patient ID: %s\n检查号 Accession: %s\n"
                        "检查日期 Exam date: %s\n检查项目 Exam: %s %s %s",
                        nz(r->patient_name), sex_text(r->sex), format_date(r->birth_date, birth),
                        nz(r->patient_id), nz(r->accession),
                        format_date(r->study_date, exam_date), nz(r->modality),
                        nz(r->body_part), nz(r->study_description));
    if (st == CP_OK && r->reading_institution != NULL && r->reading_institution[0] != '\0')
        st = cp_buf_appendf(&b, "\n阅片机构 Read by: %s", r->reading_institution);
    text_buf(p, &body_style, MARGIN, text_w, &b, st);

    if (qr != NULL) {
        double y_text = p->y;
        style caption = { 7.5, false, PANGO_ALIGN_CENTER, 0 };

        qr_draw(p->cr, qr, qr_x, top, QR_SIZE);
        p->y = top + QR_SIZE + 2;
        text_block(p, &caption, qr_x - 20, QR_SIZE + 40,
                   r->qr_caption != NULL ? r->qr_caption : PDF_QR_CAPTION);
        text_block(p, &caption, qr_x - 20, QR_SIZE + 40, r->qr_note);
        qr_bottom = p->y;
        p->y = y_text;
    }
    if (qr_bottom > p->y)
        p->y = qr_bottom;
    rule(p, 12);
}

static void draw_critical(page *p)
{
    style mark = { 12, true, PANGO_ALIGN_LEFT, 0.8 };
    double y0;

    keep(p, 30);
    y0 = p->y;
    p->y += 5;
    text_block(p, &mark, MARGIN + 8, PAGE_W - 2 * MARGIN - 16,
               "危急值 CRITICAL FINDING: 请立即通知临床 / "
               "the clinician is to be told at once");
    p->y += 5;
    cairo_set_source_rgb(p->cr, 0.8, 0, 0);
    cairo_set_line_width(p->cr, 1.5);
    cairo_rectangle(p->cr, MARGIN, y0, PAGE_W - 2 * MARGIN, p->y - y0);
    cairo_stroke(p->cr);
    p->y += 8;
}

static void draw_section(page *p, const char *label, const char *text)
{
    keep(p, 50);
    text_block(p, &label_style, MARGIN, PAGE_W - 2 * MARGIN, label);
    p->y += 4;
    text_block(p, &body_style, MARGIN, PAGE_W - 2 * MARGIN,
               text != NULL && text[0] != '\0' ? text : "-");
    p->y += 12;
}

static void draw_signatures(page *p)
{
    const pdf_report *r = p->r;
    char written[32];
    char reviewed[32];
    char released[32];
    cp_buf b = CP_BUF_INIT;
    cp_status st;

    format_time(r->written_us, written, sizeof written);
    format_time(r->reviewed_us, reviewed, sizeof reviewed);
    format_time(r->released_us, released, sizeof released);
    st = cp_buf_appendf(&b,
                        "报告医师 Author: %s    时间 Time: %s\n"
                        "审核医师 Reviewer: %s    时间 Time: %s\n"
                        "发布时间 Released: %s",
                        r->author != NULL && r->author[0] ? r->author : "-", written,
                        r->reviewer != NULL && r->reviewer[0] ? r->reviewer : "-", reviewed,
                        released);
    keep(p, 60);
    rule(p, 10);
    text_buf(p, &body_style, MARGIN, PAGE_W - 2 * MARGIN, &b, st);
}

/* Gap between two key images, points. */
#define IMAGE_GAP 8.0

/*
 * One key image into a cairo image surface (RGB24); NULL when cairo has no
 * memory for it.
 */
static cairo_surface_t *image_surface(const pdf_image *im)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)im->width,
                                                    (int)im->height);
    unsigned char *px;
    int stride;

    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return NULL;
    }
    cairo_surface_flush(s);
    px = cairo_image_surface_get_data(s);
    stride = cairo_image_surface_get_stride(s);
    for (uint32_t y = 0; y < im->height; y++) {
        uint32_t *row = (uint32_t *)(void *)(px + (size_t)y * (size_t)stride);
        const uint8_t *in = im->data + (size_t)y * im->width * im->channels;

        for (uint32_t x = 0; x < im->width; x++, in += im->channels) {
            uint32_t r = in[0];
            uint32_t g = im->channels == 3 ? in[1] : in[0];
            uint32_t b = im->channels == 3 ? in[2] : in[0];

            row[x] = r << 16 | g << 8 | b;
        }
    }
    cairo_surface_mark_dirty(s);
    return s;
}

/*
 * The key images in one row of PDF_IMAGES_MAX cells below the impression,
 * each fitted to its square cell on black, its caption under it. The row
 * goes to the next page whole when it does not fit.
 */
static void draw_images(page *p)
{
    const pdf_report *r = p->r;
    size_t n = r->image_count < PDF_IMAGES_MAX ? r->image_count : PDF_IMAGES_MAX;
    double cell = (PAGE_W - 2 * MARGIN - (PDF_IMAGES_MAX - 1) * IMAGE_GAP) / PDF_IMAGES_MAX;
    double top, below = 0;
    style caption = small_style;

    if (n == 0 || p->st != CP_OK)
        return;
    caption.align = PANGO_ALIGN_CENTER;
    keep(p, cell + 60);
    text_block(p, &label_style, MARGIN, PAGE_W - 2 * MARGIN, "关键图像 Key images");
    p->y += 6;
    top = p->y;
    for (size_t i = 0; i < n && p->st == CP_OK; i++) {
        const pdf_image *im = &r->images[i];
        double x = MARGIN + (double)i * (cell + IMAGE_GAP);
        double scale = cell / (double)(im->width > im->height ? im->width : im->height);
        cairo_surface_t *s = image_surface(im);

        cairo_set_source_rgb(p->cr, 0, 0, 0);
        cairo_rectangle(p->cr, x, top, cell, cell);
        cairo_fill(p->cr);
        if (s == NULL) {
            p->st = CP_ERR_NOMEM;
            break;
        }
        cairo_save(p->cr);
        cairo_translate(p->cr, x + (cell - im->width * scale) / 2,
                        top + (cell - im->height * scale) / 2);
        cairo_scale(p->cr, scale, scale);
        cairo_set_source_surface(p->cr, s, 0, 0);
        cairo_paint(p->cr);
        cairo_restore(p->cr);
        cairo_surface_destroy(s);
        p->y = top + cell + 3;
        text_block(p, &caption, x, cell, im->caption);
        if (p->y > below)
            below = p->y;
    }
    p->y = (below > top + cell ? below : top + cell) + 12;
}

static void draw_report(page *p, const QRcode *qr)
{
    draw_header(p);
    draw_patient(p, qr);
    if (p->r->critical)
        draw_critical(p);
    draw_section(p, "影像所见 Findings", p->r->findings);
    draw_section(p, "诊断意见 Impression", p->r->impression);
    draw_images(p);
    draw_signatures(p);
    if (p->st == CP_OK)
        draw_footer(p);
}

cp_status pdf_render(const pdf_report *r, cp_buf *out, cp_error *err)
{
    sink k = { out, out->len, CP_OK };
    cairo_surface_t *surf;
    QRcode *qr = NULL;
    page p = { 0 };
    cp_status st;

    if (r == NULL || out == NULL)
        return FAIL(err, CP_ERR_INVALID, "pdf: no report");
    st = check_report(r, err);
    if (st == CP_OK && r->share_url != NULL && r->share_url[0] != '\0')
        st = qr_encode(r->share_url, &qr, err);
    if (st != CP_OK)
        return st;

    surf = cairo_pdf_surface_create_for_stream(write_sink, &k, PAGE_W, PAGE_H);
    cairo_pdf_surface_set_metadata(surf, CAIRO_PDF_METADATA_TITLE,
                                   r->title != NULL ? r->title : DEFAULT_TITLE);
    cairo_pdf_surface_set_metadata(surf, CAIRO_PDF_METADATA_CREATOR, "cloudpacs");
    p.cr = cairo_create(surf);
    p.r = r;
    p.y = MARGIN;
    p.number = 1;
    pdf_fingerprint(r->signature, p.fingerprint);

    draw_report(&p, qr);
    cairo_show_page(p.cr);
    if (cairo_status(p.cr) != CAIRO_STATUS_SUCCESS && p.st == CP_OK)
        p.st = CP_ERR_IO;
    cairo_destroy(p.cr);
    cairo_surface_finish(surf);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS && p.st == CP_OK)
        p.st = CP_ERR_IO;
    cairo_surface_destroy(surf);
    QRcode_free(qr);

    st = p.st != CP_OK ? p.st : k.st;
    if (st != CP_OK) {
        out->len = k.start;
        return FAIL(err, st, st == CP_ERR_LIMIT ? "pdf: the report is too long"
                                                 : "pdf: the PDF could not be written");
    }
    return CP_OK;
}

cp_status pdf_render_file(const pdf_report *r, const char *path, cp_error *err)
{
    cp_buf pdf = CP_BUF_INIT;
    char tmp[4096];
    FILE *f = NULL;
    cp_status st;

    if (path == NULL || snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return FAIL(err, CP_ERR_INVALID, "pdf: no path, or too long");
    st = pdf_render(r, &pdf, err);
    if (st != CP_OK)
        goto done;

    f = fopen(tmp, "wb");
    if (f == NULL) {
        st = FAIL(err, CP_ERR_IO, "pdf: cannot create %s", tmp);
        goto done;
    }
    if (fwrite(pdf.data, 1, pdf.len, f) != pdf.len || fflush(f) != 0 ||
        fsync(fileno(f)) != 0)
        st = FAIL(err, CP_ERR_IO, "pdf: cannot write %s", tmp);
    if (fclose(f) != 0 && st == CP_OK)
        st = FAIL(err, CP_ERR_IO, "pdf: cannot write %s", tmp);
    if (st == CP_OK && rename(tmp, path) != 0)
        st = FAIL(err, CP_ERR_IO, "pdf: cannot rename to %s", path);
    if (st != CP_OK)
        unlink(tmp);

done:
    cp_buf_free(&pdf);
    return st;
}

/* --- the Encapsulated PDF instance ---------------------------------------------------- */

static cp_status put_header(cp_buf *b, uint32_t tag, dcm_vr vr, uint32_t length)
{
    uint8_t h[DCM_WRITE_HEADER_MAX];
    size_t n = dcm_write_header(h, tag, vr, length, true, false);

    return cp_buf_append(b, h, n);
}

/* One element padded to even length: UI and OB with NUL, text with a space. */
static cp_status put_bytes(cp_buf *b, uint32_t tag, dcm_vr vr, const void *value, size_t len)
{
    bool is_long = vr == DCM_VR_OB || vr == DCM_VR_UT || vr == DCM_VR_SQ;
    cp_status st;

    if (len >= (is_long ? (size_t)UINT32_MAX - 1 : (size_t)0xFFFE))
        return CP_ERR_LIMIT;
    st = put_header(b, tag, vr, (uint32_t)(len + (len & 1)));
    if (st == CP_OK && len > 0)
        st = cp_buf_append(b, value, len);
    if (st == CP_OK && (len & 1) != 0)
        st = cp_buf_append_byte(b, vr == DCM_VR_UI || vr == DCM_VR_OB ? 0 : ' ');
    return st;
}

static cp_status put(cp_buf *b, uint32_t tag, dcm_vr vr, const char *value)
{
    return put_bytes(b, tag, vr, value, strlen(value));
}

/*
 * A short text (LO, SH, PN, ST) made safe: at most max characters (the
 * VR's limit counts characters, PS3.5 6.2), no backslash (the value
 * separator) and no control characters; a cut never splits a UTF-8
 * character.
 */
static cp_status put_text(cp_buf *b, uint32_t tag, dcm_vr vr, const char *value, size_t max)
{
    char clean[4 * SR_PN_CHARS_MAX + 1];
    size_t chars = 0;
    size_t n = 0;

    for (const unsigned char *c = (const unsigned char *)value; *c; c++) {
        bool lead = (*c & 0xC0) != 0x80;

        if (*c == '\\' || *c < 0x20 || *c == 0x7F)
            continue;
        if (lead && (chars == max || n + 4 >= sizeof clean))
            break;
        chars += lead ? 1 : 0;
        clean[n++] = (char)*c;
    }
    while (n > 0 && clean[n - 1] == ' ')
        n--;
    return put_bytes(b, tag, vr, clean, n);
}

static void pn_join(const index_person_name *pn, char *out, size_t cap)
{
    if (pn->phonetic[0] != '\0')
        snprintf(out, cap, "%s=%s=%s", pn->alphabetic, pn->ideographic, pn->phonetic);
    else if (pn->ideographic[0] != '\0')
        snprintf(out, cap, "%s=%s", pn->alphabetic, pn->ideographic);
    else
        snprintf(out, cap, "%s", pn->alphabetic);
}

typedef struct doc_facts {
    char date[9];
    char time[7];
    char datetime[15];
    char patient[3 * (INDEX_PN_GROUP_MAX + 1)];
    char referring[3 * (INDEX_PN_GROUP_MAX + 1)];
} doc_facts;

/* SOP Common, General Study, Series and Equipment: groups 0008 to 0020. */
static cp_status put_study(cp_buf *b, const pdf_document_info *in, const doc_facts *f)
{
    const index_instance_record *r = &in->row->rec;
    cp_status st;

    st = put(b, DCM_TAG(0x0008, 0x0005), DCM_VR_CS, "ISO_IR 192");
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0012), DCM_VR_DA, f->date);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0013), DCM_VR_TM, f->time);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0016), DCM_VR_UI, PDF_ENCAPSULATED_CLASS);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0018), DCM_VR_UI, in->sop_uid);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0020), DCM_VR_DA, r->study.date);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0023), DCM_VR_DA, f->date);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x002A), DCM_VR_DT, f->datetime);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0030), DCM_VR_TM, r->study.time);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0033), DCM_VR_TM, f->time);
    if (st == CP_OK)
        st = put_text(b, DCM_TAG(0x0008, 0x0050), DCM_VR_SH, r->study.accession,
                      SR_SH_CHARS_MAX);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0060), DCM_VR_CS, "DOC");
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0064), DCM_VR_CS, "WSD");
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x0070), DCM_VR_LO, "cloudpacs");
    if (st == CP_OK)
        st = put_text(b, DCM_TAG(0x0008, 0x0090), DCM_VR_PN, f->referring, SR_PN_CHARS_MAX);
    if (st == CP_OK && r->study.description[0] != '\0')
        st = put_text(b, DCM_TAG(0x0008, 0x1030), DCM_VR_LO, r->study.description,
                      SR_LO_CHARS_MAX);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0008, 0x103E), DCM_VR_LO, "Printed report");
    if (st == CP_OK)
        st = put_text(b, DCM_TAG(0x0010, 0x0010), DCM_VR_PN, f->patient, SR_PN_CHARS_MAX);
    if (st == CP_OK)
        st = put_text(b, DCM_TAG(0x0010, 0x0020), DCM_VR_LO, r->patient.id, SR_LO_CHARS_MAX);
    if (st == CP_OK && r->patient.issuer[0] != '\0')
        st = put_text(b, DCM_TAG(0x0010, 0x0021), DCM_VR_LO, r->patient.issuer,
                      SR_LO_CHARS_MAX);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0010, 0x0030), DCM_VR_DA, r->patient.birth_date);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0010, 0x0040), DCM_VR_CS, r->patient.sex);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0020, 0x000D), DCM_VR_UI, r->study.uid);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0020, 0x000E), DCM_VR_UI, in->series_uid);
    if (st == CP_OK)
        st = put_text(b, DCM_TAG(0x0020, 0x0010), DCM_VR_SH, r->study.id, SR_SH_CHARS_MAX);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0020, 0x0011), DCM_VR_IS, "998");
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0020, 0x0013), DCM_VR_IS, "1");
    return st;
}

/* The Concept Name Code Sequence: "Diagnostic Imaging Report" (LOINC 18748-4). */
static cp_status put_concept(cp_buf *b)
{
    cp_buf item = CP_BUF_INIT;
    cp_status st;

    st = put(&item, DCM_TAG(0x0008, 0x0100), DCM_VR_SH, "18748-4");
    if (st == CP_OK)
        st = put(&item, DCM_TAG(0x0008, 0x0102), DCM_VR_SH, "LN");
    if (st == CP_OK)
        st = put(&item, DCM_TAG(0x0008, 0x0104), DCM_VR_LO, "Diagnostic Imaging Report");
    if (st == CP_OK)
        st = put_header(b, DCM_TAG(0x0040, 0xA043), DCM_VR_SQ, (uint32_t)item.len + 8);
    if (st == CP_OK)
        st = put_header(b, DCM_TAG(0xFFFE, 0xE000), DCM_VR_NONE, (uint32_t)item.len);
    if (st == CP_OK)
        st = cp_buf_append(b, item.data, item.len);
    cp_buf_free(&item);
    return st;
}

/* The Encapsulated Document module: groups 0028 to 0042. */
static cp_status put_document(cp_buf *b, const pdf_document_info *in, const void *pdf,
                              size_t len)
{
    uint8_t ul[4] = { (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
                      (uint8_t)(len >> 24) };
    cp_status st;

    st = put(b, DCM_TAG(0x0028, 0x0301), DCM_VR_CS, "YES");
    if (st == CP_OK)
        st = put_concept(b);
    if (st == CP_OK)
        st = put_text(b, DCM_TAG(0x0042, 0x0010), DCM_VR_ST,
                      in->title != NULL ? in->title : "Imaging Report", SR_LO_CHARS_MAX);
    if (st == CP_OK)
        st = put_bytes(b, DCM_TAG(0x0042, 0x0011), DCM_VR_OB, pdf, len);
    if (st == CP_OK)
        st = put(b, DCM_TAG(0x0042, 0x0012), DCM_VR_LO, "application/pdf");
    if (st == CP_OK)
        st = put_header(b, DCM_TAG(0x0042, 0x0015), DCM_VR_UL, 4);
    if (st == CP_OK)
        st = cp_buf_append(b, ul, sizeof ul);
    return st;
}

cp_status pdf_encapsulate(const pdf_document_info *in, const void *pdf, size_t len,
                          cp_buf *out, cp_error *err)
{
    static const uint8_t preamble[128];
    doc_facts f;
    time_t t;
    struct tm tm;
    size_t start = out->len;
    cp_status st;

    if (in == NULL || in->row == NULL || in->series_uid == NULL || in->sop_uid == NULL ||
        !dcm_uid_is_valid(in->series_uid, strlen(in->series_uid)) ||
        !dcm_uid_is_valid(in->sop_uid, strlen(in->sop_uid)))
        return FAIL(err, CP_ERR_INVALID, "pdf: invalid series or instance UID");
    if (pdf == NULL || len < 5 || memcmp(pdf, "%PDF-", 5) != 0)
        return FAIL(err, CP_ERR_INVALID, "pdf: the document is not a PDF");
    if (len > PDF_FILE_MAX)
        return FAIL(err, CP_ERR_LIMIT, "pdf: the document is over %u bytes", PDF_FILE_MAX);

    memset(&f, 0, sizeof f);
    if (in->now_us != 0) {
        t = (time_t)(in->now_us / 1000000);
    } else {
        t = time(NULL);
    }
    localtime_r(&t, &tm);
    strftime(f.date, sizeof f.date, "%Y%m%d", &tm);
    strftime(f.time, sizeof f.time, "%H%M%S", &tm);
    strftime(f.datetime, sizeof f.datetime, "%Y%m%d%H%M%S", &tm);
    pn_join(&in->row->rec.patient.name, f.patient, sizeof f.patient);
    pn_join(&in->row->rec.study.referring, f.referring, sizeof f.referring);

    st = cp_buf_append(out, preamble, sizeof preamble);
    if (st == CP_OK)
        st = cp_buf_append(out, "DICM", 4);
    if (st == CP_OK)
        st = dcm_write_meta_group(PDF_ENCAPSULATED_CLASS, strlen(PDF_ENCAPSULATED_CLASS),
                                  in->sop_uid, strlen(in->sop_uid), &dcm_ts_explicit_le, out);
    if (st == CP_OK)
        st = put_study(out, in, &f);
    if (st == CP_OK)
        st = put_document(out, in, pdf, len);
    if (st != CP_OK) {
        out->len = start;
        return FAIL(err, st, "pdf: encoding the instance failed");
    }
    return CP_OK;
}

static cp_status first_row(void *ctx, const index_row *row)
{
    *(index_row *)ctx = *row;
    return CP_ERR_STOPPED;
}

cp_status pdf_store(archive *a, index_db *idx, const char *study_uid, int64_t institution_id,
                    const char *title, const void *pdf, size_t len, char *sop_uid_out,
                    cp_error *err)
{
    index_term term = { "StudyInstanceUID", study_uid };
    index_query_spec q = { .level = INDEX_LEVEL_STUDY, .terms = &term, .term_count = 1,
                           .limit = 1 };
    archive_source_info info = { .source = "report-pdf", .institution_id = institution_id };
    char series_uid[INDEX_UID_MAX + 1];
    char sop_uid[INDEX_UID_MAX + 1];
    pdf_document_info in = { .series_uid = series_uid, .sop_uid = sop_uid, .title = title };
    cp_buf file = CP_BUF_INIT;
    archive_ingest *ingest = NULL;
    archive_result res;
    index_row *row;
    cp_status st;

    if (study_uid == NULL || study_uid[0] == '\0')
        return FAIL(err, CP_ERR_INVALID, "pdf: no study");
    row = cp_calloc(1, sizeof *row);
    if (row == NULL)
        return FAIL(err, CP_ERR_NOMEM, "pdf: index row");
    st = index_query(idx, &q, first_row, row, err);
    if (st == CP_OK && row->rec.study.uid[0] == '\0')
        st = FAIL(err, CP_ERR_NOT_FOUND, "pdf: the study is not in the index");
    if (st != CP_OK)
        goto done;

    in.row = row;
    sr_uid_new(series_uid);
    sr_uid_new(sop_uid);
    st = pdf_encapsulate(&in, pdf, len, &file, err);
    if (st != CP_OK)
        goto done;

    st = archive_ingest_begin(a, &info, &ingest);
    if (st != CP_OK) {
        st = FAIL(err, st, "pdf: cannot start the ingest");
        goto done;
    }
    st = archive_ingest_write(ingest, file.data, file.len);
    if (st != CP_OK) {
        archive_ingest_abort(ingest);
        st = FAIL(err, st, "pdf: the ingest failed");
        goto done;
    }
    st = archive_ingest_finish(ingest, &res);
    if (st == CP_OK && !archive_outcome_ok(res.outcome))
        st = FAIL(err, CP_ERR_IO, "pdf: the archive refused the report: %s (%s)",
                  archive_reason_name(res.reason), res.detail);
    if (st == CP_OK)
        snprintf(sop_uid_out, INDEX_UID_MAX + 1, "%s", res.sop_instance_uid);

done:
    cp_buf_free(&file);
    cp_free(row);
    return st;
}
