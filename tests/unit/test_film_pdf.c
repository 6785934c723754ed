/*
 * test_film_pdf.c - the printable report: a PDF with a Chinese patient
 * name and impression that pdftotext reads back, a QR code that zbarimg
 * decodes to the share URL (from the rendered page and alone as a PNG),
 * long reports over several pages, the limits, the signature fingerprint,
 * the key images below the impression (counted by pdfimages, or as image
 * objects in the file), and the DICOM Encapsulated PDF instance (PS3.3
 * A.45.1) read back with
 * the dataset reader, checked by dciodvfy when it is installed, and stored
 * through the archive.
 */
#include <pthread.h>
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

#include "archive/archive.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/tag.h"
#include "film/pdf.h"
#include "index/index.h"
#include "store/store.h"

#define URL "https://pacs.example.org/film/cf_Q2xvdWRQQUNTIGZpbG0gdGVzdCB0b2tlbiAxMjM0NTY3"
#define STUDY "1.2.826.0.1.3680043.99.4242"
#define NAME "王小明"
#define IMPRESSION "右肺上叶小结节，建议三个月后复查。"

typedef struct fixture {
    char root[64];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    snprintf(f->root, sizeof f->root, "/tmp/cp-test-pdf-XXXXXX");
    if (mkdtemp(f->root) == NULL)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static bool have_tool(const char *tool)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", tool);
    return system(cmd) == 0;
}

