/*
 * api_film_sheet.c - electronic film over HTTP (api_film_sheet.h): what
 * a film printer would have printed for a study, as a PDF of sheets
 * (film/sheet.h). The key images are chosen here: each series with
 * pictures gets one sheet, all its images when they fit, else images
 * evenly spaced from its first to its last, and the film stops at
 * SHEET_PAGES_MAX sheets. Series go by Series Number, images by Instance
 * Number. Objects without pixels (the report's SR and PDFs) are passed
 * over.
 *
 * Pictures are read from the blob store one at a time while the sheet is
 * drawn, so a film holds one decoded image at most. The annotations come
 * from the index (UTF-8 already); a de-identified share link gets them
 * without the patient's name, ID, birth date, institution and dates.
 */
#include "api/api_film_sheet.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_film.h"
#include "api/api_internal.h"
#include "api/api_orders.h"
#include "core/alloc.h"
#include "core/log.h"
#include "film/pdf.h"
#include "film/sheet.h"

#define FAIL(err, st, ...) cp_error_set((err), (st), CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, \
                                        __VA_ARGS__)

#define SHEET_PATH_MAX 4200

/* The largest grid a release's film chooses by itself (4x5 on 14x17 in). */
#define SHEET_AUTO_CELLS 20

/* One picture of the study, as the index knows it. */
typedef struct film_item {
    int64_t series_number;
    size_t series_seq;                  /* the series' first-seen order, for equal numbers */
    int64_t number;
    size_t seq;                         /* arrival order, for equal numbers */
    char modality[INDEX_CS_MAX + 1];
    char blob_key[INDEX_BLOB_KEY_MAX + 1];
} film_item;

typedef struct film_study {
    index_instance_record first;        /* patient and study of the first picture */
    int64_t institution_id;
    char series_uid[INDEX_UID_MAX + 1]; /* the last series seen, to number series */
    size_t series_seen;
    film_item *items;
    size_t count, cap;
} film_study;

/* --- the study's pictures ------------------------------------------------------------ */

static cp_status item_one(void *ctx, const index_row *row)
{
    film_study *fs = ctx;
    const index_instance_record *rec = &row->rec;
    film_item *it;
    cp_status st;

    if (rec->instance.rows == 0 || rec->instance.columns == 0 || rec->instance.blob_key[0] == 0)
        return CP_OK;
    st = cp_array_grow(&fs->items, &fs->cap, fs->count, sizeof(*fs->items), 64,
                       API_FILM_INSTANCES_MAX);
    if (st != CP_OK)
        return st;
    if (fs->count == 0) {
        fs->first = *rec;
        fs->institution_id = row->institution_id;
    }
    if (strcmp(fs->series_uid, rec->series.uid) != 0) {
        /* Rows of one series mostly come together; a series seen again gets a later seq. */
        snprintf(fs->series_uid, sizeof(fs->series_uid), "%s", rec->series.uid);
        fs->series_seen++;
    }
    it = &fs->items[fs->count];
    it->series_number = rec->series.number;
    it->series_seq = fs->series_seen;
    it->number = rec->instance.number;
    it->seq = fs->count;
    memcpy(it->modality, rec->series.modality, sizeof(it->modality));
    memcpy(it->blob_key, rec->instance.blob_key, sizeof(it->blob_key));
    fs->count++;
    return CP_OK;
}

static int cmp64(int64_t x, int64_t y)
{
    return x < y ? -1 : x > y;
}

static int item_cmp(const void *pa, const void *pb)
{
    const film_item *x = pa, *y = pb;
    int c = cmp64(x->series_number, y->series_number);

    if (c == 0)
        c = cmp64((int64_t)x->series_seq, (int64_t)y->series_seq);
    if (c == 0)
        c = cmp64(x->number, y->number);
    return c != 0 ? c : cmp64((int64_t)x->seq, (int64_t)y->seq);
}

/* Whether two sorted items are of the same series. */
static bool same_series(const film_item *x, const film_item *y)
{
    return x->series_number == y->series_number && x->series_seq == y->series_seq;
}

