/*
 * pixel.c - what an image is and where its frames are: the Image Pixel
 * module (PS3.3 C.7.6.3) read from a data set, the palette colour tables
 * (C.7.6.3.1.5-6) with segmented tables expanded (C.7.9), the frames of
 * native pixel data (PS3.5 8.1.1, bit-packed frames included) and of
 * encapsulated pixel data (PS3.5 A.4: Extended Offset Table, Basic Offset
 * Table, fragments), and the dispatch from a transfer syntax (PS3.5 A.4.x,
 * PS3.6 Annex A) to the decoder of its family. Deflated Image Frame
 * Compression (PS3.5 A.4.11) is inflated here and handed to the native
 * decoder.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dict_tags.h"
#include "dicom/tag.h"
#include "pixel/codec.h"
#include "pixel/pixel.h"

/* --- photometric interpretations and sample types --------------------------------- */

static const char *const photometric_names[] = {
    [PX_PHOTOMETRIC_UNKNOWN] = "UNKNOWN",
    [PX_MONOCHROME1] = "MONOCHROME1",
    [PX_MONOCHROME2] = "MONOCHROME2",
    [PX_PALETTE_COLOR] = "PALETTE COLOR",
    [PX_RGB] = "RGB",
    [PX_YBR_FULL] = "YBR_FULL",
    [PX_YBR_FULL_422] = "YBR_FULL_422",
    [PX_YBR_PARTIAL_422] = "YBR_PARTIAL_422",
    [PX_YBR_PARTIAL_420] = "YBR_PARTIAL_420",
    [PX_YBR_ICT] = "YBR_ICT",
    [PX_YBR_RCT] = "YBR_RCT",
};

#define PHOTOMETRIC_COUNT (sizeof photometric_names / sizeof photometric_names[0])

px_photometric px_photometric_parse(const char *text, size_t len)
{
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\0'))
        len--;
    while (len > 0 && text[0] == ' ') {
        text++;
        len--;
    }

    for (size_t i = 1; i < PHOTOMETRIC_COUNT; i++) {
        const char *name = photometric_names[i];

        if (strlen(name) == len && memcmp(name, text, len) == 0)
            return (px_photometric)i;
    }
    return PX_PHOTOMETRIC_UNKNOWN;
}

const char *px_photometric_name(px_photometric pi)
{
    if ((size_t)pi >= PHOTOMETRIC_COUNT)
        return photometric_names[PX_PHOTOMETRIC_UNKNOWN];
    return photometric_names[pi];
}

size_t px_sample_size(px_sample_type type)
{
    switch (type) {
    case PX_U8: case PX_S8:
        return 1;
    case PX_U16: case PX_S16:
        return 2;
    case PX_U32: case PX_S32: case PX_F32:
        return 4;
    case PX_F64:
        return 8;
    }
    return 1;
}

px_sample_type px_image_sample_type(const px_image *img)
{
    if (img->float_pixels)
        return img->bits_allocated == 64 ? PX_F64 : PX_F32;
    if (img->bits_allocated <= 8)
        return img->is_signed && img->bits_allocated == 8 ? PX_S8 : PX_U8;
    if (img->bits_allocated <= 16)
        return img->is_signed ? PX_S16 : PX_U16;
    return img->is_signed ? PX_S32 : PX_U32;
}

/* --- frames ------------------------------------------------------------------------ */

void px_frame_clear(px_frame *frame)
{
    if (frame == NULL)
        return;
    cp_free(frame->data);
    memset(frame, 0, sizeof *frame);
}

cp_status px_frame_alloc(px_frame *frame, uint32_t rows, uint32_t columns, uint16_t samples,
                         px_sample_type type, cp_error *err)
{
    uint64_t size = (uint64_t)rows * columns * samples * px_sample_size(type);

    memset(frame, 0, sizeof *frame);
    if (rows == 0 || columns == 0 || samples == 0)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "empty frame (%u x %u x %u)", rows, columns, samples);
    if (size > PX_FRAME_BYTES_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "a frame of %u x %u x %u samples exceeds %u bytes",
                            rows, columns, samples, PX_FRAME_BYTES_MAX);

    frame->data = cp_malloc((size_t)size);
    if (frame->data == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no memory for a frame of %llu bytes", (unsigned long long)size);
    frame->rows = rows;
    frame->columns = columns;
    frame->samples_per_pixel = samples;
    frame->type = type;
    frame->size = (size_t)size;
    return CP_OK;
}

void px_frame_fix_bits(px_frame *frame, uint16_t bits_stored)
{
    size_t n = frame->size / px_sample_size(frame->type);
    unsigned width = (unsigned)px_sample_size(frame->type) * 8;

    frame->bits_stored = bits_stored;
    if (bits_stored == 0 || bits_stored >= width || frame->type == PX_F32 ||
        frame->type == PX_F64)
        return;

    uint32_t mask = (UINT32_C(1) << bits_stored) - 1;
    uint32_t sign = UINT32_C(1) << (bits_stored - 1);

    switch (frame->type) {
    case PX_U8: {
        uint8_t *p = frame->data;
        for (size_t i = 0; i < n; i++)
            p[i] &= (uint8_t)mask;
        break;
    }
    case PX_S8: {
        uint8_t *p = frame->data;
        for (size_t i = 0; i < n; i++)
            p[i] = (uint8_t)(((p[i] & mask) ^ sign) - sign);
        break;
    }
    case PX_U16: {
        uint16_t *p = (uint16_t *)(void *)frame->data;
        for (size_t i = 0; i < n; i++)
            p[i] &= (uint16_t)mask;
        break;
    }
    case PX_S16: {
        int16_t *p = (int16_t *)(void *)frame->data;
        unsigned up = 16 - bits_stored;

        /* Up to the top and back: the arithmetic shift copies the sign bit down. */
        for (size_t i = 0; i < n; i++)
            p[i] = (int16_t)((int16_t)((uint16_t)p[i] << up) >> up);
        break;
    }
    case PX_U32: {
        uint32_t *p = (uint32_t *)(void *)frame->data;
        for (size_t i = 0; i < n; i++)
            p[i] &= mask;
        break;
    }
    case PX_S32: {
        uint32_t *p = (uint32_t *)(void *)frame->data;
        for (size_t i = 0; i < n; i++)
            p[i] = ((p[i] & mask) ^ sign) - sign;
        break;
    }
    case PX_F32: case PX_F64:
        break;
    }
}

