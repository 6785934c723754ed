/*
 * render.c - WADO-RS rendered resources (PS3.18 10.4.1.1.3) and thumbnails
 * (10.4.1.1.4), with the rendering query parameters of PS3.18 8.3.5:
 * window, viewport and quality, and the image/jpeg or image/png media types
 * of 8.7.4.
 *
 * One instance or one frame is answered as a single image. A frame list, a
 * series or a study is answered as multipart/related, one image per frame
 * or per instance (its first frame), made one part per producer call so
 * that a large series is never held whole; instances without pixel data
 * are left out of a series or study.
 *
 * A thumbnail is one small picture (DWEB_THUMB_SIZE_DEFAULT square unless
 * a viewport is asked for) of the first frame of the first instance with
 * pixels. It is kept in the blob store under thumbs/{sop}/{hash}-{frame}-
 * {w}x{h}-{q}.{ext}, where {hash} begins the instance's content hash from
 * the index: a replaced instance has another hash, so a stale thumbnail is
 * never served, and the ETag carries the same hash for If-None-Match.
 *
 * Both first pass dweb_study_gate (a hidden study is 404), which records a
 * session's looks at a study at most once per DWEB_AUDIT_VIEW_WINDOW_S.
 */
#include "dicomweb/render.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dataset.h"
#include "dicomweb/dicomweb.h"
#include "dicomweb/wado.h"
#include "http/accept.h"
#include "http/multipart.h"
#include "index/index.h"
#include "pixel/pixel.h"

/* One instance to render, as the index knows it. */
typedef struct render_item {
    char sop_uid[INDEX_UID_MAX + 1];
    char blob_key[INDEX_BLOB_KEY_MAX + 1];
    uint8_t hash[INDEX_HASH_SIZE];
    uint32_t frame;                 /* 1-based */
} render_item;

typedef struct render_list {
    render_item *items;
    size_t count;
    size_t cap;
} render_list;

/* --- parameters -------------------------------------------------------------- */

void dweb_render_opts_init(dweb_render_opts *o)
{
    memset(o, 0, sizeof *o);
    o->params.voi_function = PX_VOI_LINEAR;
    o->quality = DWEB_RENDER_QUALITY_DEFAULT;
    o->media = DWEB_MEDIA_JPEG;
}

/*
 * Splits text at commas into at most max fields of under 32 bytes each. The
 * count, or -1 when there are too many or one is too long.
 */
static int split_fields(const char *text, char fields[][32], int max)
{
    int n = 0;

    for (;;) {
        const char *comma = strchr(text, ',');
        size_t len = comma != NULL ? (size_t)(comma - text) : strlen(text);

        if (n == max || len >= 32)
            return -1;
        memcpy(fields[n], text, len);
        fields[n][len] = '\0';
        n++;
        if (comma == NULL)
            return n;
        text = comma + 1;
    }
}

/* A finite decimal number filling the whole field. */
static bool parse_double(const char *s, double *out)
{
    char *end = NULL;

    while (*s == ' ')
        s++;
    if (*s == '\0')
        return false;
    *out = strtod(s, &end);
    while (*end == ' ')
        end++;
    return *end == '\0' && isfinite(*out);
}

cp_status dweb_render_parse_window(const char *text, dweb_render_opts *o)
{
    char f[4][32];
    int n;
    double c = 0.0;
    double w = 0.0;
    px_voi_function fn = PX_VOI_LINEAR;

    if (text == NULL)
        return CP_ERR_INVALID;
    n = split_fields(text, f, 4);
    if (n < 2 || n > 3 || !parse_double(f[0], &c) || !parse_double(f[1], &w))
        return CP_ERR_INVALID;
    if (n == 3) {
        if (strcasecmp(f[2], "linear") == 0)
            fn = PX_VOI_LINEAR;
        else if (strcasecmp(f[2], "linear-exact") == 0)
            fn = PX_VOI_LINEAR_EXACT;
        else if (strcasecmp(f[2], "sigmoid") == 0)
            fn = PX_VOI_SIGMOID;
        else
            return CP_ERR_INVALID;
    }

    /* PS3.3 C.11.2.1.2: LINEAR needs a width of at least 1, the others above 0. */
    if ((fn == PX_VOI_LINEAR && w < 1.0) || w <= 0.0)
        return CP_ERR_INVALID;
    o->params.has_window = true;
    o->params.window_center = c;
    o->params.window_width = w;
    o->params.voi_function = fn;
    return CP_OK;
}

