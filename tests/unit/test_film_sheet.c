/*
 * test_film_sheet.c - electronic film sheets (film/sheet.h): sizes, grids
 * and presets; the sheet and cell sizes in pixels; the evenly spaced pick
 * of a long series; a synthetic CT (a signed 16-bit gradient with its
 * rescale, window, slice and spacing) loaded with the file's window and a
 * preset; a PNG of one sheet whose size is the film's at the DPI; a PDF of
 * two sheets whose page size pdfinfo reads as 14x17 in and whose corner
 * annotations, the Chinese name among them, pdftotext reads back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <pango/pangocairo.h>

#include "core/buf.h"
#include "dicom/io.h"
#include "film/sheet.h"

#define CT_SIZE 96

/* --- a synthetic CT, Part 10 in Explicit VR Little Endian ------------------------------- */

static void put16(cp_buf *b, uint16_t v)
{
    uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

    assert_int_equal(cp_buf_append(b, x, 2), CP_OK);
}

static void put32(cp_buf *b, uint32_t v)
{
    put16(b, (uint16_t)v);
    put16(b, (uint16_t)(v >> 16));
}

static void el(cp_buf *b, uint16_t g, uint16_t e, const char *vr, const void *v, uint32_t len)
{
    bool longform = strcmp(vr, "OB") == 0 || strcmp(vr, "OW") == 0;

    put16(b, g);
    put16(b, e);
    assert_int_equal(cp_buf_append(b, vr, 2), CP_OK);
    if (longform) {
        put16(b, 0);
        put32(b, len);
    } else {
        put16(b, (uint16_t)len);
    }
    assert_int_equal(cp_buf_append(b, v, len), CP_OK);
}

/* A text value padded to even length (UI with NUL, others with a space). */
static void el_str(cp_buf *b, uint16_t g, uint16_t e, const char *vr, const char *s)
{
    char tmp[128];
    size_t n = strlen(s);

    memcpy(tmp, s, n);
    if (n % 2)
        tmp[n++] = strcmp(vr, "UI") == 0 ? '\0' : ' ';
    el(b, g, e, vr, tmp, (uint32_t)n);
}

static void el_us(cp_buf *b, uint16_t g, uint16_t e, uint16_t v)
{
    uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

    el(b, g, e, "US", x, 2);
}

/* A CT slice: HU from -1000 (top left) to +1000 (bottom right), stored as value + 1024. */
static void make_ct(cp_buf *out)
{
    static const char ts[] = "1.2.840.10008.1.2.1";
    static const char ct[] = "1.2.840.10008.5.1.4.1.1.2";
    static const char sop[] = "1.2.826.0.1.3680043.10.999.1.1";
    cp_buf meta = CP_BUF_INIT;
    uint8_t pre[128] = { 0 };
    uint16_t *px = malloc(CT_SIZE * CT_SIZE * 2);
    uint8_t ver[2] = { 0, 1 };

    assert_non_null(px);
    for (int y = 0; y < CT_SIZE; y++)
        for (int x = 0; x < CT_SIZE; x++)
            px[y * CT_SIZE + x] = (uint16_t)(24 + (x + y) * 2000 / (2 * (CT_SIZE - 1)));

    el(&meta, 0x0002, 0x0001, "OB", ver, 2);
    el_str(&meta, 0x0002, 0x0002, "UI", ct);
    el_str(&meta, 0x0002, 0x0003, "UI", sop);
    el_str(&meta, 0x0002, 0x0010, "UI", ts);
    assert_int_equal(cp_buf_append(out, pre, sizeof(pre)), CP_OK);
    assert_int_equal(cp_buf_append(out, "DICM", 4), CP_OK);
    {
        uint8_t len[4] = { (uint8_t)meta.len, (uint8_t)(meta.len >> 8), 0, 0 };

        el(out, 0x0002, 0x0000, "UL", len, 4);
    }
    assert_int_equal(cp_buf_append(out, meta.data, meta.len), CP_OK);
    cp_buf_free(&meta);

    el_str(out, 0x0008, 0x0016, "UI", ct);
    el_str(out, 0x0008, 0x0018, "UI", sop);
    el_str(out, 0x0008, 0x0060, "CS", "CT");
    el_str(out, 0x0018, 0x0050, "DS", "5");
    el_str(out, 0x0020, 0x1041, "DS", "-120.5");
    el_us(out, 0x0028, 0x0002, 1);
    el_str(out, 0x0028, 0x0004, "CS", "MONOCHROME2");
    el_us(out, 0x0028, 0x0010, CT_SIZE);
    el_us(out, 0x0028, 0x0011, CT_SIZE);
    el_str(out, 0x0028, 0x0030, "DS", "0.8\\0.8");
    el_us(out, 0x0028, 0x0100, 16);
    el_us(out, 0x0028, 0x0101, 12);
    el_us(out, 0x0028, 0x0102, 11);
    el_us(out, 0x0028, 0x0103, 0);
    el_str(out, 0x0028, 0x1050, "DS", "40");
    el_str(out, 0x0028, 0x1051, "DS", "400");
    el_str(out, 0x0028, 0x1052, "DS", "-1024");
    el_str(out, 0x0028, 0x1053, "DS", "1");
    el(out, 0x7FE0, 0x0010, "OW", px, CT_SIZE * CT_SIZE * 2);
    free(px);
}