uint64_t px_image_native_frame_size(const px_image *img)
{
    uint64_t pixels = (uint64_t)img->rows * img->columns;
    uint64_t samples = pixels * img->samples_per_pixel;

    /*
     * YBR_FULL_422 stores two luminance samples per chrominance pair
     * (C.7.6.3.1.2); a lone last pixel keeps its Cb and Cr.
     */
    if (img->photometric == PX_YBR_FULL_422 && img->samples_per_pixel == 3)
        samples = pixels * 2 + pixels % 2;
    return (samples * img->bits_allocated + 7) / 8;
}

/* --- reading the Image Pixel module ---------------------------------------------- */

static cp_status missing(cp_error *err, uint32_t tag, const char *name)
{
    return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, tag, "%s is missing", name);
}

/* A US value of ds; `fallback` when absent and not required. */
static cp_status read_us(const dcm_dataset *ds, uint32_t tag, const char *name, bool required,
                         uint64_t fallback, uint64_t *out, cp_error *err)
{
    const dcm_element *el = dcm_dataset_get(ds, tag);
    cp_status st;

    if (el == NULL || el->value_length == 0) {
        if (required)
            return missing(err, tag, name);
        *out = fallback;
        return CP_OK;
    }
    st = dcm_element_get_uint(ds, el, 0, out);
    if (st != CP_OK)
        return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)el->offset, tag,
                            "%s has no unsigned value", name);
    return CP_OK;
}

/* Number of Frames is an IS: a decimal string, maybe padded, maybe signed. */
static cp_status read_frames(const dcm_dataset *ds, uint32_t *frames, cp_error *err)
{
    const dcm_element *el = dcm_dataset_get(ds, DCM_NumberOfFrames);
    const char *text;
    size_t len;
    uint64_t v = 0;
    size_t i = 0;

    *frames = 1;
    if (el == NULL || el->value_length == 0 || el->value == NULL)
        return CP_OK;
    if (dcm_element_get_string(el, 0, &text, &len) != CP_OK || len == 0)
        return CP_OK;

    if (text[0] == '+')
        i++;
    if (i == len)
        goto bad;
    for (; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            goto bad;
        v = v * 10 + (uint64_t)(text[i] - '0');
        if (v > PX_FRAMES_MAX)
            return cp_error_set(err, CP_ERR_LIMIT, (int64_t)el->offset, DCM_NumberOfFrames,
                                "Number of Frames exceeds %u", PX_FRAMES_MAX);
    }
    if (v == 0)
        goto bad;
    *frames = (uint32_t)v;
    return CP_OK;

bad:
    return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)el->offset, DCM_NumberOfFrames,
                        "Number of Frames \"%.*s\" is not a positive integer",
                        (int)(len > 16 ? 16 : len), text);
}

/* The bytes of an element's value: in memory, or read from src into buf. */
static cp_status element_bytes(const dcm_element *el, dcm_source *src, cp_buf *buf,
                               const uint8_t **data, size_t *len, cp_error *err)
{
    cp_status st;

    if (el->value != NULL) {
        *data = el->value;
        *len = (size_t)el->value_length;
        return CP_OK;
    }
    if (src == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, el->tag,
                            "the value was not loaded and no source was given");
    cp_buf_reset(buf);
    st = dcm_element_read_value(el, src, buf, err);
    if (st != CP_OK)
        return st;
    *data = buf->data;
    *len = buf->len;
    return CP_OK;
}

/* --- palettes (PS3.3 C.7.6.3.1.5-6 and C.7.9) ------------------------------------ */

/* Entries of a segmented table: 8-bit tables as bytes, 16-bit ones as words (as pydicom). */
typedef struct seg_data {
    const uint8_t *bytes;
    size_t count;
    bool words;
    bool big_endian;
} seg_data;