/* A whole number from lo to hi filling the field. */
static bool parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *end = NULL;

    if (*s < '0' || *s > '9' || strlen(s) > 10)
        return false;
    *out = strtoul(s, &end, 10);
    return *end == '\0' && *out >= lo && *out <= hi;
}

cp_status dweb_render_parse_viewport(const char *text, dweb_render_opts *o)
{
    char f[6][32];
    unsigned long v[6] = { 0 };
    int n;

    if (text == NULL)
        return CP_ERR_INVALID;
    n = split_fields(text, f, 6);
    if (n != 2 && n != 6)
        return CP_ERR_INVALID;
    for (int i = 0; i < n; i++) {
        unsigned long lo = (i < 2 || i >= 4) ? 1 : 0;
        unsigned long hi = i < 2 ? DWEB_RENDER_VIEWPORT_MAX : UINT32_MAX;

        if (!parse_uint(f[i], lo, hi, &v[i]))
            return CP_ERR_INVALID;
    }
    o->params.viewport_width = (uint32_t)v[0];
    o->params.viewport_height = (uint32_t)v[1];
    if (n == 6) {
        o->has_region = true;
        o->region_fraction = false;
        for (int i = 0; i < 4; i++)
            o->region[i] = (double)v[2 + i];
    }
    return CP_OK;
}

cp_status dweb_render_parse_quality(const char *text, int *quality)
{
    unsigned long v = 0;

    if (text == NULL || !parse_uint(text, 1, 100, &v))
        return CP_ERR_INVALID;
    *quality = (int)v;
    return CP_OK;
}

int dweb_render_choose_media(const char *accept)
{
    static const http_offer offers[] = {
        { "image/jpeg", NULL, NULL },
        { "image/png", NULL, NULL },
    };
    http_accept acc;
    int i;

    if (accept == NULL || accept[0] == '\0')
        return DWEB_MEDIA_JPEG;
    if (http_accept_parse(accept, &acc) != CP_OK)
        return -1;
    i = http_accept_choose(&acc, offers, 2, NULL);
    return i < 0 ? -1 : (i == 0 ? DWEB_MEDIA_JPEG : DWEB_MEDIA_PNG);
}

const char *dweb_render_media_type(dweb_render_media media)
{
    return media == DWEB_MEDIA_PNG ? "image/png" : "image/jpeg";
}

/* --- rendering one frame --------------------------------------------------------- */

/* The region of o in whole source pixels; false when it leaves the frame. */
static bool region_pixels(const dweb_render_opts *o, const px_frame *f, uint32_t r[4])
{
    double x, y, w, h;

    if (o->region_fraction) {
        x = floor(o->region[0] * f->columns);
        y = floor(o->region[1] * f->rows);
        w = ceil(o->region[2] * f->columns) - x;
        h = ceil(o->region[3] * f->rows) - y;
    } else {
        x = o->region[0];
        y = o->region[1];
        w = o->region[2];
        h = o->region[3];
    }
    if (x < 0 || y < 0 || w < 1 || h < 1 || x + w > f->columns || y + h > f->rows)
        return false;
    r[0] = (uint32_t)x;
    r[1] = (uint32_t)y;
    r[2] = (uint32_t)w;
    r[3] = (uint32_t)h;
    return true;
}

/* Replaces the frame by the region r (x, y, w, h) of it. */
static cp_status crop_frame(px_frame *f, const uint32_t r[4])
{
    size_t px = (size_t)f->samples_per_pixel * px_sample_size(f->type);
    size_t row = (size_t)r[2] * px;
    px_frame c = *f;

    c.columns = r[2];
    c.rows = r[3];
    c.size = row * r[3];
    c.data = cp_malloc(c.size);
    if (c.data == NULL)
        return CP_ERR_NOMEM;
    for (uint32_t y = 0; y < r[3]; y++)
        memcpy(c.data + y * row, f->data + ((size_t)(r[1] + y) * f->columns + r[0]) * px,
               row);
    px_frame_clear(f);
    *f = c;
    return CP_OK;
}