static cp_status study_load(api_service *a, const char *study_uid, film_study *fs,
                            cp_error *err)
{
    index_term term = { "StudyInstanceUID", study_uid };
    index_query_spec spec;
    cp_status st;

    memset(fs, 0, sizeof(*fs));
    memset(&spec, 0, sizeof(spec));
    spec.level = INDEX_LEVEL_INSTANCE;
    spec.terms = &term;
    spec.term_count = 1;
    spec.limit = API_FILM_INSTANCES_MAX;
    if (a->cfg.idx == NULL || a->film_store == NULL)
        return FAIL(err, CP_ERR_UNAVAILABLE, "film: no index or store");
    st = index_query(a->cfg.idx, &spec, item_one, fs, err);
    if (st == CP_OK && fs->count == 0)
        st = FAIL(err, CP_ERR_NOT_FOUND, "film: the study holds no pictures");
    if (st == CP_OK)
        qsort(fs->items, fs->count, sizeof(*fs->items), item_cmp);
    return st;
}

static void study_free(film_study *fs)
{
    cp_free(fs->items);
    fs->items = NULL;
}

/* --- making the film -------------------------------------------------------------------- */

/* A dcm_source over a blob, read in order and at offsets. */
static cp_status blob_read(void *ctx, void *buf, size_t len, size_t *got)
{
    return store_read(ctx, buf, len, got, NULL);
}

static cp_status blob_pread(void *ctx, uint64_t offset, void *buf, size_t len, size_t *got)
{
    return store_pread(ctx, offset, buf, len, got, NULL);
}

static void blob_close(void *ctx)
{
    store_close(ctx);
}

static const dcm_source_ops blob_ops = { blob_read, blob_pread, blob_close };

/* Loads one picture; false (an empty cell follows) when it cannot be shown. */
static bool load_item(store *st, const film_item *it, const sheet_window *win, uint32_t cw,
                      uint32_t ch, sheet_image *img)
{
    store_reader *rd = NULL;
    dcm_source *src;
    cp_status rc;

    if (store_open(st, it->blob_key, &rd, NULL) != CP_OK)
        return false;
    src = dcm_source_create(&blob_ops, rd);
    if (src == NULL) {
        store_close(rd);
        return false;
    }
    dcm_source_set_size(src, store_reader_size(rd));
    rc = sheet_image_load(src, win, cw, ch, img, NULL);
    dcm_source_destroy(src);
    return rc == CP_OK;
}

size_t api_film_sheet_key_images(api_service *a, const char *study_uid, uint32_t side,
                                 api_film_key_image *out, size_t max)
{
    film_study fs;
    size_t n = 0;
    cp_error err;

    cp_error_clear(&err);
    if (study_load(a, study_uid, &fs, &err) != CP_OK) {
        study_free(&fs);
        return 0;
    }
    for (size_t i = 0, j; i < fs.count && n < max; i = j) {
        const film_item *it;

        for (j = i; j < fs.count && same_series(&fs.items[i], &fs.items[j]); j++)
            ;
        it = &fs.items[i + (j - i) / 2];
        memset(&out[n], 0, sizeof(out[n]));
        if (!load_item(a->film_store, it, NULL, side, side, &out[n].img))
            continue;
        out[n].series_number = it->series_number;
        out[n].instance_number = it->number;
        n++;
    }
    study_free(&fs);
    return n;
}

typedef struct film_texts {
    char name[INDEX_PN_GROUP_MAX + 1];
    char age[16];
    char institution[DIRECTORY_NAME_MAX + 1];
} film_texts;

/* Age in whole years at the study, "45Y"; "" when a date is missing. */
static void age_at(const char *birth, const char *study, char *out, size_t cap)
{
    int b, s, years;

    out[0] = '\0';
    if (strlen(birth) != 8 || strlen(study) != 8 || strspn(birth, "0123456789") != 8 ||
        strspn(study, "0123456789") != 8)
        return;
    b = atoi(birth);
    s = atoi(study);
    years = s / 10000 - b / 10000 - (s % 10000 < b % 10000 ? 1 : 0);
    if (years >= 0 && years < 200)
        snprintf(out, cap, "%dY", years);
}

