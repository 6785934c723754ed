/*
 * wado.c - WADO-RS, the Retrieve transaction (PS3.18 10.4).
 *
 * Every answer is made by one producer (http_respond_stream) that walks a
 * list of parts: the instances of a study, a series or one instance as
 * found in the index, the frames of an instance, or one bulk data range.
 * A part is some bytes made in memory (multipart headers, one instance's
 * metadata, one frame) followed by a byte range of a stored blob, read a
 * chunk per call: a series is never held whole, whatever its size.
 * Instances sent as stored (up to WADO_MAP_PARTS_MAX of them) and a single
 * native frame skip the producer: their blobs are mapped and the response
 * is sent from the mapped pages (http_respond_iovec), one copy fewer per
 * byte; such answers, and a single frame made in memory, tell their length.
 *
 * Transfer syntaxes (PS3.18 8.7.3.5): an instance goes out in its stored
 * syntax ("transfer-syntax=*", none given, or the stored one asked for).
 * Explicit VR Little Endian asked for an instance stored in another
 * uncompressed syntax is written by the DICOM core writer to an unnamed
 * temporary file, then streamed from it; from a compressed syntax with a
 * decoder, transcode.c decodes it into that file a frame at a time; any
 * other syntax is 406. Frames of a compressed instance are decoded to
 * native bytes when Explicit VR Little Endian or no syntax is asked for
 * (8.7.3.5.2), and 8-bit frames are sent as JPEG baseline for image/jpeg.
 *
 * Every retrieval first asks dweb_study_gate whether the principal sees the
 * study (a hidden one is 404, as a missing one) and records the look:
 * instances, series and metadata one record each (a whole study as an
 * Export), frames and bulk data at most once a while per session.
 *
 * Metadata (10.4.1.1.2) is the DICOM JSON of each instance, read without
 * loading values past the bulk data threshold; binary values above
 * WADO_INLINE_MAX become BulkDataURIs {instance}/bulkdata/{offset}-{length},
 * the byte range of the value in the stored file. Metadata answers carry an
 * ETag made from the content hashes of their instances (from the index), so
 * that a client's If-None-Match is answered 304 without reading a blob, and
 * an answer once streamed is kept in the service's cache under that tag
 * (dweb_cache_put): a new or replaced instance changes the tag, so a stale
 * answer is never served. The cache fills on first request, not at ingest.
 */
#include "dicomweb/wado.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dataset.h"
#include "dicom/json.h"
#include "dicom/tag.h"
#include "dicom/writer.h"
#include "dicomweb/dicomweb.h"
#include "dicomweb/transcode.h"
#include "http/multipart.h"
#include "pixel/pixel.h"
#include "pixel/render.h"

/* JPEG baseline (Process 1), what image/jpeg frames are made in. */
#define WADO_JPEG_BASELINE "1.2.840.10008.1.2.4.50"

/* JPEG quality of frames transcoded to image/jpeg (PS3.18 gives none). */
#define DWEB_FRAME_JPEG_QUALITY 90

/* Binary values up to this many bytes are inlined in metadata (base64). */
#define WADO_INLINE_MAX 64

/*
 * Retrieve answers of up to this many instances are sent from their mapped
 * blobs (respond_mapped): 8 such answers at once stay far under the 65530
 * mappings a Linux process has by default.
 */
#define WADO_MAP_PARTS_MAX 4096

/* An instance's URL: the root and three UIDs. */
#define WADO_INSTANCE_URL_MAX (DWEB_URL_MAX + 3 * INDEX_UID_MAX + 40)

/* One instance to send, as the index knows it. */
typedef struct wado_item {
    char study_uid[INDEX_UID_MAX + 1];
    char series_uid[INDEX_UID_MAX + 1];
    char sop_uid[INDEX_UID_MAX + 1];
    char transfer_syntax[INDEX_UID_MAX + 1];
    char blob_key[INDEX_BLOB_KEY_MAX + 1];
    uint8_t hash[INDEX_HASH_SIZE];
    uint64_t size;              /* the blob's bytes, when the answer's length is told */
} wado_item;

typedef struct wado_list {
    wado_item *items;
    size_t count;
    size_t cap;
} wado_list;

typedef enum {
    WADO_RETRIEVE,
    WADO_METADATA,
    WADO_FRAMES,
    WADO_BULK,
} wado_kind;

/* The state of one response's producer. */
typedef struct wado_stream {
    wado_kind kind;
    dweb_service *svc;
    store *st;
    wado_list list;
    char root[DWEB_URL_MAX];
    char boundary[HTTP_MULTIPART_BOUNDARY_LEN + 1];
    const dcm_transfer_syntax *convert_to;      /* WADO_RETRIEVE: NULL = as stored */
    size_t next;                /* the next part to begin */
    size_t parts;
    bool closed;                /* the closing bytes are made */
    bool sized;                 /* Content-Length told: every blob must be its item's size */

    cp_buf pending;             /* bytes made in memory, sent first */
    size_t pending_pos;
    store_reader *rd;           /* then a range of a blob ... */
    int tmp_fd;                 /* ... or of a converted temporary file */
    uint64_t range_pos;
    uint64_t range_left;

    /* WADO_FRAMES: the instance read once, and the 1-based frame numbers. */
    uint32_t *frames;
    dcm_source *src;
    dcm_file *file;
    px_image img;
    bool img_ready;
    char *frame_type;           /* part Content-Type */
    bool decode_frames;         /* transcode to native bytes ... */
    bool jpeg_frames;           /* ... or to JPEG baseline */

    /* WADO_METADATA: the answer as sent, for the cache, while it stays small enough. */
    char etag[64];
    cp_buf capture;
    bool capturing;

    /* WADO_BULK: the range in the blob. */
    uint64_t bulk_offset;
    uint64_t bulk_length;
} wado_stream;