/* Runs cmd and appends what it printed to out; its exit status. */
static int run(const char *cmd, cp_buf *out)
{
    FILE *p = popen(cmd, "r");
    char chunk[4096];
    size_t n;

    assert_non_null(p);
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        assert_int_equal(cp_buf_append(out, chunk, n), CP_OK);
    assert_int_equal(cp_buf_append_byte(out, 0), CP_OK);
    out->len--;
    return pclose(p);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static pdf_report sample(void)
{
    pdf_report r = { 0 };

    r.institution = "市第一人民医院 City No. 1 Hospital";
    r.patient_name = NAME;
    r.patient_id = "P-0042";
    r.sex = "M";
    r.birth_date = "19800517";
    r.accession = "ACC-9";
    r.study_date = "20251124";
    r.modality = "CT";
    r.body_part = "CHEST";
    r.study_description = "胸部平扫 Chest plain";
    r.reading_institution = "云阅片中心 Cloud Reading Centre";
    r.findings = "右肺上叶见一直径约8毫米的实性结节，边界清楚。"
                 "纵隔未见肿大淋巴结。\n"
                 "A solid nodule of about 8 mm in the right upper lobe, well defined.";
    r.impression = IMPRESSION;
    r.critical = true;
    r.author = "李明";
    r.reviewer = "张华 Zhang Hua";
    r.written_us = INT64_C(1764000000000000);
    r.reviewed_us = INT64_C(1764000600000000);
    r.released_us = INT64_C(1764000660000000);
    r.signature = "MEUCIQDXc2lnbmF0dXJlIGJ5dGVzIGZvciB0aGUgZmluZ2VycHJpbnQgdGVzdA==";
    r.share_url = URL;
    r.qr_note = "验证: 出生日期 / Verify with: birth date";
    return r;
}

/* Image XObjects in a PDF cairo wrote (their dictionaries are not compressed). */
static size_t image_objects(const cp_buf *pdf)
{
    static const char needle[] = "/Subtype /Image";
    size_t count = 0;

    for (size_t i = 0; i + sizeof needle - 1 <= pdf->len; i++)
        if (memcmp(pdf->data + i, needle, sizeof needle - 1) == 0)
            count++;
    return count;
}

/* --- the page ------------------------------------------------------------------------ */

static void test_render_text(void **state)
{
    fixture *f = *state;
    pdf_report r = sample();
    char path[128];
    char cmd[384];
    cp_buf text = CP_BUF_INIT;
    char fp[PDF_FINGERPRINT_SIZE];

    snprintf(path, sizeof path, "%s/report.pdf", f->root);
    assert_int_equal(pdf_render_file(&r, path, NULL), CP_OK);
    assert_int_equal(access(path, R_OK), 0);
    if (!have_tool("pdftotext")) {
        skip();
        return;
    }

    snprintf(cmd, sizeof cmd, "pdftotext -enc UTF-8 '%s' -", path);
    assert_int_equal(run(cmd, &text), 0);
    assert_non_null(strstr((char *)text.data, NAME));
    assert_non_null(strstr((char *)text.data, IMPRESSION));
    assert_non_null(strstr((char *)text.data, "李明"));
    assert_non_null(strstr((char *)text.data, "市第一人民医院"));
    assert_non_null(strstr((char *)text.data, "危急值"));
    assert_non_null(strstr((char *)text.data, "扫码查看影像和报告"));
    assert_non_null(strstr((char *)text.data, "1980-05-17"));
    pdf_fingerprint(r.signature, fp);
    assert_non_null(strstr((char *)text.data, fp));
    cp_buf_free(&text);

    /* The CJK font is embedded, not just named. */
    if (have_tool("pdffonts")) {
        snprintf(cmd, sizeof cmd, "pdffonts '%s'", path);
        assert_int_equal(run(cmd, &text), 0);
        assert_non_null(strstr((char *)text.data, "NotoSansCJK"));
        assert_null(strstr((char *)text.data, " no "));
        cp_buf_free(&text);
    }
}

static void test_qr_from_page(void **state)
{
    fixture *f = *state;
    pdf_report r = sample();
    char path[128];
    char cmd[384];
    cp_buf out = CP_BUF_INIT;

    if (!have_tool("pdftoppm") || !have_tool("zbarimg")) {
        skip();
        return;
    }
    snprintf(path, sizeof path, "%s/qr.pdf", f->root);
    assert_int_equal(pdf_render_file(&r, path, NULL), CP_OK);
    snprintf(cmd, sizeof cmd, "pdftoppm -png -r 150 -f 1 -l 1 '%s' '%s/page'", path, f->root);
    assert_int_equal(run(cmd, &out), 0);
    cp_buf_reset(&out);
    snprintf(cmd, sizeof cmd, "zbarimg -q --raw '%s'/page-*1.png 2>/dev/null", f->root);
    assert_int_equal(run(cmd, &out), 0);
    assert_non_null(strstr((char *)out.data, URL));
    cp_buf_free(&out);
}

static void test_qr_png(void **state)
{
    fixture *f = *state;
    cp_buf png = CP_BUF_INIT;
    cp_buf out = CP_BUF_INIT;
    char path[128];
    char cmd[256];

    assert_int_equal(pdf_qr_png(URL, 6, &png, NULL), CP_OK);
    assert_true(png.len > 8);
    assert_memory_equal(png.data, "\x89PNG", 4);
    snprintf(path, sizeof path, "%s/qr.png", f->root);
    write_file(path, png.data, png.len);
    cp_buf_free(&png);
    assert_int_equal(pdf_qr_png("", 6, &png, NULL), CP_ERR_INVALID);
    if (!have_tool("zbarimg")) {
        skip();
        return;
    }
    snprintf(cmd, sizeof cmd, "zbarimg -q --raw '%s' 2>/dev/null", path);
    assert_int_equal(run(cmd, &out), 0);
    assert_non_null(strstr((char *)out.data, URL));
    cp_buf_free(&out);
}

static void test_long_report_pages(void **state)
{
    fixture *f = *state;
    pdf_report r = sample();
    cp_buf findings = CP_BUF_INIT;
    cp_buf pdf = CP_BUF_INIT;
    cp_buf out = CP_BUF_INIT;
    char path[128];
    char cmd[256];

    for (int i = 0; i < 150; i++)
        assert_int_equal(cp_buf_appendf(&findings, "第%d行 line %d: 所见 findings.\n", i + 1,
                                        i + 1), CP_OK);
    assert_int_equal(cp_buf_append_byte(&findings, 0), CP_OK);
    r.findings = (const char *)findings.data;
    r.share_url = NULL;
    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_OK);
    assert_memory_equal(pdf.data, "%PDF-", 5);
    snprintf(path, sizeof path, "%s/long.pdf", f->root);
    write_file(path, pdf.data, pdf.len);
    if (have_tool("pdfinfo") && have_tool("pdftotext")) {
        snprintf(cmd, sizeof cmd, "pdfinfo '%s' | grep '^Pages:' | tr -dc 0-9", path);
        assert_int_equal(run(cmd, &out), 0);
        assert_true(atoi((char *)out.data) >= 2);
        cp_buf_reset(&out);
        snprintf(cmd, sizeof cmd, "pdftotext -enc UTF-8 '%s' -", path);
        assert_int_equal(run(cmd, &out), 0);
        assert_non_null(strstr((char *)out.data, "第150行"));
        assert_non_null(strstr((char *)out.data, IMPRESSION));
    }
    cp_buf_free(&out);
    cp_buf_free(&pdf);
    cp_buf_free(&findings);
}