static void fill_notes(api_service *a, const film_study *fs, bool deidentify, film_texts *t,
                       sheet_notes *n)
{
    const index_instance_record *r = &fs->first;
    const index_person_name *pn = &r->patient.name;
    const char *src = pn->ideographic[0] ? pn->ideographic : pn->alphabetic;
    directory_institution inst;
    size_t i, j;

    /* Family and given names: "张伟" in ideographs, "WANG FANG" in letters. */
    for (i = 0, j = 0; src[i] && j + 1 < sizeof(t->name); i++) {
        if (src[i] != '^')
            t->name[j++] = src[i];
        else if (!pn->ideographic[0])
            t->name[j++] = ' ';
    }
    t->name[j] = '\0';
    age_at(r->patient.birth_date, r->study.date, t->age, sizeof(t->age));
    t->institution[0] = '\0';
    if (a->cfg.dir && fs->institution_id != 0 &&
        directory_institution_get(a->cfg.dir, fs->institution_id, &inst, NULL) == CP_OK)
        snprintf(t->institution, sizeof(t->institution), "%s", inst.name);

    memset(n, 0, sizeof(*n));
    n->sex = r->patient.sex;
    n->series_number = INT64_MIN;
    n->instance_number = INT64_MIN;
    if (deidentify)
        return;
    n->patient_name = t->name;
    n->patient_id = r->patient.id;
    n->age = t->age[0] ? t->age : r->patient.birth_date;
    n->institution = t->institution;
    n->study_date = r->study.date;
    n->study_time = r->study.time;
}

/* The sheet options of o; CP_ERR_INVALID (with the reason) for what sheet.h refuses. */
static cp_status sheet_opts(const api_film_sheet_opts *o, const film_study *fs,
                            sheet_options *so, cp_error *err)
{
    size_t most = 0, run = 0;
    sheet_window w;
    bool known;

    memset(so, 0, sizeof(*so));
    if (!sheet_size_find(o->size != NULL ? o->size : "14x17in", &so->size))
        return FAIL(err, CP_ERR_INVALID, "size is 8x10in, 10x12in, 11x14in, 14x14in, "
                                         "14x17in, A4 or A3");
    so->landscape = o->landscape;
    so->dpi = o->dpi != 0 ? o->dpi : SHEET_DPI_SCREEN;
    if (o->preset != NULL && !sheet_preset_find(o->preset, "CT", &w, &known))
        return FAIL(err, CP_ERR_INVALID, "preset is lung, mediastinum, bone, brain, abdomen "
                                         "or default");
    if (o->layout != NULL && strcasecmp(o->layout, "auto") != 0) {
        if (!sheet_layout_parse(o->layout, &so->rows, &so->cols))
            return FAIL(err, CP_ERR_INVALID, "layout is 1x1, 2x2, 3x3, 3x4, 4x5, 5x6 or auto");
    } else {
        for (size_t i = 0; i < fs->count; i++) {
            run = i > 0 && same_series(&fs->items[i - 1], &fs->items[i]) ? run + 1 : 1;
            most = run > most ? run : most;
        }
        sheet_layout_auto(most < SHEET_AUTO_CELLS ? most : SHEET_AUTO_CELLS, so->landscape,
                          &so->rows, &so->cols);
    }
    if (!sheet_pixels(so, &(uint32_t){ 0 }, &(uint32_t){ 0 }))
        return FAIL(err, CP_ERR_INVALID, "dpi is %d to %d", SHEET_DPI_MIN, SHEET_DPI_MAX);
    return CP_OK;
}

/* Draws one series' sheet: its picks, the cells the writer wants loaded. */
static cp_status film_series(store *bs, sheet_writer *w, const film_study *fs, size_t from,
                             size_t count, const sheet_options *so, const char *preset,
                             sheet_notes *notes, cp_error *err)
{
    size_t cells = (size_t)so->rows * so->cols;
    size_t *picks = cp_calloc(cells, sizeof(*picks));
    size_t n;
    uint32_t cw, ch;
    sheet_window win;
    bool known = false;
    cp_status st = CP_OK;

    if (picks == NULL)
        return FAIL(err, CP_ERR_NOMEM, "film: picks");
    sheet_cell_pixels(so, &cw, &ch);
    sheet_preset_find(preset, fs->items[from].modality, &win, &known);
    n = sheet_pick(count, cells, picks);
    sheet_writer_break(w);
    for (size_t i = 0; st == CP_OK && i < n; i++) {
        const film_item *it = &fs->items[from + picks[i]];
        sheet_image img;
        bool loaded;

        memset(&img, 0, sizeof(img));
        notes->modality = it->modality;
        notes->series_number = it->series_number;
        notes->instance_number = it->number;
        loaded = sheet_writer_wants(w) && load_item(bs, it, known ? &win : NULL, cw, ch, &img);
        st = sheet_writer_add(w, loaded ? &img : NULL, notes, err);
        sheet_image_clear(&img);
    }
    cp_free(picks);
    return st;
}

