/*
 * transcode.c - an instance in an encapsulated transfer syntax (PS3.5 A.4)
 * rewritten in Explicit VR Little Endian (PS3.5 A.2) for WADO-RS (PS3.18
 * 8.7.3.5), and decoded frames as native pixel data bytes (PS3.5 8.1.1).
 *
 * Every encapsulated syntax encodes its data set in Explicit VR Little
 * Endian already, so the elements are copied byte for byte from the stored
 * file (each one from its header to the next one's), save three: Pixel Data
 * becomes native, frame after frame as each is decoded, so that one frame
 * is in memory at a time; Photometric Interpretation becomes the colour space
 * the decoder gave (PS3.5 8.2.1: YBR_FULL_422 from JPEG is RGB once decoded);
 * Planar Configuration becomes 0, since decoded samples are interleaved.
 * Lossy Image Compression (PS3.3 C.7.6.1.1.5) is added as "01" when the
 * stored syntax is lossy and the data set does not say so already. The meta
 * group is made anew with the new transfer syntax.
 */
#include "dicomweb/transcode.h"

#include <string.h>

#include "core/alloc.h"
#include "dicomweb/dicomweb.h"
#include "dicom/dataset.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom/vr.h"
#include "dicom/writer.h"

#define TAG_SOP_CLASS      DCM_TAG(0x0008, 0x0016)
#define TAG_SOP_INSTANCE   DCM_TAG(0x0008, 0x0018)
#define TAG_PHOTOMETRIC    DCM_TAG(0x0028, 0x0004)
#define TAG_PLANAR         DCM_TAG(0x0028, 0x0006)
#define TAG_LOSSY          DCM_TAG(0x0028, 0x2110)

/* Bytes copied from the stored file per read. */
#define COPY_CHUNK (64u * 1024)

/*
 * Appends a decoded frame as the bytes of Explicit VR Little Endian pixel
 * data: samples interleaved, little endian in containers of bits
 * allocated, and bits allocated 1 packed again, least significant bit first.
 */
cp_status dweb_transcode_append_native(const px_image *img, const px_frame *f, cp_buf *out)
{
    size_t size = px_sample_size(f->type);
    size_t n = f->size / size;
    size_t start = out->len;
    cp_status st;

    if (img->bits_allocated == 1) {
        st = cp_buf_reserve(out, (n + 7) / 8);
        if (st != CP_OK)
            return st;
        memset(out->data + start, 0, (n + 7) / 8);
        for (size_t i = 0; i < n; i++)
            if (f->data[i] & 1)
                out->data[start + i / 8] |= (uint8_t)(1u << (i % 8));
        out->len += (n + 7) / 8;
        return CP_OK;
    }
    if ((st = cp_buf_reserve(out, f->size)) != CP_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        const uint8_t *p = f->data + i * size;

        /* From the native container to little endian, whatever the host. */
        if (size == 1)
            v = p[0];
        else if (size == 2)
            v = *(const uint16_t *)(const void *)p;
        else if (size == 4)
            v = *(const uint32_t *)(const void *)p;
        else
            v = *(const uint64_t *)(const void *)p;
        for (size_t b = 0; b < size; b++)
            out->data[start + i * size + b] = (uint8_t)(v >> (8 * b));
    }
    out->len += f->size;
    return CP_OK;
}


/* Writes one element with a short value in Explicit VR Little Endian. */
static cp_status put_element(const dcm_sink *sink, uint32_t tag, dcm_vr vr, const void *value,
                             size_t len)
{
    uint8_t head[DCM_WRITE_HEADER_MAX];
    size_t n = dcm_write_header(head, tag, vr, (uint32_t)len, true, false);
    cp_status st = dcm_sink_write(sink, head, n);

    return st == CP_OK ? dcm_sink_write(sink, value, len) : st;
}