static uint32_t seg_at(const seg_data *s, size_t i)
{
    const uint8_t *p;

    if (!s->words)
        return s->bytes[i];
    p = s->bytes + 2 * i;
    return s->big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

typedef struct seg_out {
    uint16_t *lut;
    uint32_t n;
} seg_out;

static cp_status seg_push(seg_out *o, uint32_t value)
{
    if (o->n >= PX_PALETTE_ENTRIES_MAX)
        return CP_ERR_MALFORMED;
    o->lut[o->n++] = (uint16_t)value;
    return CP_OK;
}

/* The 32-bit offset of an indirect segment, in entries (C.7.9.2.3). */
static bool seg_indirect_offset(const seg_data *s, size_t *pos, uint32_t *offset)
{
    if (s->words) {
        if (*pos + 2 > s->count)
            return false;
        *offset = seg_at(s, *pos + 1) << 16 | seg_at(s, *pos);
        *pos += 2;
        return true;
    }

    /* 8-bit entries carry the two words of the offset in data set byte order. */
    if (*pos + 4 > s->count)
        return false;
    const uint8_t *b = s->bytes + *pos;
    *offset = s->big_endian
                  ? (uint32_t)b[2] << 24 | (uint32_t)b[3] << 16 | (uint32_t)b[0] << 8 | b[1]
                  : (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
    *pos += 4;
    return true;
}

static cp_status seg_linear(seg_out *o, uint32_t y0, uint32_t y1, uint32_t length)
{
    for (uint32_t i = 0; i < length; i++) {
        double v = (double)y0 + ((double)y1 - (double)y0) * (i + 1) / length;

        /* Round half to even, as numpy's around does for pydicom. */
        if (seg_push(o, (uint32_t)nearbyint(v)) != CP_OK)
            return CP_ERR_MALFORMED;
    }
    return CP_OK;
}

/*
 * Expands segments from entry `pos` on: all of them, or `limit` of them for
 * an indirect segment (which may not nest: depth bounds the recursion).
 */
static cp_status seg_expand(const seg_data *s, size_t pos, uint32_t limit, int depth,
                            seg_out *o)
{
    uint32_t done = 0;

    while (pos + 1 < s->count && (limit == 0 || done < limit)) {
        uint32_t op = seg_at(s, pos), length = seg_at(s, pos + 1);
        uint32_t offset;

        pos += 2;
        if (op == 0) {
            if (length > s->count - pos)
                return CP_ERR_MALFORMED;
            for (uint32_t i = 0; i < length; i++) {
                if (seg_push(o, seg_at(s, pos + i)) != CP_OK)
                    return CP_ERR_MALFORMED;
            }
            pos += length;
        } else if (op == 1) {
            if (pos >= s->count || o->n == 0)
                return CP_ERR_MALFORMED;
            if (seg_linear(o, o->lut[o->n - 1], seg_at(s, pos), length) != CP_OK)
                return CP_ERR_MALFORMED;
            pos++;
        } else if (op == 2) {
            if (depth > 0 || o->n == 0 || !seg_indirect_offset(s, &pos, &offset) ||
                offset >= s->count)
                return CP_ERR_MALFORMED;
            if (length > 0 && seg_expand(s, offset, length, depth + 1, o) != CP_OK)
                return CP_ERR_MALFORMED;
        } else {
            return CP_ERR_MALFORMED;
        }
        done++;
    }
    return CP_OK;
}

typedef struct palette_tags {
    uint32_t descriptor, data, segmented;
    const char *name;
} palette_tags;

static const palette_tags palette_channels[3] = {
    { DCM_RedPaletteColorLookupTableDescriptor, DCM_RedPaletteColorLookupTableData,
      DCM_SegmentedRedPaletteColorLookupTableData, "red" },
    { DCM_GreenPaletteColorLookupTableDescriptor, DCM_GreenPaletteColorLookupTableData,
      DCM_SegmentedGreenPaletteColorLookupTableData, "green" },
    { DCM_BluePaletteColorLookupTableDescriptor, DCM_BluePaletteColorLookupTableData,
      DCM_SegmentedBluePaletteColorLookupTableData, "blue" },
};

static cp_status palette_descriptor(const dcm_dataset *ds, uint32_t tag, uint32_t *entries,
                                    int32_t *first, uint16_t *bits, cp_error *err)
{
    const dcm_element *el = dcm_dataset_get(ds, tag);
    int64_t v[3];

    if (el == NULL)
        return missing(err, tag, "Palette Color Lookup Table Descriptor");
    for (size_t i = 0; i < 3; i++) {
        uint64_t u;

        /* The VR is US or SS; only the first mapped value may be negative. */
        if (dcm_element_get_int(ds, el, i, &v[i]) != CP_OK) {
            if (dcm_element_get_uint(ds, el, i, &u) != CP_OK)
                return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)el->offset, tag,
                                    "palette descriptor has fewer than 3 values");
            v[i] = (int64_t)u;
        }
    }
    if (el->vr == DCM_VR_SS) {
        v[0] &= 0xFFFF;
        v[2] &= 0xFFFF;
    }
    *entries = v[0] == 0 ? 65536u : (uint32_t)v[0];
    *first = (int32_t)v[1];
    *bits = (uint16_t)v[2];
    if (v[0] < 0 || v[0] > 65535 || (*bits != 8 && *bits != 16))
        return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)el->offset, tag,
                            "palette descriptor %lld\\%lld\\%lld is not valid",
                            (long long)v[0], (long long)v[1], (long long)v[2]);
    return CP_OK;
}

/*
 * One channel's table. Plain data holds one value per entry: 16-bit words,
 * or bytes when the data is one byte per entry. An 8-bit descriptor with
 * 16-bit words keeps the whole word, as pydicom does; the table's bits then
 * say 8 when every value fits in the low byte and 16 when some writer put
 * them in the high byte, so that a renderer scales them right.
 */