int dweb_render_blob(store *st, const char *blob_key, uint32_t frame,
                     const dweb_render_opts *o, cp_buf *out, const char **why)
{
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    dcm_read_options ro;
    px_image img;
    bool img_ready = false;
    px_presentation *pres = NULL;
    px_frame fr;
    px_picture pic;
    cp_buf bytes;
    uint32_t r[4] = { 0, 0, 0, 0 };
    int status = 500;
    cp_status st_;

    memset(&fr, 0, sizeof fr);
    memset(&pic, 0, sizeof pic);
    cp_buf_init(&bytes);
    *why = "the instance cannot be read";
    if (dweb_open_source(st, blob_key, &src, NULL) != CP_OK)
        goto done;
    memset(&ro, 0, sizeof ro);
    if (dcm_file_read(src, &ro, &file, NULL) != CP_OK)
        goto done;
    if (dcm_dataset_get(file->dataset, DCM_TAG_PIXEL_DATA) == NULL &&
        dcm_dataset_get(file->dataset, DCM_TAG_FLOAT_PIXEL_DATA) == NULL &&
        dcm_dataset_get(file->dataset, DCM_TAG_DOUBLE_FLOAT_PIXEL_DATA) == NULL) {
        status = 406;
        *why = "the instance holds no pixel data to render";
        goto done;
    }
    if (px_image_init(&img, file, src, NULL) != CP_OK) {
        *why = "the image pixel attributes are inconsistent";
        goto done;
    }
    img_ready = true;
    if (frame == 0 || frame > img.frames) {
        status = 404;
        *why = "no such frame";
        goto done;
    }
    if (!px_can_decode(img.transfer_syntax)) {
        status = 501;
        *why = "no decoder for the stored transfer syntax";
        goto done;
    }

    *why = "the pixel data does not decode";
    if (px_frame_bytes(&img, src, frame - 1, &bytes, NULL) != CP_OK)
        goto done;
    st_ = px_decode_frame(&img, bytes.data, bytes.len, &fr, NULL);
    if (st_ != CP_OK) {
        status = st_ == CP_ERR_UNSUPPORTED ? 501 : 500;
        goto done;
    }
    if (o->has_region) {
        if (!region_pixels(o, &fr, r)) {
            status = 400;
            *why = "the region lies outside the image";
            goto done;
        }
        if (crop_frame(&fr, r) != CP_OK)
            goto done;
    }

    *why = "the frame cannot be rendered";
    if (px_presentation_create(file->dataset, src, frame - 1, &pres, NULL) != CP_OK)
        goto done;
    if (px_render(&img, pres, &fr, &o->params, &pic, NULL) != CP_OK)
        goto done;
    if (o->media == DWEB_MEDIA_PNG)
        st_ = px_encode_png(&pic, out, NULL);
    else
        st_ = px_encode_jpeg(&pic, o->quality, out, NULL);
    if (st_ != CP_OK)
        goto done;
    status = 200;
    *why = "";

done:
    px_picture_clear(&pic);
    px_frame_clear(&fr);
    px_presentation_destroy(pres);
    cp_buf_free(&bytes);
    if (img_ready)
        px_image_clear(&img);
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    return status;
}

/* --- the request ------------------------------------------------------------------- */

/*
 * Reads the query parameters and the Accept header into o; 0, or the HTTP
 * status to answer with (*why set).
 */
