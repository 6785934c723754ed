/*
 * wado_uri.c - WADO-URI (PS3.18 section 9, the URI service): one instance
 * named by studyUID, seriesUID and objectUID, answered as the stored Part 10
 * file (contentType=application/dicom, 9.1.2.1.3) or as one frame rendered
 * through render.c (image/jpeg, the default, or image/png) with the
 * parameters of 9.1.2.1: frameNumber, windowCenter and windowWidth, rows and
 * columns (a viewport that keeps the aspect ratio), region (fractions of the
 * image) and imageQuality.
 *
 * The Part 10 file goes out in Explicit VR Little Endian unless another
 * syntax is named (9.1.2.1.7), decoded from a compressed one when a decoder
 * exists (transcode.h), else as stored; "*" or the stored syntax gives it as
 * stored, any other 406. Annotation and
 * presentation state parameters are not supported and answer 400, rather
 * than a picture the client did not ask for.
 *
 * The study is checked with dweb_study_gate first (a hidden one is 404): a
 * Part 10 file is recorded as accessed every time, a picture at most once
 * a while per session, as a viewer asks for many.
 */
#include "dicomweb/wado_uri.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dataset.h"
#include "dicom/ts.h"
#include "dicom/writer.h"
#include "dicomweb/dicomweb.h"
#include "dicomweb/transcode.h"
#include "index/index.h"
#include "pixel/pixel.h"

/* The instance a request names, as the index knows it. */
typedef struct uri_item {
    bool found;
    char transfer_syntax[INDEX_UID_MAX + 1];
    char blob_key[INDEX_BLOB_KEY_MAX + 1];
    uint8_t hash[INDEX_HASH_SIZE];
} uri_item;

static cp_status on_row(void *ctx, const index_row *row)
{
    uri_item *it = ctx;

    it->found = true;
    memcpy(it->transfer_syntax, row->rec.instance.transfer_syntax,
           sizeof it->transfer_syntax);
    memcpy(it->blob_key, row->rec.instance.blob_key, sizeof it->blob_key);
    memcpy(it->hash, row->rec.instance.hash, sizeof it->hash);
    return CP_ERR_STOPPED;
}

/* A number filling the whole text; false for anything else. */
static bool number(const char *s, double *out)
{
    char *end = NULL;

    if (s == NULL || *s == '\0')
        return false;
    *out = strtod(s, &end);
    return *end == '\0' && isfinite(*out);
}

/* A whole number from 1 to max; false for anything else. */
static bool count(const char *s, unsigned long max, uint32_t *out)
{
    char *end = NULL;
    unsigned long v;

    if (s == NULL || *s < '0' || *s > '9' || strlen(s) > 10)
        return false;
    v = strtoul(s, &end, 10);
    if (*end != '\0' || v < 1 || v > max)
        return false;
    *out = (uint32_t)v;
    return true;
}

int dweb_wado_uri_options(http_request *req, dweb_render_opts *o, uint32_t *frame,
                          const char **why)
{
    const char *center = http_request_query(req, "windowCenter");
    const char *width = http_request_query(req, "windowWidth");
    const char *rows = http_request_query(req, "rows");
    const char *columns = http_request_query(req, "columns");
    const char *region = http_request_query(req, "region");
    const char *quality = http_request_query(req, "imageQuality");
    const char *frame_text = http_request_query(req, "frameNumber");
    uint32_t r = 0;
    uint32_t c = 0;

    *frame = 1;
    *why = "frameNumber is not a frame number";
    if (frame_text != NULL && !count(frame_text, UINT32_MAX, frame))
        return 400;

    /* 9.1.2.1.10: both or neither. */
    *why = "windowCenter and windowWidth go together, as numbers, width at least 1";
    if ((center == NULL) != (width == NULL))
        return 400;
    if (center != NULL) {
        if (!number(center, &o->params.window_center) ||
            !number(width, &o->params.window_width) || o->params.window_width < 1.0)
            return 400;
        o->params.has_window = true;
    }

    *why = "rows and columns are 1 to the largest viewport";
    if ((rows != NULL && !count(rows, DWEB_RENDER_VIEWPORT_MAX, &r)) ||
        (columns != NULL && !count(columns, DWEB_RENDER_VIEWPORT_MAX, &c)))
        return 400;
    if (r != 0 || c != 0) {
        o->params.viewport_height = r != 0 ? r : DWEB_RENDER_VIEWPORT_MAX;
        o->params.viewport_width = c != 0 ? c : DWEB_RENDER_VIEWPORT_MAX;
    }

    *why = "region is x1,y1,x2,y2 fractions of the image";
    if (region != NULL) {
        const char *p = region;

        for (int i = 0; i < 4; i++) {
            char *end = NULL;

            o->region[i] = strtod(p, &end);
            if (end == p || (i < 3 && *end != ',') || (i == 3 && *end != '\0'))
                return 400;
            p = end + 1;
        }
        if (o->region[0] < 0.0 || o->region[1] < 0.0 || o->region[2] > 1.0 ||
            o->region[3] > 1.0 || o->region[0] >= o->region[2] ||
            o->region[1] >= o->region[3])
            return 400;
        o->has_region = true;
        o->region_fraction = true;
    }

    *why = "imageQuality is 1 to 100";
    if (quality != NULL && dweb_render_parse_quality(quality, &o->quality) != CP_OK)
        return 400;
    return 0;
}