/*
 * The film of the study fs into out: a PDF of every sheet, or the PNG of
 * sheet page. *pages (may be NULL) gets the sheets.
 */
static cp_status film_make(api_service *a, const film_study *fs, const api_film_sheet_opts *o,
                           bool deidentify, sheet_format format, unsigned page, cp_buf *out,
                           unsigned *pages, cp_error *err)
{
    sheet_options so;
    sheet_notes notes;
    film_texts texts;
    sheet_writer *w = NULL;
    size_t start = 0, sheets = 0;
    cp_status st;

    st = sheet_opts(o, fs, &so, err);
    if (st != CP_OK)
        return st;
    fill_notes(a, fs, deidentify, &texts, &notes);
    so.institution = notes.institution;
    so.title = API_FILM_SHEET_TITLE;
    st = sheet_writer_create(&so, format, page, out, &w, err);
    while (st == CP_OK && start < fs->count && sheets < SHEET_PAGES_MAX) {
        size_t end = start + 1;

        while (end < fs->count && same_series(&fs->items[start], &fs->items[end]))
            end++;
        st = film_series(a->film_store, w, fs, start, end - start, &so, o->preset, &notes, err);
        start = end;
        sheets++;
    }
    if (st == CP_OK)
        st = sheet_writer_finish(w, pages, err);
    sheet_writer_destroy(w);
    return st;
}

/* The film of a study into out, loading it first. */
static cp_status film_of_study(api_service *a, const char *study_uid,
                               const api_film_sheet_opts *o, bool deidentify,
                               sheet_format format, unsigned page, cp_buf *out,
                               unsigned *pages, cp_error *err)
{
    film_study fs;
    cp_status st = study_load(a, study_uid, &fs, err);

    if (st == CP_OK)
        st = film_make(a, &fs, o, deidentify, format, page, out, pages, err);
    study_free(&fs);
    return st;
}

/* Writes len bytes to path whole or not at all. */
static cp_status write_whole(const char *path, const void *data, size_t len, cp_error *err)
{
    char tmp[SHEET_PATH_MAX + 8];
    FILE *f;
    bool ok;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return FAIL(err, CP_ERR_INVALID, "film: the path is too long");
    f = fopen(tmp, "wb");
    if (f == NULL)
        return FAIL(err, CP_ERR_IO, "film: %s: %s", tmp, strerror(errno));
    ok = fwrite(data, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) != 0)
        ok = false;
    if (!ok) {
        unlink(tmp);
        return FAIL(err, CP_ERR_IO, "film: %s could not be written", path);
    }
    return CP_OK;
}

cp_status api_film_sheet_write(api_service *a, int64_t order_id, const api_film_sheet_opts *o,
                               const char *path, cp_error *err)
{
    static const api_film_sheet_opts defaults;
    cp_buf pdf = CP_BUF_INIT;
    order ord;
    cp_status st;

    if (a->cfg.orders == NULL)
        return FAIL(err, CP_ERR_UNAVAILABLE, "film: no orders");
    st = order_get(a->cfg.orders, order_id, &ord, err);
    if (st == CP_OK)
        st = film_of_study(a, ord.study_uid, o != NULL ? o : &defaults, false, SHEET_PDF, 0,
                           &pdf, NULL, err);
    if (st == CP_OK)
        st = write_whole(path, pdf.data, pdf.len, err);
    cp_buf_free(&pdf);
    return st;
}

static void film_path(const api_service *a, int64_t order_id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/order-%" PRId64 "-film.pdf", a->cfg.film_dir, order_id);
}