static int read_options(http_request *req, dweb_render_opts *o, bool thumbnail,
                        const char **why)
{
    const char *window = http_request_query(req, "window");
    const char *viewport = http_request_query(req, "viewport");
    const char *quality = http_request_query(req, "quality");
    const char *accept = http_request_query(req, "accept");
    int media;

    dweb_render_opts_init(o);
    if (thumbnail) {
        o->params.viewport_width = DWEB_THUMB_SIZE_DEFAULT;
        o->params.viewport_height = DWEB_THUMB_SIZE_DEFAULT;
    }
    *why = "the window parameter is not center,width[,function]";
    if (window != NULL && (thumbnail || dweb_render_parse_window(window, o) != CP_OK))
        return 400;
    *why = "the viewport parameter is not vw,vh[,sx,sy,sw,sh]";
    if (viewport != NULL && dweb_render_parse_viewport(viewport, o) != CP_OK)
        return 400;
    if (thumbnail && o->has_region)
        return 400;
    *why = "the quality parameter is not 1 to 100";
    if (quality != NULL && dweb_render_parse_quality(quality, &o->quality) != CP_OK)
        return 400;
    media = dweb_render_choose_media(accept != NULL ? accept
                                                    : http_request_header(req, "Accept"));
    *why = "only image/jpeg and image/png are offered";
    if (media < 0)
        return 406;
    o->media = (dweb_render_media)media;
    return 0;
}

static cp_status on_row(void *ctx, const index_row *row)
{
    render_list *l = ctx;
    render_item *it;
    cp_status st;

    st = cp_array_grow(&l->items, &l->cap, l->count, sizeof *l->items, 16,
                       DWEB_RENDER_PARTS_MAX);
    if (st != CP_OK)
        return st;
    it = &l->items[l->count++];
    memcpy(it->sop_uid, row->rec.instance.sop_uid, sizeof it->sop_uid);
    memcpy(it->blob_key, row->rec.instance.blob_key, sizeof it->blob_key);
    memcpy(it->hash, row->rec.instance.hash, sizeof it->hash);
    it->frame = 1;
    return CP_OK;
}

/*
 * The instances the path names, once the principal is found to see the
 * study (a viewer's look recorded at most once a while); 0 or the HTTP
 * status to answer with.
 */
static int find_items(http_request *req, dweb_service *svc, render_list *out,
                      const char **why)
{
    const dweb_config *cfg = dweb_service_config(svc);
    const char *names[] = { "study", "series", "instance" };
    const char *attrs[] = { "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID" };
    index_term terms[3];
    index_query_spec spec;
    size_t n = 0;
    cp_status st;

    for (size_t i = 0; i < 3; i++) {
        const char *v = http_request_param(req, names[i]);

        if (v == NULL)
            continue;
        if (!dweb_uid_is_valid(v)) {
            *why = "the path holds an invalid UID";
            return 400;
        }
        terms[n].attribute = attrs[i];
        terms[n].value = v;
        n++;
    }
    if (n > 0 && strcmp(terms[0].attribute, "StudyInstanceUID") == 0) {
        int status = dweb_study_gate(svc, req, terms[0].value, AUDIT_INSTANCES_ACCESSED,
                                     "rendered", DWEB_AUDIT_THROTTLED, NULL, why);

        if (status != 0)
            return status;
    }
    memset(&spec, 0, sizeof spec);
    spec.level = INDEX_LEVEL_INSTANCE;
    spec.terms = terms;
    spec.term_count = n;
    st = index_query(cfg->idx, &spec, on_row, out, NULL);
    if (st != CP_OK) {
        *why = st == CP_ERR_LIMIT ? "too many instances" : "the index query failed";
        return st == CP_ERR_LIMIT ? 413 : 500;
    }
    if (out->count == 0) {
        *why = "no such instances";
        return 404;
    }
    return 0;
}

/* --- multipart answers --------------------------------------------------------------- */

typedef struct render_stream {
    store *st;
    render_list list;
    dweb_render_opts opts;
    char boundary[HTTP_MULTIPART_BOUNDARY_LEN + 1];
    size_t next;
    size_t sent;                /* parts begun */
    bool closed;
    cp_buf pending;
    size_t pending_pos;
} render_stream;

static void stream_free(void *ctx)
{
    render_stream *s = ctx;

    if (s == NULL)
        return;
    cp_free(s->list.items);
    cp_buf_free(&s->pending);
    cp_free(s);
}