/* --- finding the instances ------------------------------------------------- */

static cp_status on_instance(void *ctx, const index_row *row)
{
    wado_list *l = ctx;
    wado_item *it;
    cp_status st;

    st = cp_array_grow(&l->items, &l->cap, l->count, sizeof *l->items, 16,
                       HTTP_MULTIPART_PARTS_MAX);
    if (st != CP_OK)
        return st;
    it = &l->items[l->count++];
    memcpy(it->study_uid, row->rec.study.uid, sizeof it->study_uid);
    memcpy(it->series_uid, row->rec.series.uid, sizeof it->series_uid);
    memcpy(it->sop_uid, row->rec.instance.sop_uid, sizeof it->sop_uid);
    memcpy(it->transfer_syntax, row->rec.instance.transfer_syntax,
           sizeof it->transfer_syntax);
    memcpy(it->blob_key, row->rec.instance.blob_key, sizeof it->blob_key);
    memcpy(it->hash, row->rec.instance.hash, sizeof it->hash);
    return CP_OK;
}

/* How a handler's look at the study is recorded (dweb_study_gate). */
typedef struct wado_audit {
    audit_event event;
    const char *type;
    dweb_audit_mode mode;
} wado_audit;

/*
 * The instances the path names, in the order they were indexed, once the
 * principal is found to see the study (the look recorded as `how` says).
 * An error response is sent here (400 for a bad UID, 404 for none or a
 * hidden study) and *answered set, so that the caller only returns.
 */
static cp_status find_instances(http_request *req, dweb_service *svc, wado_list *out,
                                const wado_audit *how, bool *answered)
{
    const dweb_config *cfg = dweb_service_config(svc);
    const char *names[] = { "study", "series", "instance" };
    const char *attrs[] = { "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID" };
    index_term terms[3];
    index_query_spec spec;
    size_t n = 0;
    cp_status st;

    *answered = false;
    for (size_t i = 0; i < 3; i++) {
        const char *v = http_request_param(req, names[i]);

        if (v == NULL)
            continue;
        if (!dweb_uid_is_valid(v)) {
            *answered = true;
            return http_respond_error(req, 400, "the path holds an invalid UID");
        }
        terms[n].attribute = attrs[i];
        terms[n].value = v;
        n++;
    }
    if (n > 0 && strcmp(terms[0].attribute, "StudyInstanceUID") == 0) {
        const char *why = "";
        int status = dweb_study_gate(svc, req, terms[0].value, how->event, how->type,
                                     how->mode, NULL, &why);

        if (status != 0) {
            *answered = true;
            return http_respond_error(req, status, why);
        }
    }
    memset(&spec, 0, sizeof spec);
    spec.level = INDEX_LEVEL_INSTANCE;
    spec.terms = terms;
    spec.term_count = n;
    st = index_query(cfg->idx, &spec, on_instance, out, NULL);
    if (st != CP_OK) {
        *answered = true;
        return http_respond_error(req, st == CP_ERR_LIMIT ? 413 : 500,
                                  st == CP_ERR_LIMIT ? "too many instances"
                                                     : "the index query failed");
    }
    if (out->count == 0) {
        *answered = true;
        return http_respond_error(req, 404, "no such instances");
    }
    return CP_OK;
}

/* --- the producer ------------------------------------------------------------ */

static void stream_close_range(wado_stream *s)
{
    store_close(s->rd);
    s->rd = NULL;
    if (s->tmp_fd >= 0)
        close(s->tmp_fd);
    s->tmp_fd = -1;
    s->range_left = 0;
}

static void stream_free(void *ctx)
{
    wado_stream *s = ctx;

    if (s == NULL)
        return;
    stream_close_range(s);
    if (s->img_ready)
        px_image_clear(&s->img);
    dcm_file_destroy(s->file);
    dcm_source_destroy(s->src);
    cp_free(s->frames);
    cp_free(s->frame_type);
    cp_free(s->list.items);
    cp_buf_free(&s->pending);
    cp_buf_free(&s->capture);
    cp_free(s);
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

/* Writes the instance in s->convert_to to an unnamed temporary file to stream. */
static cp_status begin_converted(wado_stream *s, const wado_item *it)
{
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    dcm_read_options ro;
    dcm_write_options wo;
    FILE *tmp = NULL;
    int fd = -1;
    dcm_sink sink;
    off_t end;
    cp_status st = dweb_open_source(s->st, it->blob_key, &src, NULL);

    if (st != CP_OK)
        goto done;
    memset(&ro, 0, sizeof ro);
    if ((st = dcm_file_read(src, &ro, &file, NULL)) != CP_OK)
        goto done;
    tmp = tmpfile();
    if (tmp == NULL || (fd = dup(fileno(tmp))) < 0) {
        st = CP_ERR_IO;
        goto done;
    }
    sink.write = sink_fd_write;
    sink.ctx = &fd;
    if (file->transfer_syntax->encapsulated) {
        /* Compressed: decoded frame by frame into the temporary file (transcode.h). */
        if ((st = dweb_transcode_native(s->st, it->blob_key, &sink, NULL)) != CP_OK)
            goto done;
    } else {
        memset(&wo, 0, sizeof wo);
        wo.source = src;
        wo.transfer_syntax = s->convert_to;
        if ((st = dcm_write_file(file, &wo, &sink, NULL)) != CP_OK)
            goto done;
    }
    end = lseek(fd, 0, SEEK_END);
    if (end < 0) {
        st = CP_ERR_IO;
        goto done;
    }
    s->tmp_fd = fd;
    fd = -1;
    s->range_pos = 0;
    s->range_left = (uint64_t)end;

done:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL)
        fclose(tmp);
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    return st;
}