static void test_limits(void **state)
{
    pdf_report r = sample();
    cp_buf pdf = CP_BUF_INIT;
    char *big = cp_malloc(PDF_TEXT_MAX + 2);
    char url[SHARE_URL_MAX + 16];

    (void)state;
    assert_non_null(big);
    memset(big, 'a', PDF_TEXT_MAX + 1);
    big[PDF_TEXT_MAX + 1] = '\0';
    r.findings = big;
    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_ERR_LIMIT);
    assert_int_equal(pdf.len, 0);

    /* Too many lines, refused before the layout; then just under, past PDF_PAGES_MAX pages. */
    for (size_t i = 0; i < 2 * (PDF_LINES_MAX + 1); i += 2) {
        big[i] = 'x';
        big[i + 1] = '\n';
    }
    big[2 * (PDF_LINES_MAX + 1)] = '\0';
    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_ERR_LIMIT);
    assert_int_equal(pdf.len, 0);
    big[2 * PDF_LINES_MAX - 2] = '\0';
    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_ERR_LIMIT);
    assert_int_equal(pdf.len, 0);
    cp_free(big);

    r = sample();
    r.patient_name = "\xff\xfe bad";
    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_ERR_INVALID);
    r = sample();
    memset(url, 'u', sizeof url - 1);
    url[sizeof url - 1] = '\0';
    r.share_url = url;
    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_ERR_INVALID);
    cp_buf_free(&pdf);
}

static void test_fingerprint(void **state)
{
    char fp[PDF_FINGERPRINT_SIZE];

    (void)state;
    pdf_fingerprint("AAECAwQFBgcICQ==", fp);
    assert_int_equal(strlen(fp), 39);
    for (size_t i = 0; i < 39; i++) {
        if (i % 5 == 4)
            assert_int_equal(fp[i], ' ');
        else
            assert_non_null(strchr("0123456789ABCDEF", fp[i]));
    }
    pdf_fingerprint("not base64!", fp);
    assert_string_equal(fp, "");
    pdf_fingerprint(NULL, fp);
    assert_string_equal(fp, "");
}

/* The web service renders from many threads at once (pango's font map is per thread). */
static void *render_thread(void *arg)
{
    pdf_report r = sample();
    cp_buf pdf = CP_BUF_INIT;

    for (int i = 0; i < 3; i++) {
        if (pdf_render(&r, &pdf, NULL) != CP_OK || pdf.len < 1000)
            *(int *)arg = 1;
        cp_buf_reset(&pdf);
    }
    cp_buf_free(&pdf);
    pango_cairo_font_map_set_default(NULL);
    return NULL;
}

static void test_threads(void **state)
{
    pthread_t threads[4];
    int failed[4] = { 0 };

    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, render_thread, &failed[i]), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(failed[i], 0);
    }
}

/* --- the DICOM instance ------------------------------------------------------------------- */