/* Makes the next part; an instance that cannot be rendered is left out. */
static cp_status next_part(render_stream *s)
{
    cp_buf img;
    const char *why = NULL;
    const render_item *it = &s->list.items[s->next++];
    cp_status st = CP_OK;

    cp_buf_init(&img);
    if (dweb_render_blob(s->st, it->blob_key, it->frame, &s->opts, &img, &why) == 200) {
        st = http_multipart_write_part_start(&s->pending, s->boundary, s->sent == 0,
                                             dweb_render_media_type(s->opts.media), NULL);
        if (st == CP_OK)
            st = cp_buf_append(&s->pending, img.data, img.len);
        s->sent++;
    }
    cp_buf_free(&img);
    return st;
}

static ssize_t produce(void *ctx, uint64_t pos, uint8_t *buf, size_t max)
{
    render_stream *s = ctx;

    (void)pos;
    for (;;) {
        if (s->pending_pos < s->pending.len) {
            size_t n = s->pending.len - s->pending_pos;

            n = n < max ? n : max;
            memcpy(buf, s->pending.data + s->pending_pos, n);
            s->pending_pos += n;
            return (ssize_t)n;
        }
        cp_buf_reset(&s->pending);
        s->pending_pos = 0;
        if (s->next < s->list.count) {
            if (next_part(s) != CP_OK)
                return HTTP_STREAM_ERROR;
            continue;
        }
        if (s->closed)
            return HTTP_STREAM_END;
        s->closed = true;
        if (http_multipart_write_close(&s->pending, s->boundary) != CP_OK)
            return HTTP_STREAM_ERROR;
    }
}

/* Answers the items of s as multipart/related; s is the response's from here on. */
static cp_status respond_multipart(http_request *req, render_stream *s)
{
    char ctype[HTTP_MEDIA_MAX + HTTP_MULTIPART_BOUNDARY_LEN + 48];

    snprintf(ctype, sizeof ctype, "multipart/related; type=\"%s\"; boundary=%s",
             dweb_render_media_type(s->opts.media), s->boundary);
    return http_respond_stream(req, 200, ctype, -1, produce, s, stream_free);
}

/* --- handlers -------------------------------------------------------------------------- */

/*
 * The ETag of a rendered image, also its key in the service's cache: FNV-1a
 * over the instance's content hash, the frame and every option that changes
 * the picture. A replaced instance has another hash, hence another tag.
 */
static void render_etag(const uint8_t *hash, uint32_t frame, const dweb_render_opts *o,
                        char *out, size_t cap)
{
    uint64_t h = 0xcbf29ce484222325ull;
    uint64_t v[14];

    v[0] = frame;
    v[1] = o->params.has_window;
    memcpy(&v[2], &o->params.window_center, sizeof v[2]);
    memcpy(&v[3], &o->params.window_width, sizeof v[3]);
    v[4] = (uint64_t)o->params.voi_function;
    v[5] = o->params.viewport_width;
    v[6] = o->params.viewport_height;
    v[7] = o->params.invert;
    v[8] = (uint64_t)o->has_region << 1 | (uint64_t)o->region_fraction;
    for (size_t i = 0; i < 4; i++)
        memcpy(&v[9 + i], &o->region[i], sizeof v[9]);
    v[13] = (uint64_t)o->quality << 8 | (uint64_t)o->media;
    for (size_t i = 0; i < INDEX_HASH_SIZE; i++)
        h = (h ^ hash[i]) * 0x100000001b3ull;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        for (size_t b = 0; b < 8; b++)
            h = (h ^ ((v[i] >> (8 * b)) & 0xff)) * 0x100000001b3ull;
    snprintf(out, cap, "\"r%016" PRIx64 "\"", h);
}