/* Writes a CS value padded to even length with a space. */
static cp_status put_cs(const dcm_sink *sink, uint32_t tag, const char *text)
{
    char v[32];
    size_t n = strlen(text);

    if (n + 2 > sizeof v)
        return CP_ERR_INVALID;
    memcpy(v, text, n);
    if (n % 2 != 0)
        v[n++] = ' ';
    return put_element(sink, tag, DCM_VR_CS, v, n);
}

/* The offset of an element's header in an Explicit VR Little Endian stream. */
static uint64_t header_start(const dcm_element *el)
{
    bool long_header = (el->flags & DCM_ELEMENT_WAS_UN) || dcm_vr_has_long_length(el->vr);
    uint64_t size = long_header ? 12 : 8;

    return el->offset >= size ? el->offset - size : 0;
}

/* Copies bytes [from, to) of the source to the sink. */
static cp_status copy_range(dcm_source *src, uint64_t from, uint64_t to, uint8_t *chunk,
                            const dcm_sink *sink)
{
    while (from < to) {
        size_t want = to - from < COPY_CHUNK ? (size_t)(to - from) : COPY_CHUNK;
        size_t got = 0;
        cp_status st = dcm_source_pread(src, from, chunk, want, &got);

        if (st != CP_OK)
            return st;
        if (got == 0)
            return CP_ERR_IO;
        if ((st = dcm_sink_write(sink, chunk, got)) != CP_OK)
            return st;
        from += got;
    }
    return CP_OK;
}

/* Decodes frame `index` of img into f (cleared first). */
static cp_status decode(const px_image *img, dcm_source *src, uint32_t index, cp_buf *bytes,
                        px_frame *f, cp_error *err)
{
    cp_status st;

    px_frame_clear(f);
    cp_buf_reset(bytes);
    st = px_frame_bytes(img, src, index, bytes, err);
    if (st == CP_OK)
        st = px_decode_frame(img, bytes->data, bytes->len, f, err);
    return st;
}

/*
 * Writes the native Pixel Data element: frame 0 already decoded in f, the
 * others decoded and written one at a time.
 */
static cp_status put_pixels(const px_image *img, dcm_source *src, px_frame *f, cp_buf *bytes,
                            const dcm_sink *sink, cp_error *err)
{
    uint64_t frame_size = px_image_native_frame_size(img);
    uint64_t total = frame_size * img->frames;
    uint8_t head[DCM_WRITE_HEADER_MAX];
    uint8_t pad = 0;
    cp_buf out;
    size_t n;
    cp_status st = CP_OK;

    if (total > UINT32_MAX - 2)
        return CP_ERR_LIMIT;
    n = dcm_write_header(head, DCM_TAG_PIXEL_DATA,
                         img->bits_allocated > 8 ? DCM_VR_OW : DCM_VR_OB,
                         (uint32_t)(total + (total % 2)), true, false);
    if ((st = dcm_sink_write(sink, head, n)) != CP_OK)
        return st;

    cp_buf_init(&out);
    for (uint32_t i = 0; i < img->frames && st == CP_OK; i++) {
        if (i > 0)
            st = decode(img, src, i, bytes, f, err);
        cp_buf_reset(&out);
        if (st == CP_OK)
            st = dweb_transcode_append_native(img, f, &out);
        if (st == CP_OK && out.len != frame_size)
            st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, DCM_TAG_PIXEL_DATA,
                              "frame %u decodes to %zu bytes, not %llu", i + 1, out.len,
                              (unsigned long long)frame_size);
        if (st == CP_OK)
            st = dcm_sink_write(sink, out.data, out.len);
    }
    cp_buf_free(&out);
    if (st == CP_OK && total % 2 != 0)
        st = dcm_sink_write(sink, &pad, 1);
    return st;
}