static void fill_row(index_row *row)
{
    index_instance_record *r = &row->rec;

    memset(row, 0, sizeof *row);
    row->level = INDEX_LEVEL_STUDY;
    snprintf(r->patient.id, sizeof r->patient.id, "P-0042");
    snprintf(r->patient.issuer, sizeof r->patient.issuer, "CITY1");
    snprintf(r->patient.name.alphabetic, sizeof r->patient.name.alphabetic, "Wang^Xiaoming");
    snprintf(r->patient.name.ideographic, sizeof r->patient.name.ideographic, "王^小明");
    snprintf(r->patient.birth_date, sizeof r->patient.birth_date, "19800517");
    snprintf(r->patient.sex, sizeof r->patient.sex, "M");
    snprintf(r->study.uid, sizeof r->study.uid, STUDY);
    snprintf(r->study.date, sizeof r->study.date, "20251124");
    snprintf(r->study.time, sizeof r->study.time, "101500");
    snprintf(r->study.accession, sizeof r->study.accession, "ACC-9");
    snprintf(r->study.id, sizeof r->study.id, "S1");
    snprintf(r->study.description, sizeof r->study.description, "胸部平扫");
}

static void check_instance(const uint8_t *data, size_t len, const cp_buf *pdf)
{
    dcm_source *src = dcm_source_from_memory(data, len);
    dcm_file *file = NULL;
    const dcm_element *doc;
    const dcm_element *dlen;
    char text[256];
    uint32_t declared;

    assert_int_equal(dcm_file_read(src, NULL, &file, NULL), CP_OK);
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0008, 0x0016), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, PDF_ENCAPSULATED_CLASS);
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0020, 0x000D), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, STUDY);
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0008, 0x0060), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "DOC");
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0010, 0x0010), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "Wang^Xiaoming=王^小明");
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0042, 0x0012), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "application/pdf");

    doc = dcm_dataset_get(file->dataset, DCM_TAG(0x0042, 0x0011));
    assert_non_null(doc);
    dlen = dcm_dataset_get(file->dataset, DCM_TAG(0x0042, 0x0015));
    assert_non_null(dlen);
    assert_int_equal(dlen->value_length, 4);
    memcpy(&declared, dlen->value, 4);
    assert_int_equal(declared, pdf->len);
    assert_int_equal(doc->value_length, pdf->len + (pdf->len & 1));
    if (doc->value != NULL) {
        assert_memory_equal(doc->value, pdf->data, pdf->len);
    } else {
        cp_buf value = CP_BUF_INIT;

        assert_int_equal(dcm_element_read_value(doc, src, &value, NULL), CP_OK);
        assert_memory_equal(value.data, pdf->data, pdf->len);
        cp_buf_free(&value);
    }
    dcm_file_destroy(file);
    dcm_source_destroy(src);
}

static void test_encapsulate(void **state)
{
    fixture *f = *state;
    pdf_report r = sample();
    pdf_document_info in = { 0 };
    index_row row;
    cp_buf pdf = CP_BUF_INIT;
    cp_buf file = CP_BUF_INIT;
    cp_buf out = CP_BUF_INIT;
    char path[128];
    char cmd[256];

    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_OK);
    fill_row(&row);
    in.row = &row;
    in.series_uid = "1.2.826.0.1.3680043.99.4242.1";
    in.sop_uid = "1.2.826.0.1.3680043.99.4242.1.1";
    in.title = "影像诊断报告";
    in.now_us = INT64_C(1764000660000000);
    assert_int_equal(pdf_encapsulate(&in, pdf.data, pdf.len, &file, NULL), CP_OK);
    check_instance(file.data, file.len, &pdf);

    /* Not a PDF, a bad UID: refused, nothing appended. */
    out.len = 0;
    assert_int_equal(pdf_encapsulate(&in, "hello", 5, &out, NULL), CP_ERR_INVALID);
    in.sop_uid = "1.2.x";
    assert_int_equal(pdf_encapsulate(&in, pdf.data, pdf.len, &out, NULL), CP_ERR_INVALID);
    assert_int_equal(out.len, 0);

    snprintf(path, sizeof path, "%s/report.dcm", f->root);
    write_file(path, file.data, file.len);

    /* CLOUDPACS_FILM_PDF_OUT names a directory to keep copies in, for a look by hand. */
    if (getenv("CLOUDPACS_FILM_PDF_OUT") != NULL) {
        char keep[512];

        snprintf(keep, sizeof keep, "%s/report.dcm", getenv("CLOUDPACS_FILM_PDF_OUT"));
        write_file(keep, file.data, file.len);
        snprintf(keep, sizeof keep, "%s/report.pdf", getenv("CLOUDPACS_FILM_PDF_OUT"));
        write_file(keep, pdf.data, pdf.len);
    }
    if (have_tool("dciodvfy")) {
        snprintf(cmd, sizeof cmd, "dciodvfy '%s' 2>&1", path);
        run(cmd, &out);
        if (strstr((char *)out.data, "Error") != NULL)
            print_message("%s\n", (char *)out.data);
        assert_null(strstr((char *)out.data, "Error"));
    }
    cp_buf_free(&out);
    cp_buf_free(&file);
    cp_buf_free(&pdf);
}