cp_status dweb_render_respond(http_request *req, dweb_service *svc, const char *blob_key,
                              const uint8_t *hash, uint32_t frame, const dweb_render_opts *o)
{
    const char *inm = http_request_header(req, "If-None-Match");
    const char *type = dweb_render_media_type(o->media);
    char etag[48];
    cp_buf img;
    const char *why = NULL;
    uint8_t *data;
    size_t len = 0;
    int status;
    cp_status rc;

    render_etag(hash, frame, o, etag, sizeof etag);
    if ((rc = http_response_header(req, "ETag", etag)) != CP_OK)
        return rc;
    if (inm != NULL && strstr(inm, etag) != NULL)
        return http_respond_buffer(req, 304, type, "", 0);
    cp_buf_init(&img);
    if (dweb_cache_get(svc, etag, &img) == CP_OK) {
        rc = http_respond_buffer(req, 200, type, img.data, img.len);
        cp_buf_free(&img);
        return rc;
    }

    status = dweb_render_blob(dweb_service_config(svc)->st, blob_key, frame, o, &img, &why);
    if (status != 200) {
        cp_buf_free(&img);
        return http_respond_error(req, status, why);
    }
    rc = http_respond_buffer(req, 200, type, img.data, img.len);

    /* The cache takes the picture whatever happens. */
    data = cp_buf_steal(&img, &len);
    if (data != NULL)
        dweb_cache_put(svc, etag, data, len);
    return rc;
}

cp_status dweb_render_rendered(http_request *req, void *ctx)
{
    const dweb_config *cfg = dweb_service_config(ctx);
    const char *frames = http_request_param(req, "frames");
    render_stream *s = cp_calloc(1, sizeof *s);
    uint32_t *numbers = NULL;
    size_t count = 0;
    const char *why = "out of memory";
    int status = 503;
    cp_status rc;

    if (s == NULL || http_multipart_boundary_new(s->boundary, sizeof s->boundary) != CP_OK)
        goto fail;
    cp_buf_init(&s->pending);
    s->st = cfg->st;
    if ((status = read_options(req, &s->opts, false, &why)) != 0)
        goto fail;
    if (frames != NULL) {
        numbers = cp_calloc(DWEB_FRAMES_MAX, sizeof *numbers);
        status = 503;
        if (numbers == NULL)
            goto fail;
        status = 400;
        why = "the frame list is not 1-based numbers";
        if (dweb_wado_parse_frames(frames, numbers, DWEB_FRAMES_MAX, &count) != CP_OK)
            goto fail;
    }
    if ((status = find_items(req, ctx, &s->list, &why)) != 0)
        goto fail;

    if (http_request_param(req, "instance") != NULL) {
        render_item one = s->list.items[0];

        if (count <= 1) {
            one.frame = count == 1 ? numbers[0] : 1;
            rc = dweb_render_respond(req, ctx, one.blob_key, one.hash, one.frame, &s->opts);
            stream_free(s);
            cp_free(numbers);
            return rc;
        }

        /* Several frames: one part each, all of the one instance. */
        status = 503;
        if (s->list.cap < count) {
            render_item *grown = cp_calloc(count, sizeof *grown);

            if (grown == NULL)
                goto fail;
            cp_free(s->list.items);
            s->list.items = grown;
            s->list.cap = count;
        }
        for (size_t i = 0; i < count; i++) {
            s->list.items[i] = one;
            s->list.items[i].frame = numbers[i];
        }
        s->list.count = count;
    }
    cp_free(numbers);
    return respond_multipart(req, s);

fail:
    stream_free(s);
    cp_free(numbers);
    return http_respond_error(req, status, why);
}