static void load_ct(const sheet_window *w, uint32_t vw, uint32_t vh, sheet_image *img)
{
    cp_buf file = CP_BUF_INIT;
    dcm_source *src;
    cp_error err;

    make_ct(&file);
    src = dcm_source_from_memory(file.data, file.len);
    assert_non_null(src);
    cp_error_clear(&err);
    assert_int_equal(sheet_image_load(src, w, vw, vh, img, &err), CP_OK);
    dcm_source_destroy(src);
    cp_buf_free(&file);
}

/* --- tools ---------------------------------------------------------------------------------- */

static bool have_tool(const char *name)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* The whole output of cmd, NUL-terminated, in out. */
static void run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    size_t n;

    assert_non_null(p);
    n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
}

static void write_temp(const cp_buf *b, const char *suffix, char *path, size_t cap)
{
    FILE *f;
    int fd;

    snprintf(path, cap, "/tmp/test_film_sheet_XXXXXX%s", suffix);
    fd = mkstemps(path, (int)strlen(suffix));
    assert_true(fd >= 0);
    f = fdopen(fd, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b->data, 1, b->len, f), b->len);
    assert_int_equal(fclose(f), 0);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* --- the tests ----------------------------------------------------------------------------- */

static void test_sizes_and_layouts(void **state)
{
    sheet_size s;
    unsigned r = 0, c = 0;

    (void)state;
    assert_true(sheet_size_find("14x17in", &s));
    assert_true(s.width_in == 14.0 && s.height_in == 17.0);
    assert_true(sheet_size_find("14x17", &s));
    assert_true(sheet_size_find("8X10IN", &s) && s.width_in == 8.0);
    assert_true(sheet_size_find("a4", &s) && s.width_in > 8.26 && s.width_in < 8.27);
    assert_true(sheet_size_find("A3", &s) && s.height_in > 16.5 && s.height_in < 16.6);
    assert_false(sheet_size_find("13x17in", &s));
    assert_false(sheet_size_find("", &s));

    assert_true(sheet_layout_parse("4x5", &r, &c) && r == 4 && c == 5);
    assert_true(sheet_layout_parse("1x1", &r, &c) && r == 1 && c == 1);
    assert_true(sheet_layout_parse("5x6", &r, &c) && r == 5 && c == 6);
    assert_false(sheet_layout_parse("7x7", &r, &c));
    assert_false(sheet_layout_parse("4x", &r, &c));

    sheet_layout_auto(1, false, &r, &c);
    assert_true(r == 1 && c == 1);
    sheet_layout_auto(4, false, &r, &c);
    assert_true(r == 2 && c == 2);
    sheet_layout_auto(10, false, &r, &c);
    assert_true(r == 4 && c == 3);
    sheet_layout_auto(10, true, &r, &c);
    assert_true(r == 3 && c == 4);
    sheet_layout_auto(20, false, &r, &c);
    assert_true(r == 5 && c == 4);
    sheet_layout_auto(400, true, &r, &c);
    assert_true(r == 5 && c == 6);
}

