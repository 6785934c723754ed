/*
 * film_pdf.c - bench_film_pdf: what cloud film's documents cost to make,
 * in one thread, from memory (no store, no index, no HTTP):
 *
 *   report   pdf_render (film/pdf.h) of a one-page report with a Chinese
 *            name, findings and impression, and the QR code of a share URL
 *   sheet    a 14x17 in film sheet at 150 dpi in a 4x5 grid (film/sheet.h):
 *            twenty 512x512 CT slices each read from a Part 10 file in
 *            memory, decoded, windowed and scaled to the cell, annotated;
 *            as a PDF page and as a PNG
 *
 * Each runs for --seconds (default 3) after one warm-up document, and
 * prints `figure film_pdf.<what>.cloudpacs <rate> <unit>/s` per CPU second
 * and per wall second, and the size of one document. --tiny (the test):
 * 64x64 slices, 0.2 s each, every document checked to begin as it should.
 * --keep PREFIX writes one document of each kind to PREFIX.<what>.pdf/png.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <pango/pangocairo.h>

#include "core/buf.h"
#include "dicom/io.h"
#include "film/pdf.h"
#include "film/sheet.h"

typedef struct clocks {
    double cpu;
    double wall;
} clocks;

static void now(clocks *c)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    c->cpu = ts.tv_sec + ts.tv_nsec / 1e9;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->wall = ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- a CT slice as a Part 10 file -------------------------------------------------------- */

static bool put16(cp_buf *b, uint16_t v)
{
    uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

    return cp_buf_append(b, x, 2) == CP_OK;
}

static bool el(cp_buf *b, uint16_t g, uint16_t e, const char *vr, const void *v, uint32_t len)
{
    bool ok = put16(b, g) && put16(b, e) && cp_buf_append(b, vr, 2) == CP_OK;

    if (strcmp(vr, "OB") == 0 || strcmp(vr, "OW") == 0)
        ok = ok && put16(b, 0) && put16(b, (uint16_t)len) && put16(b, (uint16_t)(len >> 16));
    else
        ok = ok && put16(b, (uint16_t)len);
    return ok && cp_buf_append(b, v, len) == CP_OK;
}

static bool el_str(cp_buf *b, uint16_t g, uint16_t e, const char *vr, const char *s)
{
    char tmp[96];
    size_t n = strlen(s);

    memcpy(tmp, s, n);
    if (n % 2)
        tmp[n++] = strcmp(vr, "UI") == 0 ? '\0' : ' ';
    return el(b, g, e, vr, tmp, (uint32_t)n);
}

static bool el_us(cp_buf *b, uint16_t g, uint16_t e, uint16_t v)
{
    uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

    return el(b, g, e, "US", x, 2);
}