/* The headers that open instance i's part. */
static cp_status instance_part_start(wado_stream *s, size_t i, cp_buf *out)
{
    const wado_item *it = &s->list.items[i];
    const char *ts = s->convert_to != NULL ? s->convert_to->uid : it->transfer_syntax;
    char type[HTTP_MEDIA_MAX + HTTP_TS_MAX + 32];

    snprintf(type, sizeof type, "application/dicom; transfer-syntax=%s", ts);
    return http_multipart_write_part_start(out, s->boundary, i == 0, type, NULL);
}

static cp_status begin_instance(wado_stream *s, size_t i)
{
    const wado_item *it = &s->list.items[i];
    cp_status st = instance_part_start(s, i, &s->pending);

    if (st != CP_OK)
        return st;
    if (s->convert_to != NULL && strcmp(s->convert_to->uid, it->transfer_syntax) != 0)
        return begin_converted(s, it);
    if ((st = store_open(s->st, it->blob_key, &s->rd, NULL)) != CP_OK)
        return st;
    s->range_pos = 0;
    s->range_left = store_reader_size(s->rd);
    /* A blob that changed since it was sized would break the framing: cut instead. */
    if (s->sized && s->range_left != it->size)
        return CP_ERR_IO;
    return CP_OK;
}

/*
 * The length of a retrieve answer whose instances all go out as stored:
 * every part's headers and blob and the closing boundary; each item's size
 * is kept for begin_instance to check. -1 when an instance is converted
 * (its length is known only once written) or a blob cannot be sized: the
 * answer is then chunked. A told length lets the client read the body in
 * large pieces rather than chunk by chunk, and the server fill larger blocks.
 */
static int64_t retrieve_length(wado_stream *s)
{
    cp_buf scratch = CP_BUF_INIT;
    uint64_t total = 0;
    cp_status st = CP_OK;

    for (size_t i = 0; i < s->list.count && st == CP_OK; i++) {
        wado_item *it = &s->list.items[i];

        if (s->convert_to != NULL && strcmp(s->convert_to->uid, it->transfer_syntax) != 0)
            st = CP_ERR_UNSUPPORTED;
        if (st == CP_OK)
            st = store_stat(s->st, it->blob_key, &it->size, NULL);
        cp_buf_reset(&scratch);
        if (st == CP_OK)
            st = instance_part_start(s, i, &scratch);
        if (st == CP_OK)
            total += scratch.len + it->size;
    }
    cp_buf_reset(&scratch);
    if (st == CP_OK)
        st = http_multipart_write_close(&scratch, s->boundary);
    total += scratch.len;
    cp_buf_free(&scratch);
    if (st != CP_OK || total > INT64_MAX)
        return -1;
    s->sized = true;
    return (int64_t)total;
}

static cp_status bulk_uri(void *ctx, const dcm_element *el, const uint32_t *path, size_t depth,
                          cp_buf *uri)
{
    (void)path;
    (void)depth;
    if (el->flags & DCM_ELEMENT_TRUNCATED)
        return CP_ERR_NOT_FOUND;
    return cp_buf_appendf(uri, "%s/bulkdata/%" PRIu64 "-%" PRIu64, (const char *)ctx,
                          el->offset, el->value_length);
}

/* Appends one instance's data set as JSON (group 0002 is not part of it). */
static cp_status begin_metadata(wado_stream *s, size_t i)
{
    const wado_item *it = &s->list.items[i];
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    dcm_read_options ro;
    dcm_json_options jo;
    char url[WADO_INSTANCE_URL_MAX];
    dcm_sink sink = dcm_sink_to_buf(&s->pending);
    cp_status st = cp_buf_append_str(&s->pending, i == 0 ? "[" : ",");

    if (st == CP_OK)
        st = dweb_open_source(s->st, it->blob_key, &src, NULL);
    if (st != CP_OK)
        goto done;
    memset(&ro, 0, sizeof ro);
    if ((st = dcm_file_read(src, &ro, &file, NULL)) != CP_OK)
        goto done;
    snprintf(url, sizeof url, "%s/studies/%s/series/%s/instances/%s", s->root, it->study_uid,
             it->series_uid, it->sop_uid);
    memset(&jo, 0, sizeof jo);
    jo.inline_max = WADO_INLINE_MAX;
    jo.bulk_uri = bulk_uri;
    jo.bulk_uri_ctx = url;
    jo.source = src;
    jo.skip_group_length = true;
    st = dcm_json_write_dataset(file->dataset, &jo, &sink, NULL);

done:
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    return st;
}

/* Appends a decoded 8-bit frame (grey or RGB) as a baseline JPEG. */
static cp_status append_jpeg(const px_frame *f, cp_buf *out)
{
    px_picture pic;

    if (f->type != PX_U8 ||
        (f->photometric != PX_MONOCHROME2 && f->photometric != PX_RGB))
        return CP_ERR_UNSUPPORTED;
    pic.width = f->columns;
    pic.height = f->rows;
    pic.channels = f->samples_per_pixel;
    pic.data = f->data;
    return px_encode_jpeg(&pic, DWEB_FRAME_JPEG_QUALITY, out, NULL);
}

static cp_status begin_frame(wado_stream *s, size_t i)
{
    cp_buf bytes;
    px_frame f;
    cp_status st = http_multipart_write_part_start(&s->pending, s->boundary, i == 0,
                                                   s->frame_type, NULL);

    if (st != CP_OK)
        return st;
    if (!s->decode_frames && !s->jpeg_frames)
        return px_frame_bytes(&s->img, s->src, s->frames[i] - 1, &s->pending, NULL);

    /* One frame decoded at a time, whatever the list. */
    cp_buf_init(&bytes);
    memset(&f, 0, sizeof f);
    st = px_frame_bytes(&s->img, s->src, s->frames[i] - 1, &bytes, NULL);
    if (st == CP_OK)
        st = px_decode_frame(&s->img, bytes.data, bytes.len, &f, NULL);
    if (st == CP_OK)
        st = s->jpeg_frames ? append_jpeg(&f, &s->pending)
                            : dweb_transcode_append_native(&s->img, &f, &s->pending);
    px_frame_clear(&f);
    cp_buf_free(&bytes);
    return st;
}