static void test_presets(void **state)
{
    sheet_window w = { 0, 0 };
    bool known = true;

    (void)state;
    assert_true(sheet_preset_find("lung", "CT", &w, &known));
    assert_true(known && w.center == -600 && w.width == 1500);
    assert_true(sheet_preset_find("Mediastinum", "ct", &w, &known) && w.width == 400);
    assert_true(sheet_preset_find("bone", "CT", &w, &known) && w.center == 300);
    assert_true(sheet_preset_find("brain", "CT", &w, &known) && w.width == 80);
    assert_true(sheet_preset_find("abdomen", "CT", &w, &known) && w.width == 350);
    assert_true(sheet_preset_find("default", "MR", &w, &known) && !known);
    assert_true(sheet_preset_find(NULL, "CT", &w, &known) && !known);
    assert_false(sheet_preset_find("lung", "MR", &w, &known));
    assert_false(sheet_preset_find("liver", "CT", &w, &known));
}

static void test_pixels(void **state)
{
    sheet_options o;
    uint32_t w = 0, h = 0;

    (void)state;
    memset(&o, 0, sizeof(o));
    assert_true(sheet_size_find("14x17in", &o.size));
    o.dpi = 150;
    assert_true(sheet_pixels(&o, &w, &h));
    assert_int_equal(w, 2100);
    assert_int_equal(h, 2550);
    o.landscape = true;
    o.dpi = 300;
    assert_true(sheet_pixels(&o, &w, &h));
    assert_int_equal(w, 5100);
    assert_int_equal(h, 4200);
    assert_true(sheet_size_find("A4", &o.size));
    o.landscape = false;
    assert_true(sheet_pixels(&o, &w, &h));
    assert_int_equal(w, 2480);
    assert_int_equal(h, 3508);

    /* A 4x5 grid on 14x17 in at 150 dpi: cells well under a fifth and a quarter of the sheet. */
    assert_true(sheet_size_find("14x17in", &o.size));
    o.dpi = 150;
    o.rows = 4;
    o.cols = 5;
    assert_true(sheet_cell_pixels(&o, &w, &h));
    assert_true(w > 380 && w < 2100 / 5);
    assert_true(h > 550 && h < 2550 / 4);

    o.dpi = 1200;
    assert_false(sheet_pixels(&o, &w, &h));
    o.dpi = 150;
    o.rows = 20;
    assert_false(sheet_pixels(&o, &w, &h));
}

static void test_pick(void **state)
{
    size_t picks[20];

    (void)state;
    assert_int_equal(sheet_pick(3, 20, picks), 3);
    assert_true(picks[0] == 0 && picks[2] == 2);
    assert_int_equal(sheet_pick(100, 20, picks), 20);
    assert_int_equal(picks[0], 0);
    assert_int_equal(picks[19], 99);
    for (size_t i = 1; i < 20; i++)
        assert_true(picks[i] > picks[i - 1]);
    assert_int_equal(sheet_pick(7, 1, picks), 1);
    assert_int_equal(picks[0], 3);
}