/* A body-like CT slice: a disc of soft tissue with a bright ring, in air, with some noise. */
static bool make_ct(uint16_t size, cp_buf *out)
{
    static const char ts[] = "1.2.840.10008.1.2.1";
    static const char ct[] = "1.2.840.10008.5.1.4.1.1.2";
    static const char sop[] = "1.2.826.0.1.3680043.10.999.2.1";
    cp_buf meta = CP_BUF_INIT;
    uint8_t pre[128] = { 0 }, ver[2] = { 0, 1 }, len[4];
    uint16_t *px = malloc((size_t)size * size * 2);
    uint32_t seed = 1;
    bool ok;

    if (px == NULL)
        return false;
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            double dx = (x - size / 2.0) / (size / 2.0), dy = (y - size / 2.0) / (size / 2.0);
            double r = dx * dx + dy * dy;
            int hu = r > 0.8 ? -1000 : r > 0.7 ? 700 : 40 + (int)(80 * dx * dy);

            seed = seed * 1103515245u + 12345u;
            px[y * size + x] = (uint16_t)(hu + 1024 + (int)((seed >> 16) % 21) - 10);
        }
    }
    ok = el(&meta, 0x0002, 0x0001, "OB", ver, 2) && el_str(&meta, 0x0002, 0x0002, "UI", ct) &&
         el_str(&meta, 0x0002, 0x0003, "UI", sop) && el_str(&meta, 0x0002, 0x0010, "UI", ts);
    len[0] = (uint8_t)meta.len;
    len[1] = (uint8_t)(meta.len >> 8);
    len[2] = len[3] = 0;
    ok = ok && cp_buf_append(out, pre, sizeof(pre)) == CP_OK &&
         cp_buf_append(out, "DICM", 4) == CP_OK && el(out, 0x0002, 0x0000, "UL", len, 4) &&
         cp_buf_append(out, meta.data, meta.len) == CP_OK;
    ok = ok && el_str(out, 0x0008, 0x0016, "UI", ct) && el_str(out, 0x0008, 0x0018, "UI", sop) &&
         el_str(out, 0x0008, 0x0060, "CS", "CT") && el_str(out, 0x0018, 0x0050, "DS", "5") &&
         el_str(out, 0x0020, 0x1041, "DS", "-120.5") && el_us(out, 0x0028, 0x0002, 1) &&
         el_str(out, 0x0028, 0x0004, "CS", "MONOCHROME2") &&
         el_us(out, 0x0028, 0x0010, size) && el_us(out, 0x0028, 0x0011, size) &&
         el_str(out, 0x0028, 0x0030, "DS", "0.7\\0.7") && el_us(out, 0x0028, 0x0100, 16) &&
         el_us(out, 0x0028, 0x0101, 12) && el_us(out, 0x0028, 0x0102, 11) &&
         el_us(out, 0x0028, 0x0103, 0) && el_str(out, 0x0028, 0x1050, "DS", "40") &&
         el_str(out, 0x0028, 0x1051, "DS", "400") &&
         el_str(out, 0x0028, 0x1052, "DS", "-1024") && el_str(out, 0x0028, 0x1053, "DS", "1") &&
         el(out, 0x7FE0, 0x0010, "OW", px, (uint32_t)size * size * 2);
    cp_buf_free(&meta);
    free(px);
    return ok;
}

/* --- the documents ------------------------------------------------------------------------- */

static const pdf_report report = {
    .institution = "云南省第一人民医院 / First People's Hospital",
    .patient_name = "张伟",
    .patient_id = "PID-BENCH-1",
    .sex = "M",
    .birth_date = "19800517",
    .accession = "ACC-1",
    .study_date = "20260304",
    .modality = "CT",
    .body_part = "CHEST",
    .study_description = "CT CHEST",
    .findings = "右肺下叶见斑片状高密度影，边缘模糊。"
                "Patchy opacity in the right lower lobe with ill-defined margins. "
                "No pleural effusion. The mediastinum is central; no enlarged lymph nodes.",
    .impression = "右肺下叶肺炎。Right lower lobe pneumonia.",
    .author = "Dr Li",
    .reviewer = "Dr Chen",
    .written_us = 1772600000000000,
    .reviewed_us = 1772600600000000,
    .released_us = 1772600700000000,
    .signature = "c2lnbmF0dXJlIG9mIHRoZSByZXBvcnQ=",
    .share_url = "https://film.example.org/film/cf_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
};

static const sheet_notes notes = {
    .patient_name = "张伟",
    .patient_id = "PID-BENCH-1",
    .sex = "M",
    .age = "45Y",
    .institution = "First People's Hospital",
    .study_date = "20260304",
    .study_time = "101500",
    .modality = "CT",
    .series_number = 2,
    .instance_number = 1,
};

static bool one_report(cp_buf *out)
{
    out->len = 0;
    return pdf_render(&report, out, NULL) == CP_OK && memcmp(out->data, "%PDF-", 5) == 0;
}