static cp_status begin_bulk(wado_stream *s)
{
    cp_status st = http_multipart_write_part_start(&s->pending, s->boundary, true,
                                                   "application/octet-stream", NULL);

    if (st == CP_OK)
        st = store_open(s->st, s->list.items[0].blob_key, &s->rd, NULL);
    if (st != CP_OK)
        return st;
    s->range_pos = s->bulk_offset;
    s->range_left = s->bulk_length;
    return CP_OK;
}

static cp_status begin_part(wado_stream *s, size_t i)
{
    switch (s->kind) {
    case WADO_RETRIEVE: return begin_instance(s, i);
    case WADO_METADATA: return begin_metadata(s, i);
    case WADO_FRAMES: return begin_frame(s, i);
    case WADO_BULK: return begin_bulk(s);
    }
    return CP_ERR_INVALID;
}

static cp_status make_close(wado_stream *s)
{
    s->closed = true;
    if (s->kind == WADO_METADATA)
        return cp_buf_append_str(&s->pending, "]");
    return http_multipart_write_close(&s->pending, s->boundary);
}

static ssize_t read_range(wado_stream *s, uint8_t *buf, size_t max)
{
    size_t want = max < DWEB_STREAM_CHUNK ? max : DWEB_STREAM_CHUNK;
    size_t got = 0;

    if (want > s->range_left)
        want = (size_t)s->range_left;
    if (s->tmp_fd >= 0) {
        ssize_t n = pread(s->tmp_fd, buf, want, (off_t)s->range_pos);

        if (n <= 0)
            return HTTP_STREAM_ERROR;
        got = (size_t)n;
    } else if (store_pread(s->rd, s->range_pos, buf, want, &got, NULL) != CP_OK ||
               got == 0) {
        return HTTP_STREAM_ERROR;
    }
    s->range_pos += got;
    s->range_left -= got;
    return (ssize_t)got;
}

/* Keeps what was sent of a metadata answer, and hands it to the cache at its end. */
static void capture(wado_stream *s, bool end)
{
    size_t len;
    uint8_t *data;

    if (!s->capturing)
        return;
    if (s->capture.len + s->pending.len > DWEB_METADATA_ENTRY_MAX ||
        cp_buf_append(&s->capture, s->pending.data, s->pending.len) != CP_OK) {
        s->capturing = false;
        cp_buf_free(&s->capture);
        return;
    }
    if (!end)
        return;
    s->capturing = false;
    data = cp_buf_steal(&s->capture, &len);
    if (data != NULL)
        dweb_cache_put(s->svc, s->etag, data, len);
}

static ssize_t produce(void *ctx, uint64_t pos, uint8_t *buf, size_t max)
{
    wado_stream *s = ctx;

    (void)pos;
    for (;;) {
        if (s->pending_pos < s->pending.len) {
            size_t n = s->pending.len - s->pending_pos;

            n = n < max ? n : max;
            memcpy(buf, s->pending.data + s->pending_pos, n);
            s->pending_pos += n;
            return (ssize_t)n;
        }
        if (s->pending.len > 0)
            capture(s, s->closed);
        cp_buf_reset(&s->pending);
        s->pending_pos = 0;
        if (s->range_left > 0)
            return read_range(s, buf, max);
        stream_close_range(s);
        if (s->next < s->parts) {
            /* A failure mid-stream can only cut the connection: the status is sent. */
            if (begin_part(s, s->next++) != CP_OK)
                return HTTP_STREAM_ERROR;
            continue;
        }
        if (s->closed)
            return HTTP_STREAM_END;
        if (make_close(s) != CP_OK)
            return HTTP_STREAM_ERROR;
    }
}

static wado_stream *stream_new(wado_kind kind, dweb_service *svc)
{
    wado_stream *s = cp_calloc(1, sizeof *s);

    if (s == NULL)
        return NULL;
    s->kind = kind;
    s->svc = svc;
    s->st = dweb_service_config(svc)->st;
    s->tmp_fd = -1;
    cp_buf_init(&s->pending);
    if (http_multipart_boundary_new(s->boundary, sizeof s->boundary) != CP_OK) {
        cp_free(s);
        return NULL;
    }
    return s;
}

/* Hands s to the server; it is freed by the response, also on failure. size: -1 unknown. */
static cp_status respond_stream(http_request *req, wado_stream *s, const char *type,
                                int64_t size)
{
    char ctype[HTTP_MEDIA_MAX * 2 + HTTP_MULTIPART_BOUNDARY_LEN + 48];

    if (s->kind == WADO_METADATA)
        snprintf(ctype, sizeof ctype, "%s", DWEB_DICOM_JSON);
    else
        snprintf(ctype, sizeof ctype, "multipart/related; type=\"%s\"; boundary=%s", type,
                 s->boundary);
    return http_respond_stream(req, 200, ctype, size, produce, s, stream_free);
}

/* --- retrieval from the blobs' pages ------------------------------------------ */

/*
 * A retrieve answer sent from the blobs mapped in memory: the kernel copies
 * each page once, from the page cache into the socket, where the producer
 * path reads every byte into a buffer first and sends it from there (two
 * copies, which were half of the server's time on a series). Mappings hold
 * address space, not memory; they go when the answer is done. Lists longer
 * than WADO_MAP_PARTS_MAX take the producer path, so that concurrent large
 * studies cannot use up the process's mappings.
 */