typedef struct uri_stream {
    store_reader *rd;
    uint64_t pos;
    uint64_t size;
} uri_stream;

static ssize_t produce(void *ctx, uint64_t pos, uint8_t *buf, size_t max)
{
    uri_stream *s = ctx;
    size_t want = max < DWEB_STREAM_CHUNK ? max : DWEB_STREAM_CHUNK;
    size_t got = 0;

    (void)pos;
    if (s->pos >= s->size)
        return HTTP_STREAM_END;
    if (want > s->size - s->pos)
        want = (size_t)(s->size - s->pos);
    if (store_pread(s->rd, s->pos, buf, want, &got, NULL) != CP_OK || got == 0)
        return HTTP_STREAM_ERROR;
    s->pos += got;
    return (ssize_t)got;
}

static void stream_free(void *ctx)
{
    uri_stream *s = ctx;

    if (s == NULL)
        return;
    store_close(s->rd);
    cp_free(s);
}

/* Streams the stored file as it is. */
static cp_status send_dicom(http_request *req, store *st, const uri_item *it)
{
    uri_stream *s = cp_calloc(1, sizeof *s);

    if (s == NULL)
        return http_respond_error(req, 503, "out of memory");
    if (store_open(st, it->blob_key, &s->rd, NULL) != CP_OK) {
        cp_free(s);
        return http_respond_error(req, 500, "the instance cannot be read");
    }
    s->size = store_reader_size(s->rd);
    return http_respond_stream(req, 200, "application/dicom", (int64_t)s->size, produce, s,
                               stream_free);
}

static cp_status sink_fd_write(void *ctx, const void *data, size_t len)
{
    const uint8_t *p = data;
    int fd = *(int *)ctx;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n <= 0)
            return CP_ERR_IO;
        p += n;
        len -= (size_t)n;
    }
    return CP_OK;
}

/*
 * Writes the instance in Explicit VR Little Endian to an unnamed temporary
 * file and sends that: compressed pixel data decoded frame by frame
 * (transcode.h), an uncompressed data set rewritten by the DICOM writer.
 */
static cp_status send_explicit(http_request *req, store *st, const uri_item *it,
                               const dcm_transfer_syntax *stored)
{
    FILE *tmp = tmpfile();
    int fd = tmp != NULL ? dup(fileno(tmp)) : -1;
    dcm_sink sink = { sink_fd_write, &fd };
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    dcm_write_options wo;
    off_t end = -1;
    cp_status rc = fd < 0 ? CP_ERR_IO : CP_OK;

    if (rc == CP_OK && stored->encapsulated) {
        rc = dweb_transcode_native(st, it->blob_key, &sink, NULL);
    } else if (rc == CP_OK) {
        rc = dweb_open_source(st, it->blob_key, &src, NULL);
        if (rc == CP_OK)
            rc = dcm_file_read(src, NULL, &file, NULL);
        memset(&wo, 0, sizeof wo);
        wo.source = src;
        wo.transfer_syntax = &dcm_ts_explicit_le;
        if (rc == CP_OK)
            rc = dcm_write_file(file, &wo, &sink, NULL);
    }
    if (rc == CP_OK && (end = lseek(fd, 0, SEEK_END)) < 0)
        rc = CP_ERR_IO;
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    if (tmp != NULL)
        fclose(tmp);
    if (rc != CP_OK) {
        if (fd >= 0)
            close(fd);
        return http_respond_error(req, 500, "the instance cannot be transcoded");
    }
    return http_respond_fd(req, 200, "application/dicom", fd, 0, (uint64_t)end);
}