/* The ETag of a thumbnail: its instance's hash and how it was rendered. */
static void thumb_etag(const render_item *it, const dweb_render_opts *o, char *out,
                       size_t cap)
{
    char hex[17];

    for (size_t i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", it->hash[i]);
    snprintf(out, cap, "\"t%s-%" PRIu32 "-%" PRIu32 "x%" PRIu32 "-%d-%d\"", hex, it->frame,
             o->params.viewport_width, o->params.viewport_height, o->quality, (int)o->media);
}

/* The blob key a thumbnail is cached under (see the top of the file). */
static void thumb_key(const render_item *it, const dweb_render_opts *o, char *out,
                      size_t cap)
{
    char hex[17];

    for (size_t i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", it->hash[i]);
    snprintf(out, cap, "thumbs/%s/%s-%" PRIu32 "-%" PRIu32 "x%" PRIu32 "-%d.%s", it->sop_uid,
             hex, it->frame, o->params.viewport_width, o->params.viewport_height, o->quality,
             o->media == DWEB_MEDIA_PNG ? "png" : "jpg");
}

/* Reads a cached thumbnail into out; false when there is none usable. */
static bool thumb_load(store *st, const char *key, cp_buf *out)
{
    store_reader *rd = NULL;
    uint64_t size;
    size_t got = 0;
    bool ok = false;

    if (store_open(st, key, &rd, NULL) != CP_OK)
        return false;
    size = store_reader_size(rd);
    if (size == 0 || size > DWEB_THUMB_BYTES_MAX ||
        cp_buf_reserve(out, (size_t)size) != CP_OK)
        goto done;
    if (store_pread(rd, 0, out->data, (size_t)size, &got, NULL) != CP_OK || got != size)
        goto done;
    out->len = (size_t)size;
    ok = true;

done:
    store_close(rd);
    if (!ok)
        cp_buf_reset(out);
    return ok;
}

/* Keeps a thumbnail; a failure only costs a re-render next time. */
static void thumb_save(store *st, const char *key, const cp_buf *img)
{
    store_writer *w = NULL;

    if (!store_key_is_valid(key) || store_begin(st, key, 0, &w, NULL) != CP_OK)
        return;
    if (store_write(w, img->data, img->len, NULL) != CP_OK) {
        store_abort(w);
        return;
    }
    (void)store_commit(w, NULL);
}

cp_status dweb_render_thumbnail(http_request *req, void *ctx)
{
    const dweb_config *cfg = dweb_service_config(ctx);
    const char *frames = http_request_param(req, "frames");
    const char *inm = http_request_header(req, "If-None-Match");
    render_list list = { NULL, 0, 0 };
    dweb_render_opts o;
    cp_buf img;
    char key[STORE_KEY_MAX];
    char etag[96];
    uint32_t frame = 1;
    size_t tries;
    const char *why = "";
    int status;
    cp_status rc;

    cp_buf_init(&img);
    if ((status = read_options(req, &o, true, &why)) != 0)
        goto fail;
    if (frames != NULL) {
        size_t count = 0;

        status = 400;
        why = "a thumbnail is of one frame";
        if (dweb_wado_parse_frames(frames, &frame, 1, &count) != CP_OK)
            goto fail;
    }
    if ((status = find_items(req, ctx, &list, &why)) != 0)
        goto fail;

    /* The first instance that renders stands for a series or a study. */
    status = 404;
    why = "no instance with pixel data";
    tries = list.count < DWEB_THUMB_TRIES_MAX ? list.count : DWEB_THUMB_TRIES_MAX;
    for (size_t i = 0; i < tries; i++) {
        render_item *it = &list.items[i];

        it->frame = frame;
        thumb_etag(it, &o, etag, sizeof etag);
        if (inm != NULL && strstr(inm, etag) != NULL) {
            cp_free(list.items);
            if ((rc = http_response_header(req, "ETag", etag)) != CP_OK)
                return rc;
            return http_respond_buffer(req, 304, dweb_render_media_type(o.media), "", 0);
        }
        thumb_key(it, &o, key, sizeof key);
        if (thumb_load(cfg->st, key, &img)) {
            status = 200;
            if ((rc = http_response_header(req, "X-Cloudpacs-Cache", "hit")) != CP_OK)
                goto fail;
            break;
        }
        status = dweb_render_blob(cfg->st, it->blob_key, frame, &o, &img, &why);
        if (status == 200) {
            thumb_save(cfg->st, key, &img);
            break;
        }
        cp_buf_reset(&img);
        if (status != 406 || list.count == 1)
            break;
    }
    if (status != 200)
        goto fail;
    rc = http_response_header(req, "ETag", etag);
    if (rc == CP_OK)
        rc = http_respond_buffer(req, 200, dweb_render_media_type(o.media), img.data,
                                 img.len);
    cp_free(list.items);
    cp_buf_free(&img);
    return rc;

fail:
    cp_free(list.items);
    cp_buf_free(&img);
    return http_respond_error(req, status, why);
}