typedef struct wado_mapped {
    cp_buf heads;               /* every part's headers, then the closing boundary */
    size_t *head_end;           /* heads.len after part i's headers */
    void **maps;
    size_t *sizes;
    size_t count;               /* mappings made */
    http_iovec *iov;
} wado_mapped;

static void mapped_free(void *ctx)
{
    wado_mapped *m = ctx;

    if (m == NULL)
        return;
    for (size_t i = 0; i < m->count; i++)
        if (m->sizes[i] > 0)
            munmap(m->maps[i], m->sizes[i]);
    cp_buf_free(&m->heads);
    cp_free(m->head_end);
    cp_free(m->maps);
    cp_free(m->sizes);
    cp_free(m->iov);
    cp_free(m);
}

/* Maps item i's blob into m->maps[i]; CP_ERR_UNSUPPORTED when it has no descriptor. */
static cp_status map_blob(wado_stream *s, size_t i, wado_mapped *m)
{
    store_reader *rd = NULL;
    cp_status st = store_open(s->st, s->list.items[i].blob_key, &rd, NULL);
    int fd;
    void *p;

    if (st != CP_OK)
        return st;
    fd = store_reader_fd(rd);
    m->sizes[i] = (size_t)store_reader_size(rd);
    m->maps[i] = NULL;
    if (fd < 0 || store_reader_size(rd) > SIZE_MAX) {
        st = CP_ERR_UNSUPPORTED;
    } else if (m->sizes[i] > 0) {
        p = mmap(NULL, m->sizes[i], PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            st = CP_ERR_NOMEM;
        else
            m->maps[i] = p;
    }
    store_close(rd);
    if (st == CP_OK)
        m->count = i + 1;
    return st;
}

/*
 * Answers s's instances, all sent as stored, from their mapped blobs.
 * *answered true: s is freed and the response's status returned; false: s
 * is untouched, take the producer path.
 */
static cp_status respond_mapped(http_request *req, wado_stream *s, bool *answered)
{
    size_t n = s->list.count;
    char ctype[HTTP_MEDIA_MAX * 2 + HTTP_MULTIPART_BOUNDARY_LEN + 48];
    wado_mapped *m;
    cp_status st = CP_OK;

    *answered = false;
    if (n == 0 || n > WADO_MAP_PARTS_MAX)
        return CP_ERR_UNSUPPORTED;
    for (size_t i = 0; i < n; i++)
        if (s->convert_to != NULL &&
            strcmp(s->convert_to->uid, s->list.items[i].transfer_syntax) != 0)
            return CP_ERR_UNSUPPORTED;
    m = cp_calloc(1, sizeof *m);
    if (m == NULL)
        return CP_ERR_NOMEM;
    cp_buf_init(&m->heads);
    m->head_end = cp_calloc(n, sizeof *m->head_end);
    m->maps = cp_calloc(n, sizeof *m->maps);
    m->sizes = cp_calloc(n, sizeof *m->sizes);
    m->iov = cp_calloc(2 * n + 1, sizeof *m->iov);
    if (m->head_end == NULL || m->maps == NULL || m->sizes == NULL || m->iov == NULL)
        st = CP_ERR_NOMEM;
    for (size_t i = 0; i < n && st == CP_OK; i++) {
        st = instance_part_start(s, i, &m->heads);
        m->head_end[i] = m->heads.len;
        if (st == CP_OK)
            st = map_blob(s, i, m);
    }
    if (st == CP_OK)
        st = http_multipart_write_close(&m->heads, s->boundary);
    if (st != CP_OK) {
        mapped_free(m);
        return st;
    }
    /* The headers' buffer is complete: only now do its addresses hold. */
    for (size_t i = 0; i < n; i++) {
        size_t from = i == 0 ? 0 : m->head_end[i - 1];

        m->iov[2 * i] = (http_iovec){ m->heads.data + from, m->head_end[i] - from };
        m->iov[2 * i + 1] = (http_iovec){ m->maps[i], m->sizes[i] };
    }
    m->iov[2 * n] = (http_iovec){ m->heads.data + m->head_end[n - 1],
                                  m->heads.len - m->head_end[n - 1] };
    snprintf(ctype, sizeof ctype, "multipart/related; type=\"application/dicom\"; boundary=%s",
             s->boundary);
    stream_free(s);
    *answered = true;
    return http_respond_iovec(req, 200, ctype, m->iov, 2 * n + 1, mapped_free, m);
}

/*
 * Answers one native frame sent as stored from the blob's mapped pages: the
 * part's headers, the frame's byte range, the closing boundary. *answered
 * false (s untouched) when the frame is not a plain byte range of a blob with
 * a descriptor: packed 1-bit frames, decoded or JPEG frames, loaded values.
 */
static cp_status respond_frame_mapped(http_request *req, wado_stream *s, const char *type,
                                      bool *answered)
{
    const dcm_element *pd = s->img.pixel_data;
    uint64_t size = px_image_native_frame_size(&s->img);
    uint64_t start, page = (uint64_t)sysconf(_SC_PAGESIZE);
    char ctype[HTTP_MEDIA_MAX * 2 + HTTP_MULTIPART_BOUNDARY_LEN + 48];
    store_reader *rd = NULL;
    wado_mapped *m = NULL;
    size_t head;
    void *p;
    int fd;
    cp_status st;

    *answered = false;
    /* A deflated file's offsets are in the inflated stream, not in the blob. */
    if (s->parts != 1 || s->decode_frames || s->jpeg_frames || pd == NULL ||
        s->img.transfer_syntax->deflated || (pd->flags & DCM_ELEMENT_ENCAPSULATED) ||
        pd->value != NULL ||
        s->img.bits_allocated % 8 != 0 || size == 0 || s->frames[0] < 1)
        return CP_ERR_UNSUPPORTED;
    start = pd->offset + size * (s->frames[0] - 1);
    if ((uint64_t)size * s->frames[0] > pd->value_length)
        return CP_ERR_UNSUPPORTED;
    if ((st = store_open(s->st, s->list.items[0].blob_key, &rd, NULL)) != CP_OK)
        return st;
    fd = store_reader_fd(rd);
    if (fd < 0 || start + size > store_reader_size(rd) || size > SIZE_MAX - page) {
        store_close(rd);
        return CP_ERR_UNSUPPORTED;
    }
    m = cp_calloc(1, sizeof *m);
    if (m != NULL) {
        cp_buf_init(&m->heads);
        m->maps = cp_calloc(1, sizeof *m->maps);
        m->sizes = cp_calloc(1, sizeof *m->sizes);
    }
    if (m == NULL || m->maps == NULL || m->sizes == NULL) {
        store_close(rd);
        mapped_free(m);
        return CP_ERR_NOMEM;
    }
    /* mmap wants a page-aligned offset: map from the page the frame starts in. */
    m->sizes[0] = (size_t)(size + start % page);
    p = mmap(NULL, m->sizes[0], PROT_READ, MAP_SHARED, fd, (off_t)(start - start % page));
    store_close(rd);
    if (p == MAP_FAILED) {
        mapped_free(m);
        return CP_ERR_NOMEM;
    }
    m->maps[0] = p;
    m->count = 1;
    st = http_multipart_write_part_start(&m->heads, s->boundary, true, s->frame_type, NULL);
    head = m->heads.len;
    if (st == CP_OK)
        st = http_multipart_write_close(&m->heads, s->boundary);
    if (st != CP_OK) {
        mapped_free(m);
        return st;
    }
    {
        http_iovec iov[3] = {
            { m->heads.data, head },
            { (const uint8_t *)p + start % page, (size_t)size },
            { m->heads.data + head, m->heads.len - head },
        };

        snprintf(ctype, sizeof ctype,
                 "multipart/related; type=\"%s\"; boundary=%s", type, s->boundary);
        stream_free(s);
        *answered = true;
        return http_respond_iovec(req, 200, ctype, iov, 3, mapped_free, m);
    }
}

/* --- transfer syntaxes ------------------------------------------------------- */

const dcm_transfer_syntax *dweb_wado_pick_syntax(const dcm_transfer_syntax *stored,
                                                 const char *asked)
{
    if (stored == NULL)
        return NULL;
    if (asked == NULL || asked[0] == '\0' || strcmp(asked, "*") == 0 ||
        strcmp(asked, stored->uid) == 0)
        return stored;
    if (strcmp(asked, dcm_ts_explicit_le.uid) == 0 && !stored->encapsulated &&
        !stored->deflated)
        return &dcm_ts_explicit_le;
    return NULL;
}

static const dcm_transfer_syntax *item_syntax(const wado_item *it)
{
    return dcm_ts_lookup(it->transfer_syntax, strlen(it->transfer_syntax));
}

/*
 * Negotiates the Accept header against one offer. *asked receives the
 * transfer syntax the client named ("" when none); false means 406.
 */
static bool negotiate(http_request *req, const char *media, const char *type,
                      char *asked, size_t cap)
{
    http_accept acc;
    http_offer offer = { media, type, NULL };
    const http_accept_item *matched = NULL;

    asked[0] = '\0';
    if (http_accept_parse(http_request_header(req, "Accept"), &acc) != CP_OK)
        acc.count = 0;
    if (http_accept_choose(&acc, &offer, 1, &matched) < 0)
        return false;
    if (matched != NULL)
        snprintf(asked, cap, "%s", matched->transfer_syntax);
    return true;
}

/* --- handlers ------------------------------------------------------------------ */

cp_status dweb_wado_retrieve(http_request *req, void *ctx)
{
    wado_stream *s = stream_new(WADO_RETRIEVE, ctx);
    wado_audit how = { AUDIT_INSTANCES_ACCESSED, "wado", DWEB_AUDIT_EACH };
    char asked[HTTP_TS_MAX];
    bool answered;
    cp_status st;

    if (s == NULL)
        return http_respond_error(req, 503, "out of memory");
    if (!negotiate(req, "multipart/related", "application/dicom", asked, sizeof asked)) {
        stream_free(s);
        return http_respond_error(req, 406, "only multipart/related; "
                                  "type=\"application/dicom\" is offered");
    }
    /* A whole study is what leaves the archive as an export. */
    how.event = http_request_param(req, "series") == NULL ? AUDIT_EXPORT
                                                          : AUDIT_INSTANCES_ACCESSED;
    st = find_instances(req, ctx, &s->list, &how, &answered);
    if (answered) {
        stream_free(s);
        return st;
    }

    for (size_t i = 0; i < s->list.count; i++) {
        const dcm_transfer_syntax *stored = item_syntax(&s->list.items[i]);
        const dcm_transfer_syntax *out = dweb_wado_pick_syntax(stored, asked);

        /* A compressed instance can be decoded into Explicit VR Little Endian. */
        if (out == NULL && stored != NULL && stored->encapsulated && px_can_decode(stored) &&
            strcmp(asked, dcm_ts_explicit_le.uid) == 0)
            out = &dcm_ts_explicit_le;
        if (out == NULL) {
            stream_free(s);
            return http_respond_error(req, 406, "the transfer syntax asked for is not "
                                      "available for every instance");
        }
        if (out != stored)
            s->convert_to = out;
    }
    s->parts = s->list.count;
    st = respond_mapped(req, s, &answered);
    if (answered)
        return st;
    return respond_stream(req, s, "application/dicom", retrieve_length(s));
}

/* The ETag of a metadata answer: FNV-1a over the root URL and the instances' hashes. */
static void metadata_etag(const wado_stream *s, char *out, size_t cap)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (const char *p = s->root; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    for (size_t i = 0; i < s->list.count; i++)
        for (size_t j = 0; j < INDEX_HASH_SIZE; j++)
            h = (h ^ s->list.items[i].hash[j]) * 0x100000001b3ull;
    snprintf(out, cap, "\"m%016" PRIx64 "-%zu\"", h, s->list.count);
}

cp_status dweb_wado_metadata(http_request *req, void *ctx)
{
    static const wado_audit how = { AUDIT_INSTANCES_ACCESSED, "metadata", DWEB_AUDIT_EACH };
    wado_stream *s = stream_new(WADO_METADATA, ctx);
    const char *inm = http_request_header(req, "If-None-Match");
    char asked[HTTP_TS_MAX];
    bool answered;
    cp_status st;

    if (s == NULL)
        return http_respond_error(req, 503, "out of memory");
    if (!negotiate(req, DWEB_DICOM_JSON, NULL, asked, sizeof asked)) {
        stream_free(s);
        return http_respond_error(req, 406, "only application/dicom+json is offered");
    }
    st = find_instances(req, ctx, &s->list, &how, &answered);
    if (answered || dweb_root_url(req, s->root, sizeof s->root) != CP_OK) {
        stream_free(s);
        return answered ? st : http_respond_error(req, 400, "the Host header is too long");
    }

    metadata_etag(s, s->etag, sizeof s->etag);
    st = http_response_header(req, "ETag", s->etag);
    if (st == CP_OK && inm != NULL && strstr(inm, s->etag) != NULL) {
        stream_free(s);
        return http_respond_buffer(req, 304, DWEB_DICOM_JSON, "", 0);
    }
    if (st == CP_OK && dweb_cache_get(ctx, s->etag, &s->capture) == CP_OK) {
        st = http_respond_buffer(req, 200, DWEB_DICOM_JSON, s->capture.data, s->capture.len);
        stream_free(s);
        return st;
    }
    s->capturing = true;
    s->parts = s->list.count;
    return respond_stream(req, s, DWEB_DICOM_JSON, -1);
}

cp_status dweb_wado_parse_frames(const char *list, uint32_t *frames, size_t max,
                                 size_t *count)
{
    size_t n = 0;

    *count = 0;
    if (list == NULL || *list == '\0')
        return CP_ERR_INVALID;
    while (*list != '\0') {
        char *end = NULL;
        unsigned long v;

        if (*list < '0' || *list > '9')
            return CP_ERR_INVALID;
        v = strtoul(list, &end, 10);
        if (v == 0 || v > UINT32_MAX || (*end != ',' && *end != '\0'))
            return CP_ERR_INVALID;
        if (n == max)
            return CP_ERR_LIMIT;
        frames[n++] = (uint32_t)v;
        list = *end == ',' ? end + 1 : end;
    }
    *count = n;
    return CP_OK;
}

/*
 * Whether the decoder gives an image's frames in a colour space JPEG takes
 * as it is: grey, RGB, or YBR that a JPEG baseline decoder turns to RGB.
 */
static bool jpeg_ready(const px_image *img)
{
    if (img->photometric == PX_MONOCHROME2 || img->photometric == PX_RGB)
        return true;
    return img->samples_per_pixel == 3 && strcmp(img->transfer_syntax->uid,
                                                  WADO_JPEG_BASELINE) == 0;
}

/* Reads the instance of a frames request and checks the frame numbers; 0 or an HTTP status. */
static int frames_prepare(wado_stream *s, const char *asked, char *type, size_t cap)
{
    const dcm_transfer_syntax *ts;
    dcm_read_options ro;

    if (dweb_open_source(s->st, s->list.items[0].blob_key, &s->src, NULL) != CP_OK)
        return 500;
    memset(&ro, 0, sizeof ro);
    if (dcm_file_read(s->src, &ro, &s->file, NULL) != CP_OK)
        return 500;
    if (px_image_init(&s->img, s->file, s->src, NULL) != CP_OK)
        return 400;
    s->img_ready = true;
    ts = s->img.transfer_syntax;
    for (size_t i = 0; i < s->parts; i++)
        if (s->frames[i] > s->img.frames)
            return 404;

    /*
     * image/jpeg: 8-bit frames as JPEG baseline. Native frames are the bytes
     * of Explicit VR Little Endian, which is also what a compressed frame
     * becomes when that syntax is asked for or none is (the default of
     * PS3.18 8.7.3.5.2 for application/octet-stream); "*" or the stored
     * syntax gives the frames as stored.
     */
    if (s->jpeg_frames) {
        if ((asked[0] != '\0' && strcmp(asked, "*") != 0 &&
             strcmp(asked, WADO_JPEG_BASELINE) != 0) ||
            s->img.bits_allocated != 8 || !px_can_decode(ts) || !jpeg_ready(&s->img))
            return 406;
        snprintf(type, cap, "image/jpeg; transfer-syntax=%s", WADO_JPEG_BASELINE);

        /* Stored as JPEG baseline already: sent as it is, not made lossier. */
        if (strcmp(ts->uid, WADO_JPEG_BASELINE) == 0)
            s->jpeg_frames = false;
    } else if (ts->encapsulated || ts->deflated) {
        if (asked[0] == '\0' || strcmp(asked, dcm_ts_explicit_le.uid) == 0) {
            if (!px_can_decode(ts))
                return 406;
            s->decode_frames = true;
            snprintf(type, cap, "application/octet-stream; transfer-syntax=%s",
                     dcm_ts_explicit_le.uid);
            return 0;
        }
        if (strcmp(asked, "*") != 0 && strcmp(asked, ts->uid) != 0)
            return 406;
        snprintf(type, cap, "application/octet-stream; transfer-syntax=%s", ts->uid);
    } else {
        if (ts->big_endian || (asked[0] != '\0' && strcmp(asked, "*") != 0 &&
                               strcmp(asked, dcm_ts_explicit_le.uid) != 0))
            return 406;
        snprintf(type, cap, "application/octet-stream; transfer-syntax=%s",
                 dcm_ts_explicit_le.uid);
    }
    return 0;
}

/* Frames as octet-stream (0) or JPEG (1), or -1: 406. *asked as negotiate gives it. */
static int negotiate_frames(http_request *req, char *asked, size_t cap)
{
    http_accept acc;
    http_offer offers[] = {
        { "multipart/related", "application/octet-stream", NULL },
        { "multipart/related", "image/jpeg", NULL },
    };
    const http_accept_item *matched = NULL;
    int i;

    asked[0] = '\0';
    if (http_accept_parse(http_request_header(req, "Accept"), &acc) != CP_OK)
        acc.count = 0;
    i = http_accept_choose(&acc, offers, 2, &matched);
    if (i >= 0 && matched != NULL)
        snprintf(asked, cap, "%s", matched->transfer_syntax);
    return i;
}

cp_status dweb_wado_frames(http_request *req, void *ctx)
{
    static const wado_audit how = { AUDIT_INSTANCES_ACCESSED, "frames",
                                    DWEB_AUDIT_THROTTLED };
    wado_stream *s = stream_new(WADO_FRAMES, ctx);
    char asked[HTTP_TS_MAX];
    char type[HTTP_MEDIA_MAX + HTTP_TS_MAX + 32];
    bool answered;
    int status;
    int offer;
    cp_status st;

    if (s == NULL || (s->frames = cp_calloc(DWEB_FRAMES_MAX, sizeof *s->frames)) == NULL) {
        stream_free(s);
        return http_respond_error(req, 503, "out of memory");
    }
    if (dweb_wado_parse_frames(http_request_param(req, "frames"), s->frames, DWEB_FRAMES_MAX,
                               &s->parts) != CP_OK) {
        stream_free(s);
        return http_respond_error(req, 400, "the frame list is not 1-based numbers");
    }
    offer = negotiate_frames(req, asked, sizeof asked);
    if (offer < 0) {
        stream_free(s);
        return http_respond_error(req, 406, "only multipart/related; "
                                  "type=\"application/octet-stream\" or "
                                  "type=\"image/jpeg\" is offered");
    }
    s->jpeg_frames = offer == 1;
    st = find_instances(req, ctx, &s->list, &how, &answered);
    if (answered) {
        stream_free(s);
        return st;
    }
    status = frames_prepare(s, asked, type, sizeof type);
    if (status != 0) {
        stream_free(s);
        return http_respond_error(req, status, status == 404 ? "no such frame"
                                  : status == 406 ? "the transfer syntax asked for is not "
                                                    "available"
                                                  : "the instance has no usable pixel data");
    }
    s->frame_type = cp_strdup(type);
    if (s->frame_type == NULL) {
        stream_free(s);
        return http_respond_error(req, 503, "out of memory");
    }
    st = respond_frame_mapped(req, s, offer == 1 ? "image/jpeg" : "application/octet-stream",
                              &answered);
    if (answered)
        return st;
    if (s->parts == 1) {
        /*
         * One frame (what viewers ask) is made whole before answering, so that
         * its length is told and a frame that cannot be read is a 500, not a
         * cut stream; it is held in memory the same while it is sent.
         */
        s->next = 1;
        if (begin_part(s, 0) != CP_OK || make_close(s) != CP_OK) {
            stream_free(s);
            return http_respond_error(req, 500, "the frame cannot be read");
        }
        return respond_stream(req, s, offer == 1 ? "image/jpeg" : "application/octet-stream",
                              (int64_t)s->pending.len);
    }
    return respond_stream(req, s,
                          offer == 1 ? "image/jpeg" : "application/octet-stream", -1);
}

cp_status dweb_wado_bulkdata(http_request *req, void *ctx)
{
    static const wado_audit how = { AUDIT_INSTANCES_ACCESSED, "bulkdata",
                                    DWEB_AUDIT_THROTTLED };
    const dweb_config *cfg = dweb_service_config(ctx);
    wado_stream *s = stream_new(WADO_BULK, ctx);
    const char *path = http_request_path(req);
    const char *tail = path != NULL ? strstr(path, "/bulkdata/") : NULL;
    uint64_t size = 0;
    char asked[HTTP_TS_MAX];
    char *end = NULL;
    bool answered;
    cp_status st;

    if (s == NULL)
        return http_respond_error(req, 503, "out of memory");
    if (tail == NULL || tail[10] < '0' || tail[10] > '9') {
        stream_free(s);
        return http_respond_error(req, 404, "no such bulk data");
    }
    s->bulk_offset = strtoull(tail + 10, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9') {
        stream_free(s);
        return http_respond_error(req, 404, "no such bulk data");
    }
    s->bulk_length = strtoull(end + 1, &end, 10);
    if (*end != '\0' ||
        !negotiate(req, "multipart/related", "application/octet-stream", asked,
                   sizeof asked)) {
        stream_free(s);
        return http_respond_error(req, *end != '\0' ? 404 : 406, "no such bulk data");
    }
    st = find_instances(req, ctx, &s->list, &how, &answered);
    if (answered) {
        stream_free(s);
        return st;
    }
    st = store_stat(cfg->st, s->list.items[0].blob_key, &size, NULL);
    if (st != CP_OK || s->bulk_offset > size || s->bulk_length > size - s->bulk_offset) {
        stream_free(s);
        return http_respond_error(req, 404, "no such bulk data");
    }
    s->parts = 1;
    return respond_stream(req, s, "application/octet-stream", -1);
}