typedef struct found {
    char blob[INDEX_BLOB_KEY_MAX + 1];
    char sop_class[INDEX_UID_MAX + 1];
} found;

static cp_status found_blob(void *ctx, const index_row *row)
{
    found *fd = ctx;

    snprintf(fd->blob, sizeof fd->blob, "%s", row->rec.instance.blob_key);
    snprintf(fd->sop_class, sizeof fd->sop_class, "%s", row->rec.instance.sop_class_uid);
    return CP_OK;
}

static void test_store(void **state)
{
    fixture *f = *state;
    pdf_report r = sample();
    char blobs[128];
    char index_path[128];
    char sop[INDEX_UID_MAX + 1];
    store *st = NULL;
    index_db *idx = NULL;
    archive *arc = NULL;
    archive_config cfg = { 0 };
    index_instance_record rec;
    index_put_result put;
    index_row row;
    cp_buf pdf = CP_BUF_INIT;
    cp_buf blob = CP_BUF_INIT;
    index_term term = { "SOPInstanceUID", sop };
    index_query_spec q = { .level = INDEX_LEVEL_INSTANCE, .terms = &term, .term_count = 1 };
    found fd = { { 0 }, { 0 } };
    store_reader *reader = NULL;
    uint8_t chunk[8192];
    size_t got;

    snprintf(blobs, sizeof blobs, "%s/blobs", f->root);
    snprintf(index_path, sizeof index_path, "%s/pacs.sqlite", f->root);
    cfg.fs_root = blobs;
    assert_int_equal(store_open_fs(blobs, &st, NULL), CP_OK);
    assert_int_equal(index_open_sqlite(index_path, &idx, NULL), CP_OK);
    assert_int_equal(archive_create(st, idx, &cfg, &arc, NULL), CP_OK);

    /* The study, as if a CT had arrived. */
    fill_row(&row);
    rec = row.rec;
    snprintf(rec.series.uid, sizeof rec.series.uid, "%s.2", STUDY);
    snprintf(rec.series.modality, sizeof rec.series.modality, "CT");
    snprintf(rec.instance.sop_uid, sizeof rec.instance.sop_uid, "%s.2.1", STUDY);
    snprintf(rec.instance.sop_class_uid, sizeof rec.instance.sop_class_uid,
             "1.2.840.10008.5.1.4.1.1.2");
    snprintf(rec.instance.blob_key, sizeof rec.instance.blob_key, "none");
    rec.instance.institution_id = 1;
    assert_int_equal(index_put_instance(idx, &rec, 0, &put, NULL), CP_OK);

    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_OK);
    assert_int_equal(pdf_store(arc, idx, "1.2.826.0.1.3680043.99.1", 1, NULL, pdf.data,
                               pdf.len, sop, NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(pdf_store(arc, idx, STUDY, 1, "Imaging Report", pdf.data, pdf.len, sop,
                               NULL), CP_OK);

    assert_int_equal(index_query(idx, &q, found_blob, &fd, NULL), CP_OK);
    assert_string_equal(fd.sop_class, PDF_ENCAPSULATED_CLASS);
    assert_int_equal(store_open(st, fd.blob, &reader, NULL), CP_OK);
    do {
        assert_int_equal(store_read(reader, chunk, sizeof chunk, &got, NULL), CP_OK);
        assert_int_equal(cp_buf_append(&blob, chunk, got), CP_OK);
    } while (got > 0);
    store_close(reader);
    check_instance(blob.data, blob.len, &pdf);

    cp_buf_free(&blob);
    cp_buf_free(&pdf);
    archive_destroy(arc);
    index_destroy(idx);
    store_destroy(st);
}

/*
 * LeakSanitizer asks for this in builds with -Dsanitize=true: cairo 1.16
 * loses 768 bytes inside cairo_surface_finish of every PDF surface (an
 * array of its own, after everything cloudpacs made is destroyed).
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libcairo.so.2\n";
}

/*
 * Key images: up to PDF_IMAGES_MAX in a row below the impression, grey
 * and RGB, captions printed; more are left out; none without images;
 * images without pixels refused.
 */
static void test_key_images(void **state)
{
    fixture *f = *state;
    enum { W = 64, H = 48 };
    static uint8_t grey[W * H], rgb[W * H * 3];
    pdf_image im[5];
    pdf_report r = sample();
    cp_buf pdf = CP_BUF_INIT, text = CP_BUF_INIT;
    char path[128], cmd[384];
    size_t listed = 0;

    for (size_t i = 0; i < sizeof grey; i++)
        grey[i] = (uint8_t)(i % W * 4);
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < 5; i++) {
        im[i] = (pdf_image){ W, H, i % 2 ? 3 : 1, i % 2 ? rgb : grey, NULL };
    }
    im[0].caption = "序列 1 图像 12 / Series 1 Image 12";
    im[1].caption = "序列 2 图像 7 / Series 2 Image 7";

    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_OK);
    assert_int_equal(image_objects(&pdf), 0);
    cp_buf_free(&pdf);

    r.images = im;
    r.image_count = 2;
    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_OK);
    assert_int_equal(image_objects(&pdf), 2);
    snprintf(path, sizeof path, "%s/keys.pdf", f->root);
    write_file(path, pdf.data, pdf.len);
    cp_buf_free(&pdf);
    if (have_tool("pdfimages")) {
        /* Two header lines, then one line an image. */
        snprintf(cmd, sizeof cmd, "pdfimages -list '%s' | tail -n +3 | wc -l", path);
        assert_int_equal(run(cmd, &text), 0);
        listed = (size_t)strtoul((char *)text.data, NULL, 10);
        assert_int_equal(listed, 2);
        cp_buf_free(&text);
    }
    if (have_tool("pdftotext")) {
        snprintf(cmd, sizeof cmd, "pdftotext -enc UTF-8 '%s' -", path);
        assert_int_equal(run(cmd, &text), 0);
        assert_non_null(strstr((char *)text.data, "Key images"));
        assert_non_null(strstr((char *)text.data, "Series 2 Image 7"));
        /* The row is below the impression. */
        assert_true(strstr((char *)text.data, "Key images") >
                    strstr((char *)text.data, IMPRESSION));
        cp_buf_free(&text);
    }

    r.image_count = 5;
    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_OK);
    assert_int_equal(image_objects(&pdf), PDF_IMAGES_MAX);
    cp_buf_free(&pdf);

    im[1].data = NULL;
    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_ERR_INVALID);
    assert_int_equal(pdf.len, 0);
    im[1].data = rgb;
    im[2].channels = 2;
    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_ERR_INVALID);
    im[2].channels = 1;
    im[3].width = PDF_IMAGE_SIDE_MAX + 1;
    assert_int_equal(pdf_render(&r, &pdf, NULL), CP_ERR_INVALID);
    cp_buf_free(&pdf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_render_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qr_from_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qr_png, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_report_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_images, setup, teardown),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_threads),
        cmocka_unit_test_setup_teardown(test_encapsulate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store, setup, teardown),
    };

    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    /*
     * pango, cairo and fontconfig keep their font caches for the life of the
     * process; freed here so that LeakSanitizer reports only real leaks.
     */
    pango_cairo_font_map_set_default(NULL);
    cairo_debug_reset_static_data();
    FcFini();
    return failed;
}