static void test_load(void **state)
{
    sheet_window lung = { -600, 1500 };
    sheet_image img;

    (void)state;
    load_ct(NULL, 200, 100, &img);
    /* Fitted within 200x100, aspect kept: a square picture of 100. */
    assert_int_equal(img.width, 100);
    assert_int_equal(img.height, 100);
    assert_int_equal(img.channels, 1);
    assert_int_equal(img.source_columns, CT_SIZE);
    assert_true(img.has_window && img.window.center == 40 && img.window.width == 400);
    assert_true(img.slice_thickness == 5.0);
    assert_true(img.has_location && img.slice_location == -120.5);
    assert_true(img.pixel_spacing == 0.8);
    /* The file's window (40/400): the air corner black, the bone corner white. */
    assert_int_equal(img.data[0], 0);
    assert_int_equal(img.data[100 * 100 - 1], 255);
    sheet_image_clear(&img);

    /* The lung window (-1350 to 150): the middle (0 HU) is light but not white. */
    load_ct(&lung, 100, 100, &img);
    assert_true(img.window.center == -600);
    assert_true(img.data[50 * 100 + 50] > 200 && img.data[50 * 100 + 50] < 255);
    sheet_image_clear(&img);
}

static const sheet_notes notes = {
    .patient_name = "张伟",
    .patient_id = "PID-SHEET-7",
    .sex = "M",
    .age = "19800517",
    .institution = "Sheet Test Hospital",
    .study_date = "20260304",
    .study_time = "101500",
    .modality = "CT",
    .series_number = 3,
    .instance_number = 12,
};

/* Writes count CT cells through a writer; the status of finish. */
static cp_status write_sheets(const sheet_options *o, sheet_format f, unsigned page,
                              size_t count, bool break_at_half, cp_buf *out, unsigned *pages)
{
    sheet_writer *w = NULL;
    uint32_t cw, ch;
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    assert_true(sheet_cell_pixels(o, &cw, &ch));
    assert_int_equal(sheet_writer_create(o, f, page, out, &w, &err), CP_OK);
    for (size_t i = 0; i < count; i++) {
        sheet_image img;

        if (break_at_half && i == count / 2)
            sheet_writer_break(w);
        if (!sheet_writer_wants(w)) {
            assert_int_equal(sheet_writer_add(w, NULL, NULL, &err), CP_OK);
            continue;
        }
        load_ct(NULL, cw, ch, &img);
        assert_int_equal(sheet_writer_add(w, &img, &notes, &err), CP_OK);
        sheet_image_clear(&img);
    }
    st = sheet_writer_finish(w, pages, &err);
    sheet_writer_destroy(w);
    return st;
}

static void test_png(void **state)
{
    sheet_options o;
    cp_buf png = CP_BUF_INIT;
    unsigned pages = 0;

    (void)state;
    memset(&o, 0, sizeof(o));
    assert_true(sheet_size_find("8x10in", &o.size));
    o.dpi = 100;
    o.rows = 2;
    o.cols = 2;
    o.institution = "Sheet Test Hospital";
    assert_int_equal(write_sheets(&o, SHEET_PNG, 2, 6, false, &png, &pages), CP_OK);
    assert_int_equal(pages, 2);
    assert_true(png.len > 24);
    assert_memory_equal(png.data, "\x89PNG\r\n\x1a\n", 8);
    assert_int_equal(be32(png.data + 16), 800);
    assert_int_equal(be32(png.data + 20), 1000);
    cp_buf_free(&png);

    /* A sheet that was never drawn. */
    assert_int_equal(write_sheets(&o, SHEET_PNG, 3, 6, false, &png, &pages), CP_ERR_NOT_FOUND);
    assert_int_equal(png.len, 0);
    cp_buf_free(&png);
}