void api_film_sheet_on_release(api_service *a, const order *o)
{
    static const api_film_sheet_opts defaults;
    char path[SHEET_PATH_MAX], sop[INDEX_UID_MAX + 1];
    cp_buf pdf = CP_BUF_INIT;
    film_study fs;
    unsigned pages = 0;
    cp_error err;
    cp_status st;

    if (!a->cfg.film || !a->cfg.film_dir || a->film_store == NULL)
        return;
    cp_error_clear(&err);
    st = study_load(a, o->study_uid, &fs, &err);
    if (st == CP_OK)
        st = film_make(a, &fs, &defaults, false, SHEET_PDF, 0, &pdf, &pages, &err);
    if (st == CP_OK) {
        film_path(a, o->id, path, sizeof(path));
        st = write_whole(path, pdf.data, pdf.len, &err);
    }
    if (st == CP_OK && a->cfg.arc)
        st = pdf_store(a->cfg.arc, a->cfg.idx, o->study_uid,
                       fs.institution_id ? fs.institution_id : o->requesting_id,
                       API_FILM_SHEET_TITLE, pdf.data, pdf.len, sop, &err);
    if (st == CP_OK)
        cp_log_info("api.film_sheet_ready", "order=%" PRId64 " sheets=%u bytes=%zu", o->id,
                    pages, pdf.len);
    else
        cp_log_warn("api.film_sheet", "order=%" PRId64 " detail=\"%s\"", o->id, err.detail);
    study_free(&fs);
    cp_buf_free(&pdf);
}

/* --- the routes ---------------------------------------------------------------------------- */