static cp_status palette_channel(const dcm_dataset *ds, dcm_source *src, const palette_tags *t,
                                 px_palette *pal, uint16_t *lut, uint16_t *bits, cp_error *err)
{
    const dcm_element *el = dcm_dataset_get(ds, t->data);
    cp_buf buf = CP_BUF_INIT;
    const uint8_t *data = NULL;
    size_t len = 0;
    bool be = dcm_dataset_big_endian(ds);
    cp_status st;

    if (el == NULL) {
        el = dcm_dataset_get(ds, t->segmented);
        if (el == NULL) {
            st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, t->data,
                              "the %s palette has no data", t->name);
            goto done;
        }
        st = element_bytes(el, src, &buf, &data, &len, err);
        if (st != CP_OK)
            goto done;

        seg_data s = { data, pal->bits == 8 ? len : len / 2, pal->bits == 16, be };
        seg_out o = { lut, 0 };

        if (seg_expand(&s, 0, 0, 0, &o) != CP_OK || o.n == 0) {
            st = cp_error_set(err, CP_ERR_MALFORMED, (int64_t)el->offset, el->tag,
                              "the segmented %s palette is corrupt", t->name);
            goto done;
        }
        /* A table shorter than its descriptor repeats its last value. */
        for (uint32_t i = o.n; i < pal->entries; i++)
            lut[i] = lut[o.n - 1];
        *bits = pal->bits;
        st = CP_OK;
        goto done;
    }

    st = element_bytes(el, src, &buf, &data, &len, err);
    if (st != CP_OK)
        goto done;
    if (len >= 2 * (size_t)pal->entries) {
        uint16_t max = 0;

        for (uint32_t i = 0; i < pal->entries; i++) {
            const uint8_t *p = data + 2 * i;
            lut[i] = be ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
            max = lut[i] > max ? lut[i] : max;
        }
        *bits = pal->bits == 8 && max <= 255 ? 8 : 16;
    } else if (len >= pal->entries && len <= (size_t)pal->entries + 1) {
        for (uint32_t i = 0; i < pal->entries; i++)
            lut[i] = data[i];
        *bits = 8;
    } else {
        st = cp_error_set(err, CP_ERR_MALFORMED, (int64_t)el->offset, el->tag,
                          "the %s palette has %zu bytes for %u entries", t->name, len,
                          pal->entries);
        goto done;
    }
    st = CP_OK;

done:
    cp_buf_free(&buf);
    return st;
}

static cp_status read_palette(px_image *img, const dcm_dataset *ds, dcm_source *src,
                              cp_error *err)
{
    px_palette *pal = &img->palette;
    uint16_t *luts[3];
    uint16_t bits[3];
    cp_status st;

    st = palette_descriptor(ds, palette_channels[0].descriptor, &pal->entries,
                            &pal->first_mapped, &pal->bits, err);
    if (st != CP_OK)
        return st;

    /* Segments may expand up to the bound whatever the descriptor says. */
    size_t per = PX_PALETTE_ENTRIES_MAX;
    uint16_t *block = cp_calloc(3 * per, sizeof *block);

    if (block == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no memory for the palette");
    for (size_t c = 0; c < 3; c++) {
        luts[c] = block + c * per;
        st = palette_channel(ds, src, &palette_channels[c], pal, luts[c], &bits[c], err);
        if (st != CP_OK) {
            cp_free(block);
            return st;
        }
    }
    pal->red = luts[0];
    pal->green = luts[1];
    pal->blue = luts[2];
    pal->bits = bits[0] > bits[1] ? bits[0] : bits[1];
    if (bits[2] > pal->bits)
        pal->bits = bits[2];
    img->has_palette = true;
    return CP_OK;
}

/* --- Extended Offset Table (PS3.5 A.4, PS3.3 C.7.6.3.1.7) ------------------------- */

static cp_status read_eot(px_image *img, const dcm_dataset *ds, dcm_source *src,
                          cp_error *err)
{
    const dcm_element *off = dcm_dataset_get(ds, DCM_ExtendedOffsetTable);
    const dcm_element *len = dcm_dataset_get(ds, DCM_ExtendedOffsetTableLengths);
    uint64_t need = 0;
    cp_status st;

    if (off == NULL || off->value_length < 8)
        return CP_OK;
    if (off->value == NULL)
        need += off->value_length;
    if (len != NULL && len->value == NULL)
        need += len->value_length;
    if (need > 0) {
        cp_buf buf = CP_BUF_INIT;
        const uint8_t *data = NULL;
        size_t n = 0;

        if (need > DCM_VALUE_LOAD_MAX)
            return cp_error_set(err, CP_ERR_LIMIT, (int64_t)off->offset, off->tag,
                                "the Extended Offset Table is too large");
        img->owned = cp_malloc((size_t)need);
        if (img->owned == NULL)
            return CP_ERR_NOMEM;
        need = 0;
        for (int i = 0; i < 2; i++) {
            const dcm_element *el = i == 0 ? off : len;

            if (el == NULL || el->value != NULL)
                continue;
            st = element_bytes(el, src, &buf, &data, &n, err);
            if (st == CP_OK && n != el->value_length)
                st = CP_ERR_TRUNCATED;
            if (st != CP_OK) {
                cp_buf_free(&buf);
                return cp_error_set(err, st, (int64_t)el->offset, el->tag,
                                    "the Extended Offset Table could not be read");
            }
            memcpy(img->owned + need, data, n);
            if (i == 0)
                img->eot_offsets = img->owned + need;
            else
                img->eot_lengths = img->owned + need;
            need += n;
        }
        cp_buf_free(&buf);
    }
    if (off->value != NULL)
        img->eot_offsets = off->value;
    img->eot_count = (uint32_t)(off->value_length / 8 > UINT32_MAX ? UINT32_MAX
                                                                   : off->value_length / 8);
    if (len != NULL && len->value != NULL)
        img->eot_lengths = len->value;
    if (len == NULL || len->value_length / 8 != off->value_length / 8)
        img->eot_lengths = NULL;
    return CP_OK;
}

/* --- px_image_init ------------------------------------------------------------------ */

static bool photometric_samples_ok(px_photometric pi, uint16_t samples)
{
    switch (pi) {
    case PX_MONOCHROME1: case PX_MONOCHROME2: case PX_PALETTE_COLOR:
        return samples == 1;
    case PX_PHOTOMETRIC_UNKNOWN:
        return true;
    default:
        return samples == 3;
    }
}

static cp_status read_attributes(px_image *img, const dcm_dataset *ds, cp_error *err)
{
    uint64_t v;
    cp_status st;

#define READ_US(tag, name, required, fallback)                               \
    do {                                                                     \
        st = read_us(ds, tag, name, required, fallback, &v, err);            \
        if (st != CP_OK)                                                     \
            return st;                                                       \
    } while (0)

    READ_US(DCM_Rows, "Rows", true, 0);
    img->rows = (uint32_t)v;
    READ_US(DCM_Columns, "Columns", true, 0);
    img->columns = (uint32_t)v;
    READ_US(DCM_SamplesPerPixel, "Samples per Pixel", true, 1);
    img->samples_per_pixel = (uint16_t)v;
    READ_US(DCM_BitsAllocated, "Bits Allocated", true, 0);
    img->bits_allocated = (uint16_t)v;
    READ_US(DCM_BitsStored, "Bits Stored", !img->float_pixels, img->bits_allocated);
    img->bits_stored = (uint16_t)v;
    READ_US(DCM_HighBit, "High Bit", false, img->bits_stored - 1u);
    img->high_bit = (uint16_t)v;
    READ_US(DCM_PixelRepresentation, "Pixel Representation", !img->float_pixels, 0);
    if (v > 1)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET,
                            DCM_PixelRepresentation, "Pixel Representation is %llu",
                            (unsigned long long)v);
    img->is_signed = v == 1;
    READ_US(DCM_PlanarConfiguration, "Planar Configuration", false, 0);
    if (img->samples_per_pixel > 1 && v > 1)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET,
                            DCM_PlanarConfiguration, "Planar Configuration is %llu",
                            (unsigned long long)v);
    img->planar_configuration = img->samples_per_pixel > 1 ? (uint16_t)v : 0;