static bool one_sheet(const cp_buf *ct, sheet_format format, cp_buf *out)
{
    sheet_options o;
    sheet_writer *w = NULL;
    uint32_t cw, ch;
    bool ok;

    memset(&o, 0, sizeof(o));
    sheet_size_find("14x17in", &o.size);
    o.dpi = 150;
    o.rows = 4;
    o.cols = 5;
    o.institution = notes.institution;
    out->len = 0;
    ok = sheet_cell_pixels(&o, &cw, &ch) &&
         sheet_writer_create(&o, format, 1, out, &w, NULL) == CP_OK;
    for (int i = 0; ok && i < 20; i++) {
        dcm_source *src = dcm_source_from_memory(ct->data, ct->len);
        sheet_image img;

        ok = src != NULL && sheet_image_load(src, NULL, cw, ch, &img, NULL) == CP_OK;
        dcm_source_destroy(src);
        ok = ok && sheet_writer_add(w, &img, &notes, NULL) == CP_OK;
        if (ok)
            sheet_image_clear(&img);
    }
    ok = ok && sheet_writer_finish(w, NULL, NULL) == CP_OK;
    sheet_writer_destroy(w);
    return ok && out->len > 8 &&
           memcmp(out->data, format == SHEET_PDF ? "%PDF-" : "\x89PNG", 4) == 0;
}

typedef enum { DOC_REPORT, DOC_SHEET_PDF, DOC_SHEET_PNG } doc_kind;

static bool make(doc_kind k, const cp_buf *ct, cp_buf *out)
{
    if (k == DOC_REPORT)
        return one_report(out);
    return one_sheet(ct, k == DOC_SHEET_PDF ? SHEET_PDF : SHEET_PNG, out);
}

/* Keeps one document at <prefix>.<name>.<ext> to look at; NULL prefix: none. */
static void keep(const char *prefix, const char *name, doc_kind k, const cp_buf *doc)
{
    char path[4096];
    FILE *f;

    if (prefix == NULL)
        return;
    snprintf(path, sizeof(path), "%s.%s.%s", prefix, name, k == DOC_SHEET_PNG ? "png" : "pdf");
    f = fopen(path, "wb");
    if (f == NULL || fwrite(doc->data, 1, doc->len, f) != doc->len)
        fprintf(stderr, "bench_film_pdf: %s could not be written\n", path);
    if (f != NULL)
        fclose(f);
}

/* Makes documents of kind k for seconds; false when one failed. */
static bool measure(doc_kind k, const char *name, const char *unit, const cp_buf *ct,
                    double seconds, const char *prefix)
{
    cp_buf out = CP_BUF_INIT;
    clocks a, b;
    size_t n = 0, bytes;
    bool ok = make(k, ct, &out);

    bytes = out.len;
    if (ok)
        keep(prefix, name, k, &out);
    now(&a);
    b = a;
    while (ok && (n == 0 || b.wall - a.wall < seconds)) {
        ok = make(k, ct, &out);
        n++;
        now(&b);
    }
    cp_buf_free(&out);
    if (!ok) {
        fprintf(stderr, "bench_film_pdf: %s failed\n", name);
        return false;
    }
    printf("figure film_pdf.%s.cloudpacs %.2f %s/s\n", name, n / (b.cpu - a.cpu), unit);
    printf("figure film_pdf.%s.cloudpacs_wall %.2f %s/s\n", name, n / (b.wall - a.wall), unit);
    printf("figure film_pdf.%s.bytes %zu bytes\n", name, bytes);
    return true;
}

int main(int argc, char **argv)
{
    double seconds = 3.0;
    const char *prefix = NULL;
    uint16_t size = 512;
    cp_buf ct = CP_BUF_INIT;
    bool ok;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tiny") == 0) {
            seconds = 0.2;
            size = 64;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--keep") == 0 && i + 1 < argc) {
            prefix = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_film_pdf [--seconds S] [--tiny] [--keep PREFIX]\n");
            return 2;
        }
    }
    if (!make_ct(size, &ct)) {
        fprintf(stderr, "bench_film_pdf: cannot make the CT slice\n");
        return 1;
    }
    printf("# one thread; report: A4 with QR code; sheet: 14x17in 4x5 150 dpi, "
           "20 CT slices %ux%u\n", size, size);
    ok = measure(DOC_REPORT, "report", "pdfs", &ct, seconds, prefix) &&
         measure(DOC_SHEET_PDF, "sheet_pdf", "sheets", &ct, seconds, prefix) &&
         measure(DOC_SHEET_PNG, "sheet_png", "sheets", &ct, seconds, prefix);
    cp_buf_free(&ct);
    pango_cairo_font_map_set_default(NULL);
    cairo_debug_reset_static_data();
    FcFini();
    return ok ? 0 : 1;
}