static void test_pdf(void **state)
{
    sheet_options o;
    cp_buf pdf = CP_BUF_INIT;
    char path[64], cmd[160], *text;
    unsigned pages = 0;

    (void)state;
    memset(&o, 0, sizeof(o));
    assert_true(sheet_size_find("14x17in", &o.size));
    o.dpi = 150;
    o.rows = 4;
    o.cols = 5;
    o.institution = "Sheet Test Hospital";
    /* Two series of three: two sheets. */
    assert_int_equal(write_sheets(&o, SHEET_PDF, 0, 6, true, &pdf, &pages), CP_OK);
    assert_int_equal(pages, 2);
    assert_memory_equal(pdf.data, "%PDF-", 5);
    write_temp(&pdf, ".pdf", path, sizeof(path));
    cp_buf_free(&pdf);

    text = malloc(65536);
    assert_non_null(text);
    if (have_tool("pdfinfo")) {
        snprintf(cmd, sizeof cmd, "pdfinfo '%s'", path);
        run(cmd, text, 65536);
        assert_non_null(strstr(text, "1008 x 1224 pts"));
        assert_non_null(strstr(text, "Pages:           2\n"));
    } else {
        print_message("pdfinfo is not installed: the page size is not checked\n");
    }
    if (have_tool("pdftotext")) {
        snprintf(cmd, sizeof cmd, "pdftotext -enc UTF-8 '%s' -", path);
        run(cmd, text, 65536);
        assert_non_null(strstr(text, "张伟"));
        assert_non_null(strstr(text, "PID-SHEET-7"));
        assert_non_null(strstr(text, "1980-05-17"));
        assert_non_null(strstr(text, "Sheet Test Hospital"));
        assert_non_null(strstr(text, "2026-03-04 10:15"));
        assert_non_null(strstr(text, "Se: 3"));
        assert_non_null(strstr(text, "Im: 12"));
        assert_non_null(strstr(text, "C: 40"));
        assert_non_null(strstr(text, "W: 400"));
        assert_non_null(strstr(text, "Thk: 5.0 mm"));
        assert_non_null(strstr(text, "Loc: -120.5 mm"));
        assert_non_null(strstr(text, "Zoom:"));
        assert_non_null(strstr(text, "Scale 1:"));
        assert_non_null(strstr(text, "sheet 2"));
    } else {
        print_message("pdftotext is not installed: the annotations are not checked\n");
    }
    free(text);
    unlink(path);
}

static void test_limits(void **state)
{
    sheet_options o;
    sheet_writer *w = NULL;
    cp_buf out = CP_BUF_INIT;
    cp_error err;

    (void)state;
    memset(&o, 0, sizeof(o));
    cp_error_clear(&err);
    assert_true(sheet_size_find("8x10in", &o.size));
    o.dpi = 72;
    o.rows = 1;
    o.cols = 1;
    assert_int_equal(sheet_writer_create(&o, SHEET_PNG, 0, &out, &w, &err), CP_ERR_INVALID);
    assert_int_equal(sheet_writer_create(&o, SHEET_PDF, 0, &out, &w, &err), CP_OK);
    for (int i = 0; i < SHEET_PAGES_MAX; i++) {
        assert_true(sheet_writer_wants(w));
        assert_int_equal(sheet_writer_add(w, NULL, NULL, &err), CP_OK);
    }
    assert_false(sheet_writer_wants(w));
    assert_int_equal(sheet_writer_add(w, NULL, NULL, &err), CP_ERR_LIMIT);
    /* Destroyed unfinished: nothing reaches out. */
    sheet_writer_destroy(w);
    assert_int_equal(out.len, 0);
    cp_buf_free(&out);
}

/*
 * Under a sanitizer build: cairo 1.16 keeps 768 bytes per film PDF past
 * cairo_surface_finish (the report PDFs of test_film_pdf do not), inside
 * libcairo; LeakSanitizer reads this list from the program itself.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libcairo.so\n";
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_layouts),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_pixels),
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_png),
        cmocka_unit_test(test_pdf),
        cmocka_unit_test(test_limits),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    /* Font caches live for the process; freed so that LeakSanitizer reports real leaks. */
    pango_cairo_font_map_set_default(NULL);
    cairo_debug_reset_static_data();
    FcFini();
    return failed;
}