cp_status dweb_transcode_native(store *st, const char *blob_key, const dcm_sink *sink,
                                cp_error *err)
{
    static const uint8_t preamble[128];
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    dcm_read_options ro;
    px_image img;
    bool img_ready = false;
    px_frame f;
    cp_buf bytes, meta;
    uint8_t *chunk = NULL;
    char sop_class[80], sop_inst[80];
    uint64_t size = 0;
    bool need_lossy = false;
    size_t count;
    cp_status rc;

    memset(&f, 0, sizeof f);
    cp_buf_init(&bytes);
    cp_buf_init(&meta);
    if ((rc = dweb_open_source(st, blob_key, &src, err)) != CP_OK)
        return rc;
    memset(&ro, 0, sizeof ro);
    if ((rc = dcm_file_read(src, &ro, &file, err)) != CP_OK)
        goto done;
    if ((rc = px_image_init(&img, file, src, err)) != CP_OK)
        goto done;
    img_ready = true;
    rc = CP_ERR_UNSUPPORTED;
    if (!img.transfer_syntax->encapsulated || img.transfer_syntax->big_endian ||
        (file->flags & (DCM_FILE_TS_MISMATCH | DCM_FILE_PARTIAL)) != 0 ||
        !img.transfer_syntax->explicit_vr || !px_can_decode(img.transfer_syntax) ||
        (img.bits_allocated == 1 && px_image_native_frame_size(&img) * 8 !=
         (uint64_t)img.rows * img.columns * img.samples_per_pixel))
        goto done;
    dcm_source_size(src, &size);
    rc = CP_ERR_NOMEM;
    if ((chunk = cp_malloc(COPY_CHUNK)) == NULL)
        goto done;

    /* Frame 0 first: its colour space goes in the header written before it. */
    if ((rc = decode(&img, src, 0, &bytes, &f, err)) != CP_OK)
        goto done;
    rc = dcm_dataset_get_string(file->dataset, TAG_SOP_CLASS, sop_class, sizeof sop_class);
    if (rc == CP_OK)
        rc = dcm_dataset_get_string(file->dataset, TAG_SOP_INSTANCE, sop_inst,
                                    sizeof sop_inst);
    if (rc != CP_OK)
        goto done;
    rc = dcm_write_meta_group(sop_class, strlen(sop_class), sop_inst, strlen(sop_inst),
                              &dcm_ts_explicit_le, &meta);
    if (rc == CP_OK)
        rc = dcm_sink_write(sink, preamble, sizeof preamble);
    if (rc == CP_OK)
        rc = dcm_sink_write(sink, "DICM", 4);
    if (rc == CP_OK)
        rc = dcm_sink_write(sink, meta.data, meta.len);
    if (rc != CP_OK)
        goto done;

    need_lossy = img.transfer_syntax->lossy &&
                 dcm_dataset_get(file->dataset, TAG_LOSSY) == NULL;
    count = dcm_dataset_count(file->dataset);
    for (size_t i = 0; i < count && rc == CP_OK; i++) {
        const dcm_element *el = dcm_dataset_at(file->dataset, i);
        uint64_t from = header_start(el);
        uint64_t to = i + 1 < count ? header_start(dcm_dataset_at(file->dataset, i + 1))
                                    : size;

        if (from < file->dataset_offset || from > to || to > size) {
            rc = cp_error_set(err, CP_ERR_MALFORMED, from, el->tag,
                              "the element does not lie where it was read");
            break;
        }
        if (need_lossy && el->tag > TAG_LOSSY) {
            need_lossy = false;
            if ((rc = put_cs(sink, TAG_LOSSY, "01")) != CP_OK)
                break;
        }
        if (el->tag == TAG_PHOTOMETRIC)
            rc = put_cs(sink, el->tag, px_photometric_name(f.photometric));
        else if (el->tag == TAG_PLANAR)
            rc = put_element(sink, el->tag, DCM_VR_US, "\0\0", 2);
        else if (el->tag == DCM_TAG_PIXEL_DATA)
            rc = put_pixels(&img, src, &f, &bytes, sink, err);
        else
            rc = copy_range(src, from, to, chunk, sink);
    }

done:
    cp_free(chunk);
    px_frame_clear(&f);
    cp_buf_free(&bytes);
    cp_buf_free(&meta);
    if (img_ready)
        px_image_clear(&img);
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    return rc;
}