/*
 * The media type of the answer from contentType (9.1.2.1.5): a list whose
 * first type we make wins. -1: nothing we make (406).
 */
static int pick_content(const char *list, bool *dicom)
{
    const char *p = list;

    *dicom = false;
    if (list == NULL || *list == '\0')
        return DWEB_MEDIA_JPEG;
    while (*p != '\0') {
        size_t n = strcspn(p, ",;");

        if (n == 10 && strncasecmp(p, "image/jpeg", n) == 0)
            return DWEB_MEDIA_JPEG;
        if (n == 9 && strncasecmp(p, "image/png", n) == 0)
            return DWEB_MEDIA_PNG;
        if (n == 17 && strncasecmp(p, "application/dicom", n) == 0) {
            *dicom = true;
            return DWEB_MEDIA_JPEG;
        }
        p += n;
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
        while (*p == ' ')
            p++;
    }
    return -1;
}

cp_status dweb_wado_uri_handle(http_request *req, void *ctx)
{
    const dweb_config *cfg = dweb_service_config(ctx);
    const char *type = http_request_query(req, "requestType");
    const char *names[] = { "studyUID", "seriesUID", "objectUID" };
    const char *attrs[] = { "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID" };
    const char *asked_ts = http_request_query(req, "transferSyntax");
    index_term terms[3];
    index_query_spec spec;
    uri_item it;
    dweb_render_opts o;
    uint32_t frame = 1;
    const char *why = NULL;
    bool dicom = false;
    int media;
    int status;

    if (type == NULL || strcmp(type, "WADO") != 0)
        return http_respond_error(req, 400, "requestType must be WADO");
    for (size_t i = 0; i < 3; i++) {
        terms[i].attribute = attrs[i];
        terms[i].value = http_request_query(req, names[i]);
        if (terms[i].value == NULL || !dweb_uid_is_valid(terms[i].value))
            return http_respond_error(req, 400, "studyUID, seriesUID and objectUID "
                                      "must be UIDs");
    }
    if (http_request_query(req, "presentationUID") != NULL ||
        http_request_query(req, "annotation") != NULL)
        return http_respond_error(req, 400, "annotation and presentation states are "
                                  "not supported");
    media = pick_content(http_request_query(req, "contentType"), &dicom);
    if (media < 0)
        return http_respond_error(req, 406, "contentType must be image/jpeg, image/png "
                                  "or application/dicom");

    /* The whole instance is a retrieval; a picture is a viewer's look. */
    status = dweb_study_gate(ctx, req, terms[0].value, AUDIT_INSTANCES_ACCESSED, "wado-uri",
                             dicom ? DWEB_AUDIT_EACH : DWEB_AUDIT_THROTTLED, NULL, &why);
    if (status != 0)
        return http_respond_error(req, status, why);

    memset(&it, 0, sizeof it);
    memset(&spec, 0, sizeof spec);
    spec.level = INDEX_LEVEL_INSTANCE;
    spec.terms = terms;
    spec.term_count = 3;
    if (index_query(cfg->idx, &spec, on_row, &it, NULL) != CP_OK)
        return http_respond_error(req, 500, "the index query failed");
    if (!it.found)
        return http_respond_error(req, 404, "no such instance");

    if (dicom) {
        const dcm_transfer_syntax *stored = dcm_ts_lookup(it.transfer_syntax,
                                                          strlen(it.transfer_syntax));
        bool explicit_le = asked_ts == NULL || strcmp(asked_ts, dcm_ts_explicit_le.uid) == 0;
        bool convertible = stored != NULL && !stored->deflated &&
                           (!stored->encapsulated || px_can_decode(stored));

        /*
         * 9.1.2.1.7: Explicit VR Little Endian unless another syntax is
         * named; one we cannot make without being asked is sent as stored.
         */
        if (explicit_le && stored != &dcm_ts_explicit_le && convertible)
            return send_explicit(req, cfg->st, &it, stored);
        if (asked_ts != NULL && strcmp(asked_ts, "*") != 0 &&
            strcmp(asked_ts, it.transfer_syntax) != 0)
            return http_respond_error(req, 406, "the transfer syntax asked for is not "
                                      "offered");
        return send_dicom(req, cfg->st, &it);
    }

    dweb_render_opts_init(&o);
    o.media = (dweb_render_media)media;
    status = dweb_wado_uri_options(req, &o, &frame, &why);
    if (status != 0)
        return http_respond_error(req, status, why);
    return dweb_render_respond(req, ctx, it.blob_key, it.hash, frame, &o);
}