#undef READ_US

    const dcm_element *pi = dcm_dataset_get(ds, DCM_PhotometricInterpretation);
    const char *text;
    size_t len;

    if (pi == NULL || dcm_element_get_string(pi, 0, &text, &len) != CP_OK || len == 0)
        return missing(err, DCM_PhotometricInterpretation, "Photometric Interpretation");
    img->photometric = px_photometric_parse(text, len);
    return read_frames(ds, &img->frames, err);
}

static cp_status check_attributes(const px_image *img, cp_error *err)
{
    uint16_t ba = img->bits_allocated;
    bool ba_ok = img->float_pixels ? (ba == 32 || ba == 64)
                                   : (ba == 1 || ba == 8 || ba == 16 || ba == 32);

#define BAD(tag, ...) \
    cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, tag, __VA_ARGS__)

    if (img->rows == 0 || img->columns == 0)
        return BAD(img->rows == 0 ? DCM_Rows : DCM_Columns, "the image is empty (%u x %u)",
                   img->rows, img->columns);
    if (img->samples_per_pixel != 1 && img->samples_per_pixel != 3)
        return BAD(DCM_SamplesPerPixel, "Samples per Pixel is %u (1 or 3 are decoded)",
                   img->samples_per_pixel);
    if (!ba_ok)
        return BAD(DCM_BitsAllocated, "Bits Allocated is %u", ba);
    if (img->bits_stored == 0 || img->bits_stored > ba)
        return BAD(DCM_BitsStored, "Bits Stored is %u with Bits Allocated %u",
                   img->bits_stored, ba);
    if (img->high_bit != img->bits_stored - 1)
        return BAD(DCM_HighBit, "High Bit is %u with Bits Stored %u", img->high_bit,
                   img->bits_stored);
    if (ba == 1 && img->samples_per_pixel != 1)
        return BAD(DCM_SamplesPerPixel, "bit-packed pixels with %u samples",
                   img->samples_per_pixel);
    if (!photometric_samples_ok(img->photometric, img->samples_per_pixel))
        return BAD(DCM_PhotometricInterpretation, "%s with %u samples per pixel",
                   px_photometric_name(img->photometric), img->samples_per_pixel);
    if ((uint64_t)img->rows * img->columns * img->samples_per_pixel *
            px_sample_size(px_image_sample_type(img)) > PX_FRAME_BYTES_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, DCM_Rows,
                            "a frame of %u x %u x %u exceeds %u bytes", img->rows,
                            img->columns, img->samples_per_pixel, PX_FRAME_BYTES_MAX);
#undef BAD
    return CP_OK;
}

/* Native pixel data must hold every frame; bit-packed frames share bytes. */
static cp_status check_native_length(const px_image *img, cp_error *err)
{
    uint64_t need;

    if (img->bits_allocated == 1) {
        uint64_t bits = (uint64_t)img->rows * img->columns * img->samples_per_pixel;
        need = (bits * img->frames + 7) / 8;
    } else {
        need = px_image_native_frame_size(img) * img->frames;
    }
    if (need > img->pixel_data->value_length)
        return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)img->pixel_data->offset,
                            img->pixel_data->tag,
                            "%u frames need %llu bytes, the pixel data has %llu",
                            img->frames, (unsigned long long)need,
                            (unsigned long long)img->pixel_data->value_length);
    return CP_OK;
}