/* A whole number lo..hi, or def when absent; false when malformed. */
static bool query_uint(http_request *req, const char *name, unsigned lo, unsigned hi,
                       unsigned def, unsigned *out)
{
    const char *s = http_request_query(req, name);
    char *end = NULL;
    unsigned long v;

    *out = def;
    if (s == NULL)
        return true;
    if (*s < '0' || *s > '9' || strlen(s) > 6)
        return false;
    v = strtoul(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

/* The film options of the query; false after a 400. */
static bool read_query(http_request *req, api_film_sheet_opts *o, sheet_format *format,
                       unsigned *page)
{
    const char *fmt = http_request_query(req, "format");
    const char *orient = http_request_query(req, "orientation");

    memset(o, 0, sizeof(*o));
    o->size = http_request_query(req, "size");
    o->layout = http_request_query(req, "layout");
    o->preset = http_request_query(req, "preset");
    if (fmt != NULL && strcmp(fmt, "pdf") != 0 && strcmp(fmt, "png") != 0) {
        api_respond_error(req, 400, "invalid", "format is pdf or png");
        return false;
    }
    *format = fmt != NULL && strcmp(fmt, "png") == 0 ? SHEET_PNG : SHEET_PDF;
    if (orient != NULL && strcmp(orient, "portrait") != 0 && strcmp(orient, "landscape") != 0) {
        api_respond_error(req, 400, "invalid", "orientation is portrait or landscape");
        return false;
    }
    o->landscape = orient != NULL && strcmp(orient, "landscape") == 0;
    if (!query_uint(req, "page", 1, SHEET_PAGES_MAX, 1, page)) {
        api_respond_error(req, 400, "invalid", "page is 1 to 8");
        return false;
    }
    if (!query_uint(req, "dpi", SHEET_DPI_MIN, SHEET_DPI_MAX, SHEET_DPI_SCREEN, &o->dpi)) {
        api_respond_error(req, 400, "invalid", "dpi is 72 to 600");
        return false;
    }
    /* A PNG sheet is held whole while it is drawn: 14x17 in at 300 dpi is 86 MB already. */
    if (*format == SHEET_PNG && o->dpi > SHEET_DPI_PRINT) {
        api_respond_error(req, 400, "invalid", "a PNG sheet is at most 300 dpi");
        return false;
    }
    return true;
}

/* Answers the film made into out (or the failure that stopped it). */
static cp_status respond_film(http_request *req, cp_status st, const cp_error *err,
                              sheet_format format, cp_buf *out)
{
    cp_status rs;

    if (st == CP_ERR_NOT_FOUND)
        rs = api_respond_error(req, 404, "not_found", err->detail[0] ? err->detail
                                                                     : "no such sheet");
    else if (st == CP_ERR_INVALID)
        rs = api_respond_error(req, 400, "invalid", err->detail);
    else if (st == CP_ERR_UNAVAILABLE)
        rs = api_respond_error(req, 503, "unavailable", "film sheets are not made here");
    else if (st != CP_OK)
        rs = api_respond_status(req, st, err);
    else {
        http_response_header(req, "Cache-Control", "no-store");
        http_response_header(req, "Content-Disposition", format == SHEET_PNG
                                                             ? "inline; filename=\"film.png\""
                                                             : "inline; filename=\"film.pdf\"");
        rs = http_respond_buffer(req, 200, format == SHEET_PNG ? "image/png"
                                                               : "application/pdf",
                                 out->data, out->len);
    }
    cp_buf_free(out);
    return rs;
}

cp_status api_film_sheet_handle_order(http_request *req, void *ctx)
{
    api_service *a = ctx;
    api_film_sheet_opts o;
    sheet_format format;
    unsigned page;
    cp_buf out = CP_BUF_INIT;
    order ord;
    cp_error err;
    cp_status st;

    if (!api_order_load(a, req, &ord))
        return CP_OK;
    if (ord.state != ORDER_RELEASED)
        return api_respond_error(req, 404, "not_found", "the report is not released yet");
    if (!read_query(req, &o, &format, &page))
        return CP_OK;
    cp_error_clear(&err);
    st = film_of_study(a, ord.study_uid, &o, false, format, page, &out, NULL, &err);
    if (st == CP_OK)
        api_order_audit(a, req, AUDIT_PATIENT_RECORD, AUDIT_READ, "film_sheet_read", &ord);
    return respond_film(req, st, &err, format, &out);
}

static cp_status released_one(void *ctx, const order *o)
{
    *(int64_t *)ctx = o->id;
    return CP_OK;
}

/* The film kept at release for the study's latest released order; false when none. */
static bool kept_film(api_service *a, const char *study_uid, char *path, size_t cap)
{
    static const order_state released[] = { ORDER_RELEASED };
    order_filter f;
    int64_t id = 0;
    struct stat sb;

    memset(&f, 0, sizeof(f));
    f.states = released;
    f.state_count = 1;
    f.study_uid = study_uid;
    if (!a->cfg.orders || !a->cfg.film_dir ||
        order_list(a->cfg.orders, &f, released_one, &id, NULL) != CP_OK || id == 0)
        return false;
    film_path(a, id, path, cap);
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

cp_status api_film_sheet_handle_pdf(http_request *req, void *ctx)
{
    api_service *a = ctx;
    static const api_film_sheet_opts defaults;
    char path[SHEET_PATH_MAX];
    film_share_link link;
    cp_buf out = CP_BUF_INIT;
    cp_error err;
    cp_status st;
    int fd;

    if (!api_film_gate_study(a, req, &link))
        return CP_OK;
    api_film_audit(a, req, &link, AUDIT_INSTANCES_ACCESSED, "share_film_pdf");
    /* The film kept at release has the patient's data: a de-identified link gets its own. */
    if (!link.deidentify && kept_film(a, link.study_uid, path, sizeof(path)) &&
        (fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
        struct stat sb;

        if (fstat(fd, &sb) == 0) {
            http_response_header(req, "Cache-Control", "no-store");
            http_response_header(req, "Content-Disposition", "inline; filename=\"film.pdf\"");
            return http_respond_fd(req, 200, "application/pdf", fd, 0, (uint64_t)sb.st_size);
        }
        close(fd);
    }
    cp_error_clear(&err);
    st = film_of_study(a, link.study_uid, &defaults, link.deidentify, SHEET_PDF, 0, &out, NULL,
                       &err);
    return respond_film(req, st, &err, SHEET_PDF, &out);
}

cp_status api_film_sheet_handle_png(http_request *req, void *ctx)
{
    api_service *a = ctx;
    static const api_film_sheet_opts defaults;
    film_share_link link;
    cp_buf out = CP_BUF_INIT;
    unsigned page;
    cp_error err;
    cp_status st;

    if (!api_film_gate_study(a, req, &link))
        return CP_OK;
    if (!query_uint(req, "page", 1, SHEET_PAGES_MAX, 1, &page))
        return api_respond_error(req, 400, "invalid", "page is 1 to 8");
    api_film_audit(a, req, &link, AUDIT_INSTANCES_ACCESSED, "share_film_png");
    cp_error_clear(&err);
    st = film_of_study(a, link.study_uid, &defaults, link.deidentify, SHEET_PNG, page, &out,
                       NULL, &err);
    return respond_film(req, st, &err, SHEET_PNG, &out);
}