cp_status px_image_init(px_image *img, const dcm_file *file, dcm_source *src, cp_error *err)
{
    const dcm_dataset *ds = file->dataset;
    const dcm_transfer_syntax *ts = file->transfer_syntax;
    const dcm_element *pd;
    cp_status st;

    memset(img, 0, sizeof *img);
    if (ds == NULL || ts == NULL)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no data set or no known transfer syntax");
    img->transfer_syntax = ts;
    img->big_endian = ts->big_endian;

    pd = dcm_dataset_get(ds, DCM_PixelData);
    if (pd == NULL) {
        pd = dcm_dataset_get(ds, DCM_FloatPixelData);
        if (pd == NULL)
            pd = dcm_dataset_get(ds, DCM_DoubleFloatPixelData);
        img->float_pixels = pd != NULL;
    }
    if (pd == NULL)
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, DCM_PixelData,
                            "the data set has no pixel data");
    img->pixel_data = pd;

    st = read_attributes(img, ds, err);
    if (st != CP_OK)
        goto fail;
    st = check_attributes(img, err);
    if (st != CP_OK)
        goto fail;

    bool encapsulated = (pd->flags & DCM_ELEMENT_ENCAPSULATED) != 0;

    if (encapsulated != ts->encapsulated) {
        st = cp_error_set(err, CP_ERR_MALFORMED, (int64_t)pd->offset, pd->tag,
                          "%s pixel data in %s", encapsulated ? "encapsulated" : "native",
                          ts->name);
        goto fail;
    }
    if (!encapsulated) {
        st = check_native_length(img, err);
        if (st != CP_OK)
            goto fail;
    } else if (pd->fragment_count < 2) {
        st = cp_error_set(err, CP_ERR_MALFORMED, (int64_t)pd->offset, pd->tag,
                          "encapsulated pixel data without fragments");
        goto fail;
    } else {
        st = read_eot(img, ds, src, err);
        if (st != CP_OK)
            goto fail;
    }

    if (img->photometric == PX_PALETTE_COLOR) {
        st = read_palette(img, ds, src, err);
        if (st != CP_OK)
            goto fail;
    }
    return CP_OK;

fail:
    px_image_clear(img);
    return st;
}

void px_image_clear(px_image *img)
{
    if (img == NULL)
        return;
    cp_free(img->palette.red);
    cp_free(img->owned);
    memset(img, 0, sizeof *img);
}

/* --- locating frames ------------------------------------------------------------- */

/* Native frames: a slice of the value; bit-packed frames shifted to start on a byte. */
static cp_status native_frame_bytes(const px_image *img, dcm_source *src, uint32_t index,
                                    cp_buf *out, cp_error *err)
{
    const dcm_element *pd = img->pixel_data;
    uint64_t size = px_image_native_frame_size(img);
    uint64_t start, shift = 0, take;
    cp_status st;

    if (img->bits_allocated == 1) {
        uint64_t bits = (uint64_t)img->rows * img->columns * img->samples_per_pixel;
        start = bits * index / 8;
        shift = bits * index % 8;
    } else {
        start = size * index;
    }
    take = size + (shift != 0);
    if (start > pd->value_length || take > pd->value_length - start)
        take = start > pd->value_length ? 0 : pd->value_length - start;
    if (take < size)
        return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)pd->offset, pd->tag,
                            "frame %u ends past the pixel data", index);

    size_t at = out->len;

    st = cp_buf_reserve(out, (size_t)take);
    if (st != CP_OK)
        return cp_error_set(err, st, CP_ERROR_NO_OFFSET, pd->tag, "no memory for a frame");
    if (pd->value != NULL) {
        memcpy(out->data + at, pd->value + start, (size_t)take);
    } else {
        size_t got = 0;

        if (src == NULL)
            return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, pd->tag,
                                "the pixel data was not loaded and no source was given");
        st = dcm_source_pread(src, pd->offset + start, out->data + at, (size_t)take, &got);
        if (st == CP_OK && got < size)
            st = CP_ERR_TRUNCATED;
        if (st != CP_OK)
            return cp_error_set(err, st, (int64_t)(pd->offset + start), pd->tag,
                                "frame %u could not be read", index);
        take = got;
    }

    if (shift != 0) {
        uint8_t *p = out->data + at;

        for (uint64_t i = 0; i < size; i++) {
            unsigned next = i + 1 < take ? p[i + 1] : 0;
            p[i] = (uint8_t)(p[i] >> shift | next << (8 - shift));
        }
    }
    out->len = at + (size_t)size;
    out->data[out->len] = 0;
    return CP_OK;
}

/* Appends one fragment's bytes (what the source still holds of it). */
static cp_status fragment_append(const dcm_element *pd, uint32_t i, dcm_source *src,
                                 cp_buf *out, cp_error *err)
{
    const dcm_fragment *f = &pd->fragments[i];
    size_t got = 0;
    cp_status st;

    if ((uint64_t)out->len + f->length > PX_FRAME_BYTES_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, (int64_t)f->offset, pd->tag,
                            "a frame's fragments exceed %u bytes", PX_FRAME_BYTES_MAX);
    if (f->data != NULL)
        return cp_buf_append(out, f->data, f->length) == CP_OK
                   ? CP_OK
                   : cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, pd->tag,
                                  "no memory for a frame");
    if (src == NULL)
        return cp_error_set(err, CP_ERR_INVALID, (int64_t)f->offset, pd->tag,
                            "fragment %u was not loaded and no source was given", i);
    if (cp_buf_reserve(out, f->length) != CP_OK)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, pd->tag,
                            "no memory for a frame");
    st = dcm_source_pread(src, f->offset, out->data + out->len, f->length, &got);
    if (st != CP_OK)
        return cp_error_set(err, st, (int64_t)f->offset, pd->tag,
                            "fragment %u could not be read", i);
    /* A file cut short keeps what it has: the decoder judges the codestream. */
    out->len += got;
    out->data[out->len] = 0;
    return CP_OK;
}

/* The first bytes of fragment i (fewer when it is shorter). */
static size_t fragment_head(const dcm_element *pd, uint32_t i, dcm_source *src, uint8_t *head,
                            size_t size)
{
    const dcm_fragment *f = &pd->fragments[i];
    size_t n = f->length < size ? f->length : size;
    size_t got = 0;

    if (f->data != NULL) {
        memcpy(head, f->data, n);
        return n;
    }
    if (src == NULL || dcm_source_pread(src, f->offset, head, n, &got) != CP_OK)
        return 0;
    return got;
}

/* Whether a fragment starts a codestream: JPEG family SOI, J2K SOC+SIZ, or a JP2 box. */
static bool fragment_starts_frame(const dcm_element *pd, uint32_t i, dcm_source *src)
{
    static const uint8_t jp2[8] = { 0, 0, 0, 0x0C, 'j', 'P', ' ', ' ' };
    uint8_t head[8];
    size_t n = fragment_head(pd, i, src, head, sizeof head);

    if (n >= 2 && head[0] == 0xFF && head[1] == 0xD8)
        return true;
    if (n >= 4 && head[0] == 0xFF && head[1] == 0x4F && head[2] == 0xFF && head[3] == 0x51)
        return true;
    return n == 8 && memcmp(head, jp2, 8) == 0;
}

/* The fragment whose item starts `offset` bytes after the first fragment's item. */
static bool fragment_at(const dcm_element *pd, uint64_t offset, uint32_t *index)
{
    uint64_t base = pd->fragments[1].offset;
    uint32_t lo = 1, hi = pd->fragment_count;

    /* Fragments are in stream order, so their offsets increase. */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint64_t at = pd->fragments[mid].offset - base;

        if (at == offset) {
            *index = mid;
            return true;
        }
        if (at < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Frame `index` through the Extended Offset Table: fragments [first, end), length cap. */
static bool locate_eot(const px_image *img, uint32_t index, uint32_t *first, uint32_t *end,
                       uint64_t *length)
{
    const dcm_element *pd = img->pixel_data;

    if (img->eot_offsets == NULL || img->eot_count < img->frames)
        return false;
    if (!fragment_at(pd, le64(img->eot_offsets + 8 * (size_t)index), first))
        return false;
    *end = pd->fragment_count;
    if (index + 1 < img->frames &&
        !fragment_at(pd, le64(img->eot_offsets + 8 * ((size_t)index + 1)), end))
        return false;
    if (*end <= *first)
        return false;
    if (img->eot_lengths != NULL)
        *length = le64(img->eot_lengths + 8 * (size_t)index);
    return true;
}

static bool locate_bot(const px_image *img, dcm_source *src, uint32_t index, uint32_t *first,
                       uint32_t *end)
{
    const dcm_element *pd = img->pixel_data;
    const dcm_fragment *bot = &pd->fragments[0];
    uint8_t entry[8];
    size_t got = 0;
    uint64_t pos;

    if (bot->length / 4 < img->frames)
        return false;

    pos = (uint64_t)index * 4;
    size_t want = index + 1 < img->frames ? 8 : 4;

    if (bot->data != NULL)
        memcpy(entry, bot->data + pos, want);
    else if (src == NULL || dcm_source_pread(src, bot->offset + pos, entry, want, &got) != CP_OK ||
             got != want)
        return false;

    uint64_t a = (uint64_t)entry[0] | (uint64_t)entry[1] << 8 | (uint64_t)entry[2] << 16 |
                 (uint64_t)entry[3] << 24;

    if (!fragment_at(pd, a, first))
        return false;
    *end = pd->fragment_count;
    if (want == 8) {
        uint64_t b = (uint64_t)entry[4] | (uint64_t)entry[5] << 8 |
                     (uint64_t)entry[6] << 16 | (uint64_t)entry[7] << 24;
        if (!fragment_at(pd, b, end))
            return false;
    }
    return *end > *first;
}

/* Without tables: one fragment a frame when the counts agree, else start markers. */
static bool locate_scan(const px_image *img, dcm_source *src, uint32_t index, uint32_t *first,
                        uint32_t *end)
{
    const dcm_element *pd = img->pixel_data;
    uint32_t n = pd->fragment_count - 1;
    uint32_t seen = 0;

    if (img->frames == 1) {
        *first = 1;
        *end = pd->fragment_count;
        return true;
    }
    if (n == img->frames) {
        *first = index + 1;
        *end = index + 2;
        return true;
    }
    if (n < img->frames)
        return false;

    *first = 0;
    for (uint32_t i = 1; i < pd->fragment_count; i++) {
        if (!fragment_starts_frame(pd, i, src))
            continue;
        if (seen == index)
            *first = i;
        if (seen == index + 1) {
            *end = i;
            return *first != 0;
        }
        seen++;
    }
    *end = pd->fragment_count;
    return *first != 0;
}

cp_status px_frame_bytes(const px_image *img, dcm_source *src, uint32_t index, cp_buf *out,
                         cp_error *err)
{
    const dcm_element *pd = img->pixel_data;
    uint32_t first, end;
    uint64_t length = UINT64_MAX;
    size_t at = out->len;
    cp_status st;

    if (index >= img->frames)
        return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "frame %u of %u", index, img->frames);
    if ((pd->flags & DCM_ELEMENT_ENCAPSULATED) == 0)
        return native_frame_bytes(img, src, index, out, err);
    if (pd->fragment_count < 2)
        return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)pd->offset, pd->tag,
                            "encapsulated pixel data without fragments");

    if (!locate_eot(img, index, &first, &end, &length) &&
        !locate_bot(img, src, index, &first, &end) &&
        !locate_scan(img, src, index, &first, &end))
        return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)pd->offset, pd->tag,
                            "frame %u cannot be found among %u fragments", index,
                            pd->fragment_count - 1);

    for (uint32_t i = first; i < end; i++) {
        st = fragment_append(pd, i, src, out, err);
        if (st != CP_OK) {
            out->len = at;
            return st;
        }
    }
    if (length < out->len - at) {
        out->len = at + (size_t)length;
        out->data[out->len] = 0;
    }
    return CP_OK;
}

/* --- decoding ---------------------------------------------------------------------- */

typedef cp_status (*decode_fn)(const px_image *img, const uint8_t *bytes, size_t len,
                               px_frame *frame, cp_error *err);

static cp_status inflate_decode(const px_image *img, const uint8_t *bytes, size_t len,
                                px_frame *frame, cp_error *err);

static const struct {
    const char *uid;
    decode_fn decode;
} decoders[] = {
    { "1.2.840.10008.1.2", px_native_decode },
    { "1.2.840.10008.1.2.1", px_native_decode },
    { "1.2.840.10008.1.2.1.99", px_native_decode },
    { "1.2.840.10008.1.2.2", px_native_decode },
    { "1.2.840.10008.1.2.1.98", px_native_decode },
    { "1.2.840.10008.1.2.8.1", inflate_decode },
    { "1.2.840.10008.1.2.5", px_rle_decode },
    { "1.2.840.10008.1.2.4.57", px_jpeg_lossless_decode },
    { "1.2.840.10008.1.2.4.70", px_jpeg_lossless_decode },
    { "1.2.840.10008.1.2.4.50", px_jpeg_decode },
    { "1.2.840.10008.1.2.4.51", px_jpeg_decode },
    { "1.2.840.10008.1.2.4.80", px_jpegls_decode },
    { "1.2.840.10008.1.2.4.81", px_jpegls_decode },
    { "1.2.840.10008.1.2.4.90", px_j2k_decode },
    { "1.2.840.10008.1.2.4.91", px_j2k_decode },
    { "1.2.840.10008.1.2.4.92", px_j2k_decode },
    { "1.2.840.10008.1.2.4.93", px_j2k_decode },
    { "1.2.840.10008.1.2.4.201", px_htj2k_decode },
    { "1.2.840.10008.1.2.4.202", px_htj2k_decode },
    { "1.2.840.10008.1.2.4.203", px_htj2k_decode },
};

static decode_fn decoder_for(const dcm_transfer_syntax *ts)
{
    if (ts == NULL || ts->uid == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof decoders / sizeof decoders[0]; i++) {
        if (strcmp(decoders[i].uid, ts->uid) == 0)
            return decoders[i].decode;
    }
    return NULL;
}

bool px_can_decode(const dcm_transfer_syntax *ts)
{
    return decoder_for(ts) != NULL;
}

/*
 * Deflated Image Frame Compression: each frame is raw deflate (RFC 1951) of
 * its native bytes. The output is bounded by the native frame size, so a
 * small fragment cannot inflate into gigabytes.
 */
static cp_status inflate_decode(const px_image *img, const uint8_t *bytes, size_t len,
                                px_frame *frame, cp_error *err)
{
    uint64_t size = px_image_native_frame_size(img);
    z_stream z;
    uint8_t *native = NULL;
    cp_status st;
    int zr;

    memset(frame, 0, sizeof *frame);
    memset(&z, 0, sizeof z);
    if (size > PX_FRAME_BYTES_MAX || size == 0)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "a native frame of %llu bytes", (unsigned long long)size);
    native = cp_malloc((size_t)size);
    if (native == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no memory to inflate a frame");
    if (inflateInit2(&z, -15) != Z_OK) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "the inflater could not start");
        goto done;
    }

    /* Inputs and outputs above 4 GiB are excluded by the frame limit. */
    z.next_in = (Bytef *)(uintptr_t)bytes;
    z.avail_in = (uInt)(len > UINT32_MAX ? UINT32_MAX : len);
    z.next_out = native;
    z.avail_out = (uInt)size;
    zr = inflate(&z, Z_FINISH);
    inflateEnd(&z);
    if (zr != Z_STREAM_END && !(zr == Z_BUF_ERROR && z.avail_out == 0) && zr != Z_OK) {
        st = cp_error_set(err, CP_ERR_MALFORMED, (int64_t)z.total_in, CP_ERROR_NO_TAG,
                          "the deflated frame is corrupt");
        goto done;
    }
    st = px_native_decode(img, native, (size_t)(size - z.avail_out), frame, err);

done:
    cp_free(native);
    return st;
}

cp_status px_decode_frame(const px_image *img, const uint8_t *bytes, size_t len,
                          px_frame *frame, cp_error *err)
{
    decode_fn decode = decoder_for(img->transfer_syntax);

    memset(frame, 0, sizeof *frame);
    if (decode == NULL)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no decoder for %s",
                            img->transfer_syntax != NULL ? img->transfer_syntax->name
                                                         : "an unknown transfer syntax");
    return decode(img, bytes, len, frame, err);
}
